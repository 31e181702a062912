"""load_folder: layouts, the split rule, the prepared cache keyed by content, bad input."""

import os
import shutil

import numpy as np
import pytest

import dlsets
from dlsets.errors import DlsetsError, FormatError, OptionError
from dlsets.sources import folder_decode, folder_prepare, folders
from tests.imagefolders import bomb_png, class_folder, pattern, save, seg_folder


def _prepared(cache) -> list:
    return sorted(cache.glob("_folders/*/*/manifest.json"))


def test_class_folders_load_like_a_builtin(tmp_path):
    root = class_folder(tmp_path / "pets", {"dogs": 12, "cats": 9, "birds": 5})
    ds = dlsets.load_folder(root, size=(16, 12))
    assert isinstance(ds, dlsets.Dataset) and ds.classes == ("birds", "cats", "dogs")
    assert ds.train.images.dtype == np.uint8 and ds.train.images.shape[1:] == (16, 12, 3)
    assert ds.train.labels.dtype == np.uint8 and ds.train.masks is None
    # the split rule: floor(n * 0.1 + 0.5) of each class to test
    assert ds.info["splits"]["test"]["class_counts"] == {"birds": 1, "cats": 1, "dogs": 1}
    assert np.bincount(ds.train.labels).tolist() == [4, 8, 11]
    (x_tr, y_tr), (x_te, y_te) = ds.as_tuples()
    assert len(x_tr) + len(x_te) == 26 and ds.info["skipped"] == []
    grey = dlsets.load_folder(root, size=(16, 12), color="grayscale", channels="last",
                              dtype="float32")
    assert grey.train.images.shape == (23, 16, 12, 1) and grey.train.images.dtype == np.float32
    assert grey.train.images.max() <= 1.0


def test_split_is_deterministic_and_ignores_what_the_decoder_rejects(tmp_path):
    root = class_folder(tmp_path / "d", {"a": 20, "b": 20})
    first = dlsets.load_folder(root, size=8)
    again = dlsets.load_folder(root, size=8, cache_dir=tmp_path / "other-cache")
    assert np.array_equal(first.test.images, again.test.images)
    other_seed = dlsets.load_folder(root, size=8, seed=1)
    assert not np.array_equal(first.test.images, other_seed.test.images)
    # a file the decoder rejects keeps its place in the ranking: no other file changes split
    keys = {f"{c}/img{i:03d}.png": folders.split_key(0, f"{c}/img{i:03d}.png")
            for c in "ab" for i in range(20)}
    victim = sorted((k for k in keys if k.startswith("a/")), key=keys.get)[5]  # a train file
    (root / victim).write_bytes(b"broken")
    damaged = dlsets.load_folder(root, size=8)
    assert damaged.info["skipped"] == [victim]
    assert np.array_equal(damaged.test.images, first.test.images)
    assert len(damaged.train) == len(first.train) - 1
    # the rows after the skipped one moved up, in order
    left = {bytes(r) for r in damaged.train.images}
    kept = [r for r in first.train.images if bytes(r) in left]
    assert len(kept) == len(damaged.train) and np.array_equal(np.stack(kept),
                                                              damaged.train.images)
    assert damaged.info["split_rule"].startswith("per class, lowest sha256('0/<class>/<file>')")


def test_train_test_and_val_folders_are_used_as_they_are(tmp_path):
    root = tmp_path / "split"
    class_folder(root / "train", {"x": 6, "y": 4})
    class_folder(root / "val", {"x": 2, "y": 2}, seed=50)
    class_folder(root / "test", {"x": 3, "y": 1}, seed=90)
    (root / "README.txt").write_text("notes")
    ds = dlsets.load_folder(root, size=(10, 10), test=0.5)
    assert (len(ds.train), len(ds.test), len(ds.val)) == (10, 4, 4)
    assert ds.split_names == ("train", "test", "val") and ds["val"] is ds.val
    assert ds.info["split_from"] == "folders"
    assert ds.info["skip_reasons"] == {"README.txt": "outside the train/test folders"}
    shutil.rmtree(root / "test")
    ds = dlsets.load_folder(root, size=(10, 10))
    assert len(ds.test) == 4 and "val" not in ds.split_names and ds.info["notes"]


def test_warm_load_maps_the_prepared_copy_and_a_changed_folder_is_prepared_again(
        tmp_path, monkeypatch):
    root = class_folder(tmp_path / "d", {"a": 5, "b": 5})
    cold = dlsets.load_folder(root, size=8)
    built = []
    real = folder_prepare._build
    monkeypatch.setattr(folder_prepare, "_build", lambda *a, **k: built.append(1) or real(*a, **k))
    warm = dlsets.load_folder(root, size=8)
    assert built == [] and isinstance(warm.train.images.base, np.memmap)
    assert np.array_equal(warm.train.images, cold.train.images)
    warm.train.images[0] = 0  # copy-on-write: the cache is untouched
    assert np.array_equal(dlsets.load_folder(root, size=8).train.images, cold.train.images)
    save(root / "a" / "img000.png", pattern(20, 24, seed=99))  # new content, new mtime
    os.utime(root / "a" / "img000.png", ns=(1, 1))
    changed = dlsets.load_folder(root, size=8)
    assert built == [1]
    assert not np.array_equal(np.concatenate([changed.train.images, changed.test.images]),
                              np.concatenate([cold.train.images, cold.test.images]))
    save(root / "b" / "new.png", pattern(20, 24, seed=7))
    grown = dlsets.load_folder(root, size=8)
    assert len(grown.train) + len(grown.test) == 11
    assert built == [1, 1]
    dlsets.load_folder(root, size=(8, 9))  # other options: a prepared copy of their own
    assert built == [1, 1, 1] and len(_prepared(tmp_path / "dlsets-cache")) == 2


def test_many_files_on_worker_processes_equal_one_process(tmp_path, monkeypatch):
    root = class_folder(tmp_path / "d", {"a": 40, "b": 35}, ext=".jpg", size=(30, 30))
    one = dlsets.load_folder(root, size=16, workers=1)
    many = dlsets.load_folder(root, size=16, workers=2, cache_dir=tmp_path / "c2")
    assert len(one.train) + len(one.test) == 75 > folders.INLINE
    assert np.array_equal(one.train.images, many.train.images)
    assert np.array_equal(one.test.labels, many.test.labels)


def test_png_fast_path_on_workers_after_opencv_threads_ran(tmp_path, monkeypatch):
    # OpenCV's thread pool, started here by the augmenter, must not hang the forked workers
    dlsets.Augmenter(rotate=10)(np.zeros((64, 64, 64), np.uint8))
    root = class_folder(tmp_path / "p", {"a": 30, "b": 30}, ext=".png", size=(20, 16))
    slow = dlsets.load_folder(root, size=(10, 8), workers=1)
    monkeypatch.setattr(folder_decode, "FAST_FROM", 10)
    fast = dlsets.load_folder(root, size=(10, 8), workers=2, cache_dir=tmp_path / "c2")
    assert np.array_equal(slow.train.images, fast.train.images)


def test_skipped_files_are_listed_with_reasons(tmp_path):
    root = class_folder(tmp_path / "d", {"a": 4, "b": 4})
    (root / "a" / "notes.txt").write_text("x")
    (root / "a" / "fake.jpg").write_bytes(b"\xff\xd8 not really")
    (root / "b" / "bomb.png").write_bytes(bomb_png())
    (root / "b" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (root / "b" / "loop").symlink_to(root)
    (root / "b" / ".hidden.png").write_bytes(b"ignored")
    (root / "loose.png").write_bytes(b"")
    deep = root / "a" / "/".join(["d"] * (folders.MAX_DEPTH + 2))
    save(deep / "x.png", pattern(8, 8))
    ds = dlsets.load_folder(root, size=8)
    reasons = ds.info["skip_reasons"]
    too_deep = "a/" + "/".join(["d"] * (folders.MAX_DEPTH + 1))
    assert set(reasons) == {"a/notes.txt", "a/fake.jpg", "b/bomb.png", "b/gone.png", "b/loop",
                            "loose.png", too_deep}
    assert "deep" in reasons[too_deep]
    assert "not an image" in reasons["a/notes.txt"]
    assert "decompression bomb" in reasons["b/bomb.png"]
    assert "broken symbolic link" in reasons["b/gone.png"]
    assert "loop" in reasons["b/loop"] and "not in a class folder" in reasons["loose.png"]
    assert ds.info["skipped"] == sorted(reasons) and len(ds.train) + len(ds.test) == 8


def test_wrapper_folders_are_descended_and_subdir_points_inside(tmp_path):
    class_folder(tmp_path / "zip" / "flowers" / "flowers", {"rose": 3, "tulip": 3})
    ds = dlsets.load_folder(tmp_path / "zip", size=8)
    assert ds.classes == ("rose", "tulip") and ds.info["root"] == "flowers/flowers"
    ds = dlsets.load_folder(tmp_path / "zip", size=8, subdir="flowers")
    assert ds.classes == ("rose", "tulip")
    with pytest.raises(OptionError, match="outside"):
        dlsets.load_folder(tmp_path / "zip", size=8, subdir="../..")


def test_native_size_must_be_common(tmp_path):
    root = class_folder(tmp_path / "d", {"a": 3, "b": 3}, size=(12, 10))
    assert dlsets.load_folder(root).train.images.shape[1:] == (12, 10, 3)
    save(root / "b" / "odd.png", pattern(30, 30))
    with pytest.raises(OptionError, match=r"differ in size: 6 files 12x10, 1 file 30x30 \(height "
                       r"x width, as --size takes them; e.g. b/odd.png\).*size=\(H, W\)"
                       r".*`dlsets info "):
        dlsets.load_folder(root)
    assert len(_prepared(tmp_path / "dlsets-cache")) == 1  # nothing half-written


@pytest.mark.parametrize("case", ["missing", "empty", "one-class", "flat", "unreadable-class",
                                  "hidden-only"])
def test_bad_folders_raise_naming_the_path_and_write_nothing(tmp_path, case):
    root = tmp_path / "bad"
    if case != "missing":
        root.mkdir()
    if case == "one-class":
        class_folder(root, {"only": 3})
    elif case == "flat":
        for i in range(3):
            save(root / f"{i}.png", pattern(8, 8))
    elif case == "unreadable-class":
        class_folder(root, {"good": 3})
        (root / "bad_class").mkdir()
        (root / "bad_class" / "x.png").write_bytes(b"nope")
    elif case == "hidden-only":
        (root / ".cache").mkdir()
        save(root / ".cache" / "a.png", pattern(8, 8))
    with pytest.raises(DlsetsError) as err:
        dlsets.load_folder(root, size=8)
    msg = str(err.value)
    assert str(root) in msg
    expected = {"missing": "no such folder", "empty": "the folder is empty",
                "one-class": "only one class folder", "flat": "no class folders",
                "unreadable-class": "'bad_class' hold no readable image (bad_class/x.png",
                "hidden-only": "the folder is empty"}[case]
    assert expected in msg
    assert _prepared(tmp_path / "dlsets-cache") == []
    assert not list((tmp_path / "dlsets-cache").glob("_folders/*/*/*.npy"))


def test_options_are_checked(tmp_path):
    root = class_folder(tmp_path / "d", {"a": 2, "b": 2})
    for kw in ({"size": (0, 5)}, {"size": "big"}, {"color": "cmyk"}, {"resize": "fit"},
               {"test": 1.0}, {"workers": 0}, {"mask_classes": 1}, {"dtype": "int8"}):
        with pytest.raises(OptionError):
            dlsets.load_folder(root, **{"size": 8, **kw})


def test_segmentation_pairs(tmp_path):
    root = seg_folder(tmp_path / "seg", 12, classes=3)
    save(root / "images" / "orphan.jpg", pattern(24, 32))
    save(root / "masks" / "stray.png", np.zeros((24, 32), np.uint8))
    save(root / "masks" / "s003.png", np.zeros((10, 10), np.uint8))  # wrong size for s003
    ds = dlsets.load_folder(root, size=(12, 16), mask_classes=["bg", "road", "car"])
    assert ds.info["layout"] == "segmentation" and ds.classes == ("bg", "road", "car")
    assert ds.train.masks.shape == (len(ds.train), 12, 16) and ds.train.masks.dtype == np.uint8
    assert set(np.unique(np.concatenate([ds.train.masks, ds.test.masks]))) <= {0, 1, 2}
    reasons = ds.info["skip_reasons"]
    assert "no mask" in reasons["images/orphan.jpg"]
    assert reasons["masks/stray.png"] == "mask without an image"
    assert "but its mask 10x10" in reasons["images/s003.jpg"]
    assert len(ds.train) + len(ds.test) == 11 and len(ds.test) == 1
    # masks follow their images: the bottom half of every mask is a foreground class
    assert (ds.train.masks[:, 8:] > 0).all()


def test_binary_masks_and_out_of_range_values(tmp_path):
    root = tmp_path / "bin"
    for i in range(6):
        save(root / "images" / f"{i}.png", pattern(16, 16, seed=i))
        m = np.zeros((16, 16), np.uint8)
        m[8:] = 255
        save(root / "masks" / f"{i}_mask.png", m)
    ds = dlsets.load_folder(root, test=0)
    assert ds.classes == ("0", "1") and set(np.unique(ds.train.masks)) == {0, 1}
    bad = np.zeros((16, 16), np.uint8)
    bad[0, 0] = 9
    save(root / "masks" / "5_mask.png", bad)
    ds = dlsets.load_folder(root, test=0, mask_classes=2)
    assert ds.info["skip_reasons"] == {
        "images/5.png": "mask values 9 are outside the 2 classes (0..1)"}
    assert len(ds.train) == 5


def test_segmentation_with_split_folders(tmp_path):
    seg_folder(tmp_path / "s" / "train", 5)
    seg_folder(tmp_path / "s" / "test", 2, seed=9)
    ds = dlsets.load_folder(tmp_path / "s", size=8)
    assert len(ds.train) == 5 and len(ds.test) == 2 and ds.test.masks.shape == (2, 8, 8)
    class_folder(tmp_path / "mixed" / "train", {"a": 2, "b": 2})
    seg_folder(tmp_path / "mixed" / "test", 2)
    with pytest.raises(FormatError, match="laid out differently"):
        dlsets.load_folder(tmp_path / "mixed", size=8)


def test_export_and_expand_carry_masks(tmp_path):
    import h5py

    root = seg_folder(tmp_path / "seg", 6)
    ds = dlsets.load_folder(root, size=(12, 16))
    ds.to_hdf5(tmp_path / "seg.h5")
    with h5py.File(tmp_path / "seg.h5") as f:
        assert np.array_equal(f["train/masks"][:], ds.train.masks)
        assert np.array_equal(f["test/masks"][:], ds.test.masks)
    ds.to_npz(tmp_path / "seg.npz")
    with np.load(tmp_path / "seg.npz") as z:
        assert np.array_equal(z["m_train"], ds.train.masks)


def test_a_decoding_process_that_dies_is_an_error_not_a_hang(tmp_path, monkeypatch):
    root = class_folder(tmp_path / "d", {"a": 40, "b": 40}, size=(8, 8))
    real = folders.imgread.decode_image

    def dies_on_one(path, target, **kw):
        if path.endswith("a/img007.png") and os.getpid() != parent:
            os._exit(9)  # as the kernel's OOM killer would end it
        return real(path, target, **kw)

    parent = os.getpid()
    monkeypatch.setattr(folders.imgread, "decode_image", dies_on_one)
    with pytest.raises(DlsetsError, match="a decoding process died"):
        dlsets.load_folder(root, size=8, workers=2)
    assert _prepared(tmp_path / "dlsets-cache") == []


def test_big_results_are_assembled_in_a_scratch_file(tmp_path, monkeypatch):
    root = class_folder(tmp_path / "d", {"a": 6, "b": 6})
    (root / "a" / "zz_bad.png").write_bytes(b"bad")
    in_memory = dlsets.load_folder(root, size=8)
    monkeypatch.setattr(folder_prepare, "MEMORY_LIMIT", 0)
    scratch = dlsets.load_folder(root, size=8, cache_dir=tmp_path / "c2")
    assert np.array_equal(in_memory.train.images, scratch.train.images)
    assert np.array_equal(in_memory.test.images, scratch.test.images)
    assert not list((tmp_path / "c2").rglob("*.scratch"))


def test_test_count_is_notmnists_rule_for_one_in_ten():
    from dlsets.formats.notmnist import test_count as notmnist_count

    assert all(folders.test_count(n, 0.1) == notmnist_count(n) for n in range(2000))
    assert [folders.test_count(n, 0.25) for n in (1, 2, 3, 6)] == [0, 1, 1, 2]


def test_a_validation_split_for_a_folder_and_load_takes_a_folder_path(tmp_path, monkeypatch):
    root = class_folder(tmp_path / "pets", {"dogs": 20, "cats": 10}, size=(16, 12))
    ds = dlsets.load_folder(root, val=0.2, val_seed=1)
    assert len(ds.train) + len(ds.val) == 27 and len(ds.val) == 5  # of 27 train images
    assert np.bincount(ds.val.labels, minlength=2).tolist() == [2, 3]  # stratified
    same = dlsets.load(str(root), val=0.2, val_seed=1)  # a path goes to load_folder
    assert np.array_equal(same.val.images, ds.val.images)
    monkeypatch.chdir(tmp_path)
    assert len(dlsets.load("pets").train) == 27  # a bare word that is a folder, not a dataset
    with pytest.raises(dlsets.OptionError, match="folder of images"):
        dlsets.load(str(root), format="hdf5")


def test_a_folder_rewritten_while_it_is_read_is_not_kept(tmp_path, monkeypatch):
    # a file rewritten during the decode and put back later with its old size and time would
    # otherwise be served as it was read, by the content key of the scan before decoding
    root = class_folder(tmp_path / "pets", {"dogs": 6, "cats": 6})
    victim = root / "dogs" / "img000.png"
    real = folder_prepare.decode_all

    def rewriting(*args, **kwargs):
        for i, result in enumerate(real(*args, **kwargs)):
            if i == 0:
                st = victim.stat()
                save(victim, pattern(20, 24, seed=99))
                os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
            yield result

    monkeypatch.setattr(folder_prepare, "decode_all", rewriting)
    with pytest.raises(DlsetsError, match="changed while it was being read"):
        dlsets.load_folder(root, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("manifest.json"))
    monkeypatch.setattr(folder_prepare, "decode_all", real)
    ds = dlsets.load_folder(root, cache_dir=tmp_path / "cache")  # settled: loads and is kept
    assert len(ds.train) + len(ds.test) == 12
    assert list((tmp_path / "cache").rglob("manifest.json"))
