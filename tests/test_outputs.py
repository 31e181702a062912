"""Outputs: what an existing file at --out is (ours: replaced; anyone's: refused), masks that a
format cannot carry, names that are not UTF-8 or hold line breaks, links as output folders."""

import os
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import dlsets
from dlsets.cli import main
from dlsets.data.dataset import Dataset, Split
from dlsets.errors import OptionError
from dlsets.outputs import caffe
from dlsets.store import stamps
from tests.imagefolders import class_folder, seg_folder

RNG = np.random.default_rng(5)
LATIN1 = b"caf\xe9"  # a folder named in Latin-1: not UTF-8


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _ds(classes=("a", "b"), masks=False):
    def split(n):
        x = RNG.integers(0, 256, (n, 6, 6), dtype=np.uint8)
        m = RNG.integers(0, 2, (n, 6, 6), dtype=np.uint8) if masks else None
        return Split(x, (np.arange(n) % len(classes)).astype(np.uint8), m)
    return Dataset("toy", split(8), split(4), tuple(classes), {})


def _user_h5(path: Path) -> bytes:
    with h5py.File(path, "w") as f:
        f["weights"] = np.arange(10.0)
        f.attrs["classes"] = "mine"  # a name dlsets uses too, without the rest of its layout
    return path.read_bytes()


# --- existing files ---------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_a_file_dlsets_did_not_write_is_refused_unless_overwrite(tmp_path, suffix):
    ds = _ds()
    write = ds.to_hdf5 if suffix == ".h5" else ds.to_npz
    for mine in (_user_h5, lambda p: (p.write_bytes(b"PK\x03\x04 some zip"), p.read_bytes())[1],
                 lambda p: (p.write_bytes(b"a text file\n"), p.read_bytes())[1]):
        out = tmp_path / f"user{suffix}"
        before = mine(out)
        with pytest.raises(OptionError, match="not written by dlsets.*overwrite=True"):
            write(out)
        assert out.read_bytes() == before  # left as it was
        write(out, overwrite=True)
        assert stamps.written_by_dlsets(out)
        out.unlink()


def test_a_dlsets_output_is_replaced_so_a_command_can_run_again(tmp_path):
    ds = _ds()
    for out, write in ((tmp_path / "a.h5", ds.to_hdf5), (tmp_path / "a.npz", ds.to_npz)):
        write(out)
        write(out)
        assert stamps.written_by_dlsets(out)
    with h5py.File(tmp_path / "a.h5") as f:
        assert f.attrs[stamps.ATTR] == dlsets.__version__
    with zipfile.ZipFile(tmp_path / "a.npz") as z:
        assert z.comment == f"dlsets {dlsets.__version__}".encode()
    with np.load(tmp_path / "a.npz") as z:  # the stamp adds no array
        assert sorted(z.files) == ["x_test", "x_train", "y_test", "y_train"]
        np.testing.assert_array_equal(z["x_train"], ds.train.images)


def test_hdf5_written_before_the_stamp_counts_as_dlsets_output(tmp_path):
    old = tmp_path / "old.h5"
    with h5py.File(old, "w") as f:  # what expand_to_hdf5 wrote before the stamp existed
        f["train/images"] = np.zeros((2, 6, 6), np.uint8)
        f.attrs["classes"] = ["a", "b"]
        f.attrs["augmenter"] = "Augmenter()"
        f.attrs["originals"] = 2
    dlsets.expand_to_hdf5(_ds().train.images, _ds().train.labels, 8, old)
    with h5py.File(old) as f:
        assert f["train/images"].shape == (8, 6, 6)


def test_expand_and_the_cli_refuse_before_any_work(tmp_path, capsys):
    out = tmp_path / "model.h5"
    before = _user_h5(out)
    ds = _ds()
    with pytest.raises(OptionError, match="not written by dlsets"):
        dlsets.expand_to_hdf5(ds.train.images, ds.train.labels, 20, out)
    photos = class_folder(tmp_path / "photos", {"a": 3, "b": 3}, size=(8, 8))
    for argv in (("export", photos, "--out", out), ("augment", photos, "--target", 12,
                                                     "--out", out)):
        code, _, err = run(capsys, *argv)
        assert code == 1 and "not written by dlsets" in err and "--overwrite" in err, err
        assert "Traceback" not in err and "overwrite=True" not in err
        assert out.read_bytes() == before
    assert not (tmp_path / "dlsets-cache" / "_folders").exists()  # refused before loading
    code, _, err = run(capsys, "augment", photos, "--target", 12, "--out", out, "--overwrite")
    assert code == 0, err
    code, _, err = run(capsys, "augment", photos, "--target", 12, "--out", out)  # again
    assert code == 0, err


def test_a_png_that_dlsets_did_not_write_is_refused(tmp_path, capsys):
    from PIL import Image

    photo = tmp_path / "holiday.png"
    Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).save(photo)
    before = photo.read_bytes()
    grid = np.zeros((6, 6), np.uint8)
    with pytest.raises(OptionError, match="not written by dlsets"):
        dlsets.save_png(grid, photo)
    photos = class_folder(tmp_path / "photos", {"a": 2, "b": 2}, size=(8, 8))
    argv = ("preview", photos, "--rows", 2, "--copies", 1, "--rotate", 5, "--out", photo)
    code, _, err = run(capsys, *argv)
    assert code == 1 and "--overwrite" in err and photo.read_bytes() == before, err
    for extra in (("--overwrite",), ()):  # then its own grid is replaced without it
        code, _, err = run(capsys, *argv, *extra)
        assert code == 0, err
    assert Image.open(photo).info[stamps.PNG_KEY] == f"dlsets {dlsets.__version__}"


def test_a_big_png_of_dlsets_counts_as_its_own_without_decoding_it(tmp_path):
    # a header claiming 20,000 x 20,000 pixels: over Pillow's decompression-bomb limit, which
    # once made a big preview grid look like someone else's file on the next run
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    def png(text: bytes) -> bytes:
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20_000, 20_000, 8, 0,
                                                                     0, 0, 0))
                + chunk(b"tEXt", b"Software\x00" + text) + chunk(b"IDAT", b"x")
                + chunk(b"IEND", b""))

    ours, theirs = tmp_path / "grid.png", tmp_path / "photo.png"
    ours.write_bytes(png(f"dlsets {dlsets.__version__}".encode()))
    theirs.write_bytes(png(b"GIMP 2.10"))
    assert stamps.written_by_dlsets(ours) and not stamps.written_by_dlsets(theirs)
    stamps.check_replace(ours)
    with pytest.raises(OptionError, match="not written by dlsets"):
        stamps.check_replace(theirs)


# --- masks ------------------------------------------------------------------------------


def test_masks_go_to_caffe_as_a_second_top_and_are_refused_by_convnetjs(tmp_path, capsys):
    ds = _ds(masks=True)
    # 3 samples a file (6x6 data and mask, float32, and a label: 292 bytes): several a split
    out = ds.to_caffe(tmp_path / "caffe", max_file_bytes=caffe.HDF5_OVERHEAD + 3 * 292)
    for split in ("train", "test"):
        paths = (out / f"{split}.txt").read_text().splitlines()
        assert len(paths) > 1
        masks = []
        for p in paths:
            with h5py.File(p) as f:
                assert f["mask"].dtype == np.float32 and f["mask"].shape[1:] == (1, 6, 6)
                assert len(f["mask"]) == len(f["data"]) == len(f["label"])
                masks.append(f["mask"][:, 0])
        np.testing.assert_array_equal(np.concatenate(masks), ds[split].masks)
    aug = dlsets.Augmenter(rotate=20, seed=1)
    want_x, _, want_m = dlsets.expand(ds.train.images, ds.train.labels, 20, augmenter=aug,
                                      masks=ds.train.masks)
    dlsets.expand_to_caffe(ds.train.images, ds.train.labels, 20, tmp_path / "aug",
                           augmenter=aug, masks=ds.train.masks, value_range=(0, 255))
    with h5py.File((tmp_path / "aug" / "train.txt").read_text().split()[0]) as f:
        np.testing.assert_array_equal(f["mask"][:, 0], want_m)
        np.testing.assert_array_equal(f["data"][:, 0], want_x)
    with pytest.raises(OptionError, match="segmentation masks.*to_caffe"):
        ds.to_convnetjs(tmp_path / "cnj")
    assert not (tmp_path / "cnj").exists()
    seg = seg_folder(tmp_path / "seg", 6, size=(8, 8))
    code, _, err = run(capsys, "export", seg, "--format", "convnetjs", "--out", tmp_path / "c")
    assert code == 1 and "masks" in err and "--format hdf5" in err, err
    assert not (tmp_path / "c").exists()
    code, _, err = run(capsys, "augment", seg, "--format", "caffe", "--target", 8, "--rotate", 5,
                       "--out", tmp_path / "segcaffe")
    assert code == 0, err
    with h5py.File((tmp_path / "segcaffe" / "train.txt").read_text().split()[0]) as f:
        assert f["mask"].shape == (8, 1, 8, 8) and f["mask"][:].max() >= 1


# --- names --------------------------------------------------------------------------------


def _latin1_folder(tmp_path: Path) -> Path:
    root = class_folder(tmp_path / "photos", {"cat": 3, "dog": 3}, size=(8, 8))
    os.rename(root / "cat", os.fsencode(root) + b"/" + LATIN1)
    (root / "dog" / "bad\nname.png").write_bytes(b"not an image")
    return root


def test_names_that_are_not_utf8_are_stored_losslessly(tmp_path, capsys):
    root = _latin1_folder(tmp_path)
    name = os.fsdecode(LATIN1)
    code, _, err = run(capsys, "export", root, "--out", tmp_path / "o.h5")
    assert code == 0, err
    with h5py.File(tmp_path / "o.h5") as f:
        assert list(f.attrs["classes"]) == [name, "dog"]
    code, _, err = run(capsys, "export", root, "--format", "caffe", "--out", tmp_path / "caffe")
    assert code == 0, err
    with h5py.File(next((tmp_path / "caffe").glob("train_*.h5"))) as f:
        assert f.attrs["classes"] == f"{name},dog"
    ds = _ds(classes=(name, "caf\u00e9"))  # mixed with a UTF-8 name
    ds.to_hdf5(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5") as f:
        assert list(f.attrs["classes"]) == [name, "caf\u00e9"]


def test_the_cli_prints_user_names_escaped_one_way(tmp_path, capsys):
    root = _latin1_folder(tmp_path)
    code, out, err = run(capsys, "info", root)
    assert code == 0, err
    assert "caf\\xe9, dog" in out and "{caf\\xe9: " in out  # classes and counts alike
    assert "dog/bad\\nname.png: not an image" in out and "bad\nname" not in out + err
    out.encode("utf-8")  # printable as UTF-8: no raw surrogates


def test_a_line_break_in_a_caffe_path_is_refused(tmp_path, capsys):
    ds = _ds()
    with pytest.raises(OptionError, match="line break"):
        ds.to_caffe(tmp_path / "ca\nffe")
    with pytest.raises(OptionError, match="line break"):
        dlsets.expand_to_caffe(ds.train.images, ds.train.labels, 10, tmp_path / "x\ny")
    assert list(tmp_path.iterdir()) == []


# --- links ----------------------------------------------------------------------------------


def test_an_out_link_to_an_empty_folder_is_written_through(tmp_path):
    target = tmp_path / "real"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    _ds().to_caffe(link)
    _ds().to_caffe(link)  # and again, over its own export
    assert link.is_symlink() and (target / "train.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]  # nothing left over


@pytest.mark.extra  # tensorboardX
def test_a_dangling_link_is_refused_clearly(tmp_path, capsys):
    link = tmp_path / "logs"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(OptionError, match="does not exist"):
        dlsets.write_tensorboard(link, _ds().train.images, None, n=2, copies=1)
    with pytest.raises(OptionError, match="does not exist"):
        _ds().to_caffe(link)
    photos = class_folder(tmp_path / "photos", {"a": 3, "b": 3}, size=(8, 8))
    code, _, err = run(capsys, "preview", photos, "--rows", 2, "--copies", 1,
                       "--tensorboard", link)
    assert code == 1 and "--tensorboard" in err and "does not exist" in err, err
