"""Masks travel through shards: HDF5 (/train/masks), webdataset ({key}.mask.npy), load_shards
and the feed adapters, bit for bit what expand(..., masks=) returns."""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import dlsets  # noqa: E402
from dlsets.augment import Augmenter, expand  # noqa: E402
from dlsets.cli import main  # noqa: E402
from dlsets.errors import OptionError  # noqa: E402
from dlsets.scale.shard_reader import load_shards  # noqa: E402
from dlsets.scale.shards import expand_shard, expand_to_shards, read_index, verify_shards  # noqa: E402
from tests.imagefolders import seg_folder  # noqa: E402
from tests.test_expand_masks import _seg  # noqa: E402

AUG = dict(rotate=20, shift=0.1, hflip=True, seed=3)


def _want(target=90):
    x, y, m = _seg()
    return (x, y, m), expand(x, y, target, augmenter=Augmenter(**AUG), masks=m, seed=2)


@pytest.mark.parametrize("format", ["hdf5", pytest.param("webdataset", marks=pytest.mark.extra)])
def test_shards_carry_masks_bit_for_bit_and_load_shards_returns_them(tmp_path, format):
    (x, y, m), (ex, ey, em) = _want()
    aug = Augmenter(**AUG)
    expand_to_shards(x, y, 90, tmp_path / "all", shards=3, augmenter=aug, masks=m, seed=2,
                     format=format, chunk_size=7)
    for i in (2, 0, 1):  # the job-array way: one shard at a time, any order
        expand_shard(x, y, 90, tmp_path / "one", shard=i, shards=3, augmenter=aug, masks=m,
                     seed=2, format=format)
    for folder in (tmp_path / "all", tmp_path / "one"):
        doc = read_index(folder)
        assert doc["mask_shape"] == [16, 16] and doc["mask_dtype"] == "|u1"
        assert all("masks_sha256" in e for e in doc["shards"])
        assert verify_shards(folder).complete
        split = load_shards(folder)
        assert np.array_equal(np.asarray(split.images), ex)
        assert np.array_equal(split.labels, ey)
        assert split.masks.shape == em.shape and np.array_equal(np.asarray(split.masks), em)
        part = load_shards(folder, rank=1, world_size=2)  # rows 45..89, across a boundary
        idx = np.array([44, 0, 15, 16, 3])
        assert np.array_equal(part.masks[idx], em[45 + idx])
    # readable without dlsets
    files = read_index(tmp_path / "all")["files"]
    if format == "hdf5":
        got = [h5py.File(tmp_path / "all" / f, "r")["train/masks"][...] for f in files]
        assert np.array_equal(np.concatenate(got), em)
    else:
        import webdataset as wds

        got = [s["mask.npy"] for f in files
               for s in wds.WebDataset(str(tmp_path / "all" / f), shardshuffle=False).decode()]
        assert np.array_equal(np.stack(got), em)


@pytest.mark.extra  # needs an optional extra
def test_masked_shards_feed_batches_and_a_torch_dataloader(tmp_path):
    import torch
    from torch.utils.data import DataLoader

    from dlsets.feed.torch import AugmentedDataset

    (x, y, m), (ex, ey, em) = _want()
    expand_to_shards(x, y, 90, tmp_path, shards=2, augmenter=Augmenter(**AUG), masks=m, seed=2)
    part = load_shards(tmp_path, rank=1, world_size=2)
    got = list(dlsets.batches(part, batch_size=16, shuffle=False))
    assert all(len(b) == 3 for b in got)
    assert np.array_equal(np.concatenate([b[2] for b in got]), em[45:])
    assert np.array_equal(np.concatenate([b[0] for b in got]), ex[45:])
    ds = AugmentedDataset(part, dtype="uint8", channels="last")
    loader = DataLoader(ds, batch_size=16, num_workers=2, multiprocessing_context="fork")
    masks = torch.cat([b[2] for b in loader]).numpy()
    assert np.array_equal(masks, em[45:])


def test_masks_are_part_of_the_settings(tmp_path):
    (x, y, m), _ = _want()
    aug = Augmenter(**AUG)
    expand_to_shards(x, y, 90, tmp_path, shards=2, augmenter=aug, masks=m, seed=2)
    with pytest.raises(OptionError, match="another expansion.*masks_sha256"):
        expand_to_shards(x, y, 90, tmp_path, shards=2, augmenter=aug, seed=2)
    other = m.copy()
    other[3, 0, 0] = 2
    with pytest.raises(OptionError, match="another expansion.*masks_sha256"):
        expand_to_shards(x, y, 90, tmp_path, shards=2, augmenter=aug, masks=other, seed=2)


def test_cli_shards_a_segmentation_folder_with_its_masks(tmp_path, capsys):
    root = seg_folder(tmp_path / "seg", 8)
    for fmt in ("hdf5", "webdataset"):
        out = tmp_path / fmt
        code = main(["augment", str(root), "--size", "16", "16", "--target", "40",
                     "--rotate", "20", "--mask-classes", "3", "--shards", "2", "--format", fmt,
                     "--out", f"{out}/"])
        assert code == 0, capsys.readouterr().err
        split = load_shards(out)
        assert split.masks.shape == (40, 16, 16)
        assert set(np.unique(np.asarray(split.masks))) <= {0, 1, 2}
