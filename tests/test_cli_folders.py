"""The CLI on folders of images: every command that takes a dataset name takes a folder."""

from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from dlsets.cli import main
from tests.imagefolders import class_folder, pattern, save, seg_folder


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_from_a_photo_folder_to_an_augmented_file_and_a_preview(capsys, tmp_path):
    photos = class_folder(tmp_path / "my-photos", {f"c{k}": 20 for k in range(5)},
                          size=(60, 80), ext=".jpg")
    out = tmp_path / "aug.h5"
    code, stdout, err = run(capsys, "augment", photos, "--size", 32, 32, "--target", 2000,
                            "--rotate", 15, "--shift", 0.1, "--out", out)
    assert code == 0, err
    assert "wrote 2000 samples" in stdout
    with h5py.File(out) as f:
        assert f["train/images"].shape == (2000, 32, 32, 3)
        assert [c.decode() if isinstance(c, bytes) else c for c in f.attrs["classes"]] == [
            f"c{k}" for k in range(5)]
        assert np.bincount(f["train/labels"][:]).tolist() == [400] * 5
    grid = tmp_path / "grid.png"
    code, stdout, err = run(capsys, "preview", photos, "--size", 32, 32, "--rotate", 15,
                            "--rows", 4, "--copies", 3, "--scale", 1, "--out", grid)
    assert code == 0, err
    assert Image.open(grid).size == (4 * 32 + 2 + 3, 4 * 32 + 3)  # 3 copies, 4 rows
    # too many copies for memory: checked once the folder's size is known, naming the flags
    code, stdout, err = run(capsys, "preview", photos, "--size", 32, 32, "--rotate", 15,
                            "--copies", 10**7, "--out", tmp_path / "big.png")
    assert code == 1 and err.count("\n") == 1, err
    assert "memory" in err and "(--copies)" in err and "(--rows)" in err, err
    assert "copies=" not in err and not (tmp_path / "big.png").exists()


def test_export_info_path_fetch_verify_remove_on_a_folder(capsys, tmp_path):
    root = class_folder(tmp_path / "pets", {"cat": 6, "dog": 6})
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG nope")
    code, out, err = run(capsys, "export", root, "--size", 8, 8, "--out", tmp_path / "p.h5")
    assert code == 0, err
    with h5py.File(tmp_path / "p.h5") as f:
        assert f["train/images"].shape[1:] == (8, 8, 3)
        assert len(f["train/images"]) + len(f["test/images"]) == 12
    code, out, _ = run(capsys, "export", root, "--size", 8, 8, "--color", "grayscale",
                       "--out", tmp_path / "p.npz")
    assert code == 0 and np.load(tmp_path / "p.npz")["x_train"].shape[1:] == (8, 8)
    code, out, _ = run(capsys, "info", root, "--size", 8, 8)
    assert code == 0
    assert "2 classes: cat, dog" in out and "cat/broken.png: not an image" in out
    code, out, _ = run(capsys, "path", root)
    slot = out.strip()
    assert code == 0 and "_folders" in slot and slot.endswith(tuple("0123456789abcdef"))
    code, out, _ = run(capsys, "fetch", root, "--size", 4, 4)
    assert code == 0 and "prepared in" in out
    code, out, _ = run(capsys, "verify", root)
    assert code == 0 and out.strip().endswith("ok")
    victim = next(iter(sorted(Path(slot).glob("*/train_images.npy"))))
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    code, out, _ = run(capsys, "verify", root, "--no-repair")
    assert code == 1 and "train_images.npy has sha256" in out
    code, out, _ = run(capsys, "verify", root)
    assert code == 0 and "deleted it" in out
    code, out, _ = run(capsys, "remove", root)
    assert code == 0 and "the folder itself is untouched" in out
    assert (root / "cat" / "img000.png").exists()
    assert not Path(slot).exists()


def test_segmentation_folder_augments_with_masks(capsys, tmp_path):
    root = seg_folder(tmp_path / "seg", 8)
    code, out, err = run(capsys, "augment", root, "--size", 16, 16, "--target", 40,
                         "--rotate", 20, "--mask-classes", 3, "--out", tmp_path / "s.h5")
    assert code == 0, err
    assert "labels and masks" in out
    with h5py.File(tmp_path / "s.h5") as f:
        assert f["train/masks"].shape == (40, 16, 16)
        assert set(np.unique(f["train/masks"][:])) <= {0, 1, 2}


def test_folder_errors_are_one_line_without_traceback(capsys, tmp_path):
    code, _, err = run(capsys, "augment", tmp_path / "nope", "--target", 10, "--out",
                       tmp_path / "a.h5")
    assert code == 1 and "no such folder" in err and "Traceback" not in err
    root = class_folder(tmp_path / "mixed", {"a": 2, "b": 2})
    save(root / "a" / "big.png", pattern(40, 40))
    code, _, err = run(capsys, "export", root, "--out", tmp_path / "x.h5")
    assert code == 1 and "--size H W" in err
    code, _, err = run(capsys, "info", "./does-not-exist")
    assert code == 1 and "no such folder" in err


def test_verify_without_names_checks_prepared_folders_too(capsys, tmp_path):
    root = class_folder(tmp_path / "pets", {"cat": 3, "dog": 3})
    assert run(capsys, "export", root, "--size", 8, 8, "--out", tmp_path / "p.h5")[0] == 0
    code, out, _ = run(capsys, "verify")
    assert code == 0 and "prepared arrays: ok" in out and "_folders" in out
    victim = next((tmp_path / "dlsets-cache").glob("_folders/*/*/train_images.npy"))
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    code, out, _ = run(capsys, "verify", "--no-repair")
    assert code == 1 and "train_images.npy has sha256" in out


def test_info_of_a_mixed_size_folder_lists_the_sizes_and_warm_loads_count_the_skipped(
        capsys, tmp_path):
    root = class_folder(tmp_path / "mixed", {"a": 4, "b": 3}, size=(20, 24))
    save(root / "b" / "wide.png", pattern(10, 40))
    save(root / "b" / "tall.png", pattern(30, 12))
    (root / "a" / "notes.txt").write_text("x")
    code, out, err = run(capsys, "info", root)
    assert code == 0, err
    assert "sizes found (height x width): 20x24 (7 files), " in out
    assert "10x40 (1 file)" in out and "30x12 (1 file)" in out
    assert "2 classes: a (4), b (5)" in out and "a/notes.txt: not an image" in out
    assert "--size 20 24" in out and "Traceback" not in err
    # loaded at one size: the cold load names the skipped file, warm loads count it
    (root / "b" / "broken.png").write_bytes(b"\x89PNG nope")
    code, out, err = run(capsys, "export", root, "--size", 8, 8, "--out", tmp_path / "m.npz")
    assert code == 0 and "b/broken.png" in err
    code, out, err = run(capsys, "export", root, "--size", 8, 8, "--out", tmp_path / "m.npz")
    assert code == 0
    assert f"2 files skipped (`dlsets info {root} --size 8 8` lists them)" in err
