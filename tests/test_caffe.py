"""Caffe HDF5Data output, read back with h5py the way the layer reads it (Caffe itself cannot be
installed here): list file -> .h5 files -> data (N, C, H, W) float32 and label (N,) float32."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

import dlsets
from dlsets.augment import Augmenter, expand
from dlsets.cli import main
from dlsets.data.dataset import Dataset, Split
from dlsets.errors import DlsetsError, OptionError
from dlsets.outputs import caffe
from tests.formats import mnist_like

RNG = np.random.default_rng(3)
DEAD = "http://127.0.0.1:9/never/"


def _read_back(folder: Path, split: str):
    """What HDF5Data sees: every file named in <split>.txt, in order, concatenated."""
    paths = (folder / f"{split}.txt").read_text().splitlines()
    data, labels, sizes = [], [], []
    for p in paths:
        assert Path(p).is_absolute() and Path(p).parent == folder.resolve()
        with h5py.File(p, "r") as f:
            assert f["data"].dtype == np.float32 and f["data"].ndim == 4
            assert f["data"].chunks is None and f["data"].compression is None
            data.append(f["data"][:])
            if "label" in f:
                assert f["label"].dtype == np.float32 and f["label"].shape == (len(data[-1]),)
                labels.append(f["label"][:])
            sizes.append(Path(p).stat().st_size)
    return np.concatenate(data), (np.concatenate(labels) if labels else None), sizes


def _ds(colour=True, n_train=30, n_test=7, unlabeled=0):
    shape = (8, 8, 3) if colour else (8, 8)
    def split(n, labelled=True):
        x = RNG.integers(0, 256, (n, *shape), dtype=np.uint8)
        return Split(x, (np.arange(n) % 4).astype(np.uint8) if labelled else None)
    extra = {"unlabeled": split(unlabeled, False)} if unlabeled else {}
    return Dataset("toy", split(n_train), split(n_test), ("a", "b", "c", "d"), {}, extra=extra)


def _nchw(x):
    return (x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)).astype(np.float32)


@pytest.mark.parametrize("colour", [True, False])
def test_every_split_round_trips_scaled_and_channels_first(tmp_path, colour):
    ds = _ds(colour, unlabeled=5)
    out = ds.to_caffe(tmp_path / "caffe")
    for s in ("train", "test", "unlabeled"):
        data, labels, _ = _read_back(out, s)
        np.testing.assert_allclose(data, _nchw(ds[s].images) / 255, rtol=0, atol=1e-7)
        if s == "unlabeled":
            assert labels is None
        else:
            np.testing.assert_array_equal(labels, ds[s].labels.astype(np.float32))
    assert sorted(p.name for p in out.iterdir()) == [
        ".dlsets-export.json", "test.txt", "test_000.h5", "train.txt", "train_000.h5",
        "unlabeled.txt", "unlabeled_000.h5"]


def test_files_stay_under_the_byte_and_element_limits(tmp_path, monkeypatch):
    ds = _ds(n_train=50)
    sample = 3 * 8 * 8 * 4 + 4  # bytes of one float32 sample and its label
    limit = 7 * sample + caffe.HDF5_OVERHEAD + 100
    out = caffe.to_caffe(ds, tmp_path / "a", max_file_bytes=limit, value_range=(-1, 1))
    data, labels, sizes = _read_back(out, "train")
    assert len(sizes) == 8  # 50 samples, 7 a file
    with h5py.File((out / "train.txt").read_text().split()[0], "r") as f:
        assert f["data"].shape == (7, 3, 8, 8)
    assert max(sizes) <= limit
    np.testing.assert_allclose(data, _nchw(ds.train.images) / 127.5 - 1, atol=1e-6)
    np.testing.assert_array_equal(labels, ds.train.labels)
    # Caffe's 2^31-1 elements per blob: the element limit splits files on its own
    monkeypatch.setattr(caffe, "MAX_ELEMENTS", 3 * 8 * 8 * 4 + 5)  # 4 samples a blob
    out = caffe.to_caffe(ds, tmp_path / "b")
    _, _, sizes = _read_back(out, "train")
    assert len(sizes) == 13  # ceil(50 / 4)
    with pytest.raises(OptionError, match="smaller than one sample"):
        caffe.to_caffe(ds, tmp_path / "c", max_file_bytes=100)


def test_the_default_file_size_is_well_below_caffes_limits():
    assert caffe.DEFAULT_MAX_FILE_BYTES // 4 < caffe.MAX_ELEMENTS // 8
    assert caffe.MAX_ELEMENTS == 2**31 - 1


def test_an_export_folder_with_other_content_is_refused_and_kept(tmp_path):
    ds = _ds()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(OptionError, match=r"already exists and holds other files \(notes.txt\)"
                                          r".*does not exist yet, an empty one, or one an "
                                          r"earlier caffe export wrote"):
        ds.to_caffe(busy)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(OptionError, match="is a file"):
        ds.to_caffe(tmp_path / "file")
    # an empty folder, then a rerun over our own export, are fine; the rerun replaces it whole
    (tmp_path / "empty").mkdir()
    first = ds.to_caffe(tmp_path / "empty", max_file_bytes=772 * 10 + caffe.HDF5_OVERHEAD)
    assert len(list(first.glob("train_*.h5"))) == 3
    ds.to_caffe(first)
    assert [p.name for p in first.glob("train_*.h5")] == ["train_000.h5"]
    assert not list(tmp_path.glob(".*tmpdir")) and not list(tmp_path.glob(".*.old"))
    marker = json.loads((first / ".dlsets-export.json").read_text())
    assert marker["kind"] == "caffe" and "train.txt" in marker["files"]
    # ...but not over another kind of export
    ds.to_convnetjs(tmp_path / "js")
    with pytest.raises(OptionError, match="already exists"):
        ds.to_caffe(tmp_path / "js")


def test_a_failed_export_leaves_nothing_under_the_name(tmp_path, monkeypatch):
    ds = _ds()

    def full(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(caffe.CaffeSplitWriter, "write", full)
    with pytest.raises(DlsetsError, match="No space left on device.*nothing was left"):
        ds.to_caffe(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_expand_to_caffe_writes_what_expand_returns(tmp_path):
    x = RNG.integers(0, 256, (12, 10, 10), dtype=np.uint8)
    y = (np.arange(12) % 3).astype(np.uint8)
    aug = Augmenter(rotate=20, shift=0.1, seed=4)
    want_x, want_y = expand(x, y, 40, augmenter=aug, seed=2)
    out = dlsets.expand_to_caffe(x, y, 40, tmp_path / "aug", augmenter=aug, seed=2,
                                 chunk_size=7, max_file_bytes=9 * 404 + caffe.HDF5_OVERHEAD)
    data, labels, sizes = _read_back(out, "train")
    assert len(sizes) == 5  # 40 samples, 9 a file
    np.testing.assert_allclose(data, want_x[:, None] / 255, atol=1e-7)
    np.testing.assert_array_equal(labels, want_y)


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    src, reg, arrays = mnist_like(tmp_path, "tiny", 40, 10, seed=3, url=DEAD, size=False)
    monkeypatch.setenv("DLSETS_REGISTRY", str(reg))
    assert main(["-q", "fetch", "tiny", "--from", str(src)]) == 0
    return arrays


def test_cli_export_and_augment_with_format_caffe(tmp_path, tiny, capsys):
    out = tmp_path / "caffe"
    assert main(["export", "tiny", "--format", "caffe", "--out", str(out), "--range", "0", "255",
                 "--max-file-mb", "0.06"]) == 0
    assert f"wrote {out}/" in capsys.readouterr().out
    data, labels, sizes = _read_back(out, "train")
    assert len(sizes) == 3  # 0.06 MiB holds 14 MNIST images as float32, with the headers
    np.testing.assert_allclose(data[:, 0], tiny["train-images-idx3-ubyte.gz"], atol=1e-4)
    np.testing.assert_array_equal(labels, tiny["train-labels-idx1-ubyte.gz"])
    aug = tmp_path / "aug"
    assert main(["-q", "augment", "tiny", "--target", "60", "--rotate", "10", "--format",
                 "caffe", "--out", str(aug)]) == 0
    data, labels, _ = _read_back(aug, "train")
    assert data.shape == (60, 1, 28, 28) and 0 <= data.min() and data.max() <= 1
    np.testing.assert_allclose(data[:40, 0], tiny["train-images-idx3-ubyte.gz"] / 255, atol=1e-6)
    # bad combinations are one-line errors, exit 1
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("")
    for argv, match in [
        (["export", "tiny", "--format", "caffe", "--out", str(tmp_path / "busy")], "already"),
        (["export", "tiny", "--format", "caffe", "--out", str(tmp_path / "d"), "--dtype",
          "float32"], "--dtype and --channels do not apply"),
        (["export", "tiny", "--out", str(tmp_path / "x.h5"), "--range", "0", "1"],
         "--range applies to --format caffe only"),
        (["export", "tiny", "--format", "caffe", "--out", str(tmp_path / "e"), "--variant",
          "letters"], "tiny has no variants"),
    ]:
        assert main(argv) == 1, argv
        assert match in capsys.readouterr().err


def test_cli_augment_caffe_wants_a_folder_name(tmp_path, tiny, capsys):
    assert main(["augment", "tiny", "--target", "50", "--format", "caffe", "--out",
                 str(tmp_path / "a.h5")]) == 1
    assert "writes a folder" in capsys.readouterr().err
    assert not (tmp_path / "a.h5").exists()


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    import subprocess
    import sys

    from dlsets.store.atomic import HOST, owner

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".out.{HOST}@{dead}-1.tmp"
    old = tmp_path / f".out.old.{HOST}@{dead}-1.tmp"
    live = tmp_path / f".out.{owner()}-999.tmp"
    for d in (stale, old, live):
        d.mkdir()
    _ds().to_caffe(tmp_path / "out")
    assert not stale.exists() and not old.exists() and live.exists()


@pytest.mark.parametrize("value_range", [(0, 1e308), (-1e39, 0), (-3e38, 3e38)])
def test_a_range_beyond_float32_is_refused_before_writing(tmp_path, value_range):
    # (0, 1e308) was accepted and wrote all-infinite data
    x = np.random.default_rng(0).integers(0, 256, (8, 6, 6), dtype=np.uint8)
    ds = Dataset("t", Split(x, np.zeros(8, np.uint8)), Split(x, np.zeros(8, np.uint8)), ("a",))
    with pytest.raises(OptionError, match="float32"):
        caffe.to_caffe(ds, tmp_path / "out", value_range=value_range)
    assert not (tmp_path / "out").exists()
