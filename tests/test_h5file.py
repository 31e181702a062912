"""An HDF5 file dlsets wrote, read back with dlsets.load(path) and fed to a loop."""

import numpy as np
import pytest

import dlsets
from dlsets.errors import FormatError, OptionError


def _data(n=40):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 12, 12), dtype=np.uint8), (np.arange(n) % 4).astype(np.uint8)


def test_an_expansion_file_loads_back_and_feeds_batches(tmp_path):
    x, y = _data()
    aug = dlsets.Augmenter(rotate=10, seed=1)
    out = tmp_path / "aug.h5"
    dlsets.expand_to_hdf5(x, y, 100, out, augmenter=aug, classes=["a", "b", "c", "d"])
    ex, ey = dlsets.expand(x, y, 100, augmenter=aug)
    with dlsets.load(str(out)) as ds:
        assert ds.classes == ("a", "b", "c", "d") and len(ds.test) == 0
        assert np.array_equal(ds.train.images[...], ex) and np.array_equal(ds.train.labels[...], ey)
        got = np.concatenate([b[0] for b in dlsets.batches(ds.train, batch_size=32,
                                                           shuffle=False)])
        assert np.array_equal(got, ex)
    with dlsets.load(out, val=0.2) as ds:  # a Path too, and a validation split of the file
        assert len(ds.train) + len(ds.val) == 100


def test_an_export_with_masks_loads_back(tmp_path):
    x, y = _data(10)
    masks = (x > 128).astype(np.uint8)
    out = tmp_path / "seg.h5"
    dlsets.expand_to_hdf5(x, y, 10, out, masks=masks)
    with dlsets.load(str(out)) as ds:
        assert np.array_equal(ds.train.masks[...], masks)


def test_other_files_are_refused_clearly(tmp_path):
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(FormatError, match="no /<split>/images"):
        dlsets.load(str(tmp_path / "other.h5"))
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(FormatError, match="cannot be opened"):
        dlsets.load(str(tmp_path / "junk.h5"))
    with pytest.raises(OptionError, match=r"dlsets.load\(path\)"):
        dlsets.load_shards(tmp_path / "junk.h5")


@pytest.mark.parametrize("part", ["train/images", "train/labels"])
def test_a_file_whose_data_lives_elsewhere_is_refused(tmp_path, part):
    from tests.test_shards_trust import _relink

    x, y = _data()
    out = tmp_path / "aug.h5"
    dlsets.expand_to_hdf5(x, y, 60, out, augmenter=dlsets.Augmenter(rotate=10, seed=1))
    _relink(out, part, tmp_path / "anywhere.h5")
    with pytest.raises(FormatError, match="stored outside the file"):
        dlsets.load(str(out))


def _crafted(path, images, labels=None, masks=None, fill=True):
    import h5py

    with h5py.File(path, "w") as f:
        g = f.create_group("train")
        if fill:
            g["images"] = images
        else:  # declared, never written: a sparse dataset
            g.create_dataset("images", shape=images[0], dtype=images[1], chunks=True)
        if labels is not None:
            g["labels"] = labels
        if masks is not None:
            g["masks"] = masks
    return str(path)


@pytest.mark.parametrize("case", ["flat", "mismatch", "float_labels", "sparse", "masks"])
def test_a_crafted_file_is_a_format_error_on_load(tmp_path, case):
    x = np.zeros((10, 6, 6), np.uint8)
    kw = {"flat": dict(images=np.zeros((10, 36), np.uint8)),
          "mismatch": dict(images=x, labels=np.zeros(3, np.uint8)),
          "float_labels": dict(images=x, labels=np.zeros(10, np.float32)),
          "sparse": dict(images=((10**9, 28, 28), np.uint8), fill=False),
          "masks": dict(images=x, labels=np.zeros(10, np.uint8), masks=np.zeros((4, 6, 6)))}
    path = _crafted(tmp_path / "c.h5", **kw[case])
    with pytest.raises(FormatError, match="not a file dlsets wrote"):
        dlsets.load(path)


def test_files_dlsets_writes_in_either_layout_pass_the_checks(tmp_path):
    x, y = _data()
    for channels, xs in (("last", x[..., None]), ("first", x[:, None])):
        out = tmp_path / f"{channels}.h5"
        dlsets.expand_to_hdf5(xs, y, 60, out, channels=channels, compression="gzip",
                              augmenter=dlsets.Augmenter(rotate=10, seed=1))
        with dlsets.load(str(out)) as ds:
            assert len(ds.train) == 60
