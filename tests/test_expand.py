"""Expansion to N samples, in memory and streamed to HDF5; subsets; preview grids."""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dlsets.augment import Augmenter, expand, expand_to_hdf5, preview_grid, save_png, take_subset
from dlsets.augment.expand import plan  # noqa: E402
from dlsets.errors import OptionError  # noqa: E402


def _data(counts=(50, 10, 5), h=12, w=12, c=None, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(counts)), counts).astype(np.uint8)
    rng.shuffle(y)
    shape = (len(y), h, w) if c is None else (len(y), h, w, c)
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    return x, y


AUG = Augmenter(rotate=15, shift=0.1, shear=10, elastic=(8, 2), seed=4)


def test_expand_originals_first_then_balanced_copies():
    x, y = _data()
    ex, ey = expand(x, y, target=300, augmenter=AUG, seed=1)
    assert ex.shape == (300, 12, 12) and ex.dtype == x.dtype and ey.dtype == y.dtype
    assert np.array_equal(ex[:65], x) and np.array_equal(ey[:65], y)
    assert np.bincount(ey).tolist() == [100, 100, 100]
    src = plan(y, 300, seed=1)
    assert np.array_equal(ey[65:], y[src])
    # the copies are the augmenter's samples 65.. of the sources
    assert np.array_equal(ex[65:], AUG(x[src], start=65))
    assert not np.array_equal(ex[65:], x[src])


def test_balance_levels_classes_as_far_as_the_originals_allow():
    x, y = _data(counts=(100, 10, 7))
    _, ey = expand(x, y, target=160, augmenter=AUG)
    assert np.bincount(ey).tolist() == [100, 30, 30]
    _, ey = expand(x, y, target=162, augmenter=AUG)
    assert sorted(np.bincount(ey).tolist()) == [31, 31, 100]
    _, ey = expand(x, y, target=200, augmenter=AUG, balance=False)
    counts = np.bincount(ey[117:], minlength=3)
    assert counts[0] > counts[1] > counts[2]  # copies follow the original proportions
    _, ey = expand(x, y, target=31, augmenter=AUG, keep_originals=False)
    assert sorted(np.bincount(ey).tolist()) == [10, 10, 11]


def test_every_original_is_copied_before_any_twice():
    x, y = _data(counts=(40, 40))
    src = plan(y, 80 + 40, seed=3)
    assert len(np.unique(src)) == 40
    src = plan(y, 80 + 80, seed=3)
    assert np.bincount(src, minlength=80).tolist() == [1] * 80


def test_expand_is_deterministic_and_seeded():
    x, y = _data()
    a = expand(x, y, target=150, augmenter=AUG, seed=0)
    b = expand(x, y, target=150, augmenter=AUG, seed=0)
    c = expand(x, y, target=150, augmenter=AUG, seed=1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_expand_errors():
    x, y = _data()
    with pytest.raises(OptionError, match="target=10 is smaller than the 65 originals"):
        expand(x, y, target=10, augmenter=AUG)
    with pytest.raises(OptionError, match="augmenter=None"):
        expand(x, y, target=100)
    with pytest.raises(OptionError, match="65 images but y has 64"):
        expand(x, y[:-1], target=100, augmenter=AUG)
    with pytest.raises(OptionError, match="augmenter="):
        expand(x, y, target=100, augmenter=lambda im: im)
    with pytest.raises(OptionError, match="target=0"):
        expand(x, y, target=0, augmenter=AUG, keep_originals=False)
    with pytest.raises(OptionError, match="labels"):
        expand(x, y.astype(np.float32), target=100, augmenter=AUG)
    # exactly the originals: no augmenter needed
    ex, ey = expand(x, y, target=65)
    assert np.array_equal(ex, x)


@pytest.mark.parametrize("chunk_size", [7, 64, 1000])
def test_hdf5_holds_exactly_what_expand_returns(tmp_path, chunk_size):
    x, y = _data(c=3)
    ex, ey = expand(x, y, target=230, augmenter=AUG, seed=2)
    out = expand_to_hdf5(x, y, target=230, out=tmp_path / "big.h5", augmenter=AUG, seed=2,
                         chunk_size=chunk_size, classes=["a", "b", "c"], progress=False)
    with h5py.File(out, "r") as f:
        assert np.array_equal(f["train/images"][...], ex)
        assert np.array_equal(f["train/labels"][...], ey)
        assert [c.decode() if isinstance(c, bytes) else c for c in f.attrs["classes"]] == [
            "a", "b", "c"]
        assert f.attrs["originals"] == 65
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.h5"]


def test_hdf5_options(tmp_path):
    x, y = _data()
    out = expand_to_hdf5(x, y, 100, tmp_path / "sub" / "g.h5", augmenter=AUG,
                         compression="gzip", progress=True)
    with h5py.File(out, "r") as f:
        assert f["train/images"].compression == "gzip"
        assert f["train/images"].shape == (100, 12, 12)
        assert list(f.attrs["classes"]) == ["0", "1", "2"] or [
            c.decode() for c in f.attrs["classes"]] == ["0", "1", "2"]
    with pytest.raises(OptionError, match="compression='zip'"):
        expand_to_hdf5(x, y, 100, tmp_path / "h.h5", augmenter=AUG, compression="zip")
    with pytest.raises(OptionError, match="classes has 2 names"):
        expand_to_hdf5(x, y, 100, tmp_path / "h.h5", augmenter=AUG, classes=["a", "b"])
    with pytest.raises(OptionError, match="chunk_size=0"):
        expand_to_hdf5(x, y, 100, tmp_path / "h.h5", augmenter=AUG, chunk_size=0)
    assert not (tmp_path / "h.h5").exists()


class _Breaks(Augmenter):
    """A working augmenter that fails on its third batch, like a crash mid-way."""

    calls = 0

    def __call__(self, images, masks=None, *, start=None, channels=None):
        type(self).calls += 1
        if type(self).calls == 3:
            raise KeyboardInterrupt
        return super().__call__(images, masks, start=start, channels=channels)


def test_interrupted_write_leaves_no_file(tmp_path):
    x, y = _data()
    target = tmp_path / "out.h5"
    with pytest.raises(KeyboardInterrupt):
        expand_to_hdf5(x, y, 500, target, augmenter=_Breaks(rotate=10), chunk_size=50)
    assert list(tmp_path.iterdir()) == []
    # an existing file stays as it was (one dlsets did not write needs overwrite=True)
    target.write_bytes(b"old")
    _Breaks.calls = 0
    with pytest.raises(KeyboardInterrupt):
        expand_to_hdf5(x, y, 500, target, augmenter=_Breaks(rotate=10), chunk_size=50,
                       overwrite=True)
    assert target.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1


_PEAK_CHILD = """
import resource, sys
import numpy as np
from dlsets.augment import Augmenter, expand_to_hdf5

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

rng = np.random.default_rng(0)
x = rng.integers(0, 256, (2000, 28, 28), dtype=np.uint8)
y = np.arange(2000, dtype=np.uint8) % 10
aug = Augmenter(rotate=15, shift=0.1, seed=0)
expand_to_hdf5(x, y, 3_000, sys.argv[1] + "/warm.h5", augmenter=aug, chunk_size=1000)
out = [peak()]  # everything imported, HDF5 and OpenCV started
for n in (30_000, 120_000):
    expand_to_hdf5(x, y, n, sys.argv[1] + f"/{n}.h5", augmenter=aug, chunk_size=1000)
    out.append(peak())
print(*out)
"""


def test_hdf5_streaming_memory_is_bounded(tmp_path):
    """The process's peak RSS (tracemalloc missed HDF5's and OpenCV's buffers)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _PEAK_CHILD, str(tmp_path)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    base, small, large = map(int, r.stdout.split())
    # scratch for one piece of work per thread and one chunk, whatever the target
    assert small - base < 48e6, small - base
    # 90,000 more samples cost only their plan (a few int64 per sample), not their pixels
    # (784 bytes each, 70 MB): at this rate 1,000,000 MNIST images need well under 100 MB
    per_sample = max(0, large - small) / 90_000
    assert per_sample < 64, per_sample
    assert small - base + per_sample * 1_000_000 < 100e6


def test_albumentations_pipeline_is_accepted(tmp_path):
    import albumentations as A

    x, y = _data()
    pipe = A.Compose([A.Affine(rotate=(-20, 20), p=1.0), A.GaussNoise(p=0.5)])
    a = expand(x, y, 120, augmenter=pipe, seed=3)
    b = expand(x, y, 120, augmenter=pipe, seed=3)
    assert np.array_equal(a[0], b[0])
    assert not np.array_equal(a[0][65:], x[plan(y, 120, seed=3)])
    out = expand_to_hdf5(x, y, 120, tmp_path / "a.h5", augmenter=pipe, seed=3, chunk_size=9)
    with h5py.File(out, "r") as f:
        assert np.array_equal(f["train/images"][...], a[0])
    single = expand(x, y, 80, augmenter=A.HorizontalFlip(p=1.0))
    assert np.array_equal(single[0][65:], x[plan(y, 80)][:, :, ::-1])
    grid = preview_grid(x, pipe, n=2, copies=3)
    assert grid.dtype == np.uint8


def test_take_subset_is_stratified_and_deterministic():
    x, y = _data(counts=(60, 30, 10))
    sx, sy = take_subset(x, y, 10, seed=0)
    assert np.bincount(sy).tolist() == [6, 3, 1]
    idx = [np.flatnonzero((x == row).all(axis=(1, 2)))[0] for row in sx]
    assert idx == sorted(idx)  # original order kept
    again = take_subset(x, y, 10, seed=0)
    assert np.array_equal(again[0], sx)
    assert not np.array_equal(take_subset(x, y, 10, seed=1)[0], sx)
    assert sorted(np.bincount(take_subset(x, y, 2)[1], minlength=3).tolist()) == [0, 1, 1]
    assert len(take_subset(x, y, 100)[1]) == 100
    with pytest.raises(OptionError, match="k=101 is more than the 100"):
        take_subset(x, y, 101)
    with pytest.raises(OptionError, match="k=0"):
        take_subset(x, y, 0)


def test_preview_grid_layout_and_png(tmp_path):
    from PIL import Image

    x, _ = _data(h=10, w=12)
    grid = preview_grid(x, AUG, n=3, copies=4)
    gap = 1
    assert grid.shape == (3 * 10 + 2 * gap, 5 * 12 + 3 * gap + 3)
    assert np.array_equal(grid[:10, :12], x[0])
    assert np.array_equal(grid[11:21, :12], x[1])
    assert np.all(grid[10, :] == 128) and np.all(grid[:, 12:15] == 128)
    copies = AUG(np.repeat(x[:3], 4, axis=0), start=0)
    assert np.array_equal(grid[:10, 15:27], copies[0])
    rgb = preview_grid(_data(c=3)[0].astype(np.float32) / 255, AUG, n=2, copies=2)
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8
    path = save_png(grid, tmp_path / "p" / "grid.png", scale=2)
    back = np.asarray(Image.open(path))
    assert back.shape == (grid.shape[0] * 2, grid.shape[1] * 2)
    assert np.array_equal(back[::2, ::2], grid)
    assert sorted(p.name for p in path.parent.iterdir()) == ["grid.png"]
    with pytest.raises(OptionError, match="n=70 rows"):
        preview_grid(x, AUG, n=70)
    with pytest.raises(OptionError, match="uint8 image"):
        save_png(grid.astype(np.float32), tmp_path / "f.png")
    with pytest.raises(OptionError, match="gap=-1 is not allowed: give an integer >= 0"):
        preview_grid(x, AUG, gap=-1)
    with pytest.raises(OptionError, match="copies=0 is not allowed: give an integer >= 1"):
        preview_grid(x, AUG, copies=0)
    assert preview_grid(x, AUG, n=2, copies=2, gap=0).shape == (20, 3 * 12 + 1)


def test_albumentations_pipeline_that_changes_the_dtype_is_refused():
    import albumentations as A

    x, y = _data()
    pipe = A.Compose([A.Affine(rotate=(-20, 20), p=1.0), A.ToFloat(max_value=255)])
    with pytest.raises(OptionError, match="turned a uint8 image into float32"):
        expand(x, y, 80, augmenter=pipe)


class _Records(Augmenter):
    """An augmenter that notes the size in bytes of every batch it is given."""

    def __call__(self, images, masks=None, *, start=None, channels=None):
        self.seen.append(images.nbytes)
        return super().__call__(images, masks, start=start, channels=channels)


def test_default_chunks_are_bounded_in_bytes_not_only_in_samples(tmp_path, monkeypatch):
    import importlib

    expand_module = importlib.import_module("dlsets.augment.expand")  # not the function
    x, y = _data(c=3)  # 432 bytes per image
    want = expand(x, y, 300, augmenter=AUG)
    monkeypatch.setattr(expand_module, "CHUNK_BYTES", 10_000)  # stands for large images
    aug = _Records(AUG.transforms, seed=AUG.seed)
    aug.seen = []
    got = expand(x, y, 300, augmenter=aug)
    out = expand_to_hdf5(x, y, 300, tmp_path / "c.h5", augmenter=aug, progress=False)
    assert len(aug.seen) > 2 and max(aug.seen) <= 10_000
    assert np.array_equal(got[0], want[0])
    with h5py.File(out, "r") as f:
        assert np.array_equal(f["train/images"][...], want[0])


def test_hdf5_progress_bar_counts_images(tmp_path, capsys):
    x, y = _data()
    expand_to_hdf5(x, y, 200, tmp_path / "p.h5", augmenter=AUG, chunk_size=50, progress=True)
    err = capsys.readouterr().err
    assert "augment" in err and "/200 " in err and "img/s" in err  # label, total, unit
    expand_to_hdf5(x, y, 200, tmp_path / "q.h5", augmenter=AUG, progress=False)
    assert capsys.readouterr().err == ""


def test_hdf5_layout_is_the_exporters(tmp_path):
    from dlsets.outputs.export import write_hdf5

    x, y = _data(c=3)
    ours = expand_to_hdf5(x, y, 65, tmp_path / "ours.h5", classes=["a", "b", "c"])
    theirs = write_hdf5(tmp_path / "theirs.h5", {"train": (x, y)}, ["a", "b", "c"])
    with h5py.File(ours, "r") as a, h5py.File(theirs, "r") as b:
        assert list(a) == list(b) == ["train"] and list(a["train"]) == list(b["train"])
        for key in ("train/images", "train/labels"):
            assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape
            assert a[key].chunks == b[key].chunks
            assert np.array_equal(a[key][...], b[key][...])
        assert set(b.attrs) <= set(a.attrs)
        assert list(a.attrs["classes"]) == list(b.attrs["classes"])


def test_expand_and_preview_use_fixed_samples_whatever_the_augmenters_position(tmp_path):
    x, y = _data()
    aug = Augmenter(rotate=15, shift=0.1, seed=4)
    want = expand(x, y, 150, augmenter=aug, seed=1)
    grid = preview_grid(x, aug, n=2, copies=3)
    assert aug.position == 0  # they pass explicit sample indices: the counter is left alone
    aug(x)  # a training loop used it meanwhile
    got = expand(x, y, 150, augmenter=aug, seed=1)
    assert np.array_equal(got[0], want[0])
    assert np.array_equal(preview_grid(x, aug, n=2, copies=3), grid)
    out = expand_to_hdf5(x, y, 150, tmp_path / "e.h5", augmenter=aug, seed=1, chunk_size=40,
                         progress=False)
    with h5py.File(out, "r") as f:
        assert np.array_equal(f["train/images"][...], want[0])
    assert aug.position == len(x)


def test_channels_first_datasets_expand_preview_and_stream(tmp_path):
    import albumentations as A

    x, y = _data(c=3)
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    want_x, want_y = expand(x, y, 150, augmenter=AUG, seed=1)
    got_x, got_y = expand(nchw, y, 150, augmenter=AUG, seed=1, channels="first")
    assert np.array_equal(got_x, want_x.transpose(0, 3, 1, 2)) and np.array_equal(got_y, want_y)
    out = expand_to_hdf5(nchw, y, 150, tmp_path / "nchw.h5", augmenter=AUG, seed=1,
                         chunk_size=40, progress=False, channels="first")
    with h5py.File(out, "r") as f:  # written in the layout given, which it names
        assert np.array_equal(f["train/images"][...], got_x)
        assert f.attrs["channels"] == "first"
    with h5py.File(expand_to_hdf5(x, y, 70, tmp_path / "nhwc.h5", augmenter=AUG), "r") as f:
        assert f.attrs["channels"] == "last"
    grid = preview_grid(x, AUG, n=2, copies=3)
    assert np.array_equal(preview_grid(nchw, AUG, n=2, copies=3, channels="first"), grid)
    # albumentations pipelines see (H, W, C) images either way
    pipe = A.Compose([A.Affine(rotate=(-20, 20), p=1.0)])
    want_a = expand(x, y, 100, augmenter=pipe, seed=2)[0]
    got_a = expand(nchw, y, 100, augmenter=pipe, seed=2, channels="first")[0]
    assert np.array_equal(got_a, want_a.transpose(0, 3, 1, 2))
    # left unsaid, a channels-first set is refused before anything is written
    for call in (lambda: expand(nchw, y, 150, augmenter=AUG),
                 lambda: expand_to_hdf5(nchw, y, 150, tmp_path / "no.h5", augmenter=AUG),
                 lambda: preview_grid(nchw, AUG, n=2),
                 lambda: expand(nchw, y, 100, augmenter=pipe)):
        with pytest.raises(OptionError, match="looks channels-first.*channels='first'"):
            call()
    assert not (tmp_path / "no.h5").exists()


def test_copy_sources_gives_the_plan_for_any_rows_without_computing_it_all():
    from dlsets.augment.expand import _permute, copy_sources

    keys = np.arange(1, 5, dtype=np.uint64) * np.uint64(0x1234567)
    for m in (1, 2, 3, 17, 1000, 4097):
        assert sorted(_permute(np.arange(m), m, keys).tolist()) == list(range(m))
    x, y = _data(counts=(50, 10, 5))
    for balance in (True, False):
        full = plan(y, 1000, seed=5, balance=balance)
        lazy = copy_sources(y, 1000, seed=5, balance=balance)
        assert len(lazy) == len(full) == 935
        assert np.array_equal(lazy[100:250], full[100:250])
        assert np.array_equal(lazy[[7, 3, 934, 3]], full[[7, 3, 934, 3]])
    # a slice of a 100M-sample plan costs its own size, and the classes still come out even
    big = copy_sources(y, 100_000_000, seed=5)
    assert np.bincount(y[big[50_000_000:50_030_000]], minlength=3).min() > 9_000


def test_extreme_numbers_in_the_python_api_fail_before_allocating(tmp_path):
    """--target 10**12 allocated 745 GiB for the plan; a scale of 100 on 100,000 copies tried
    a grid of trillions of pixels; a seed of 2**64 was refused only after the work."""
    from dlsets import SpaceError
    from dlsets.augment import preview_grid, save_png

    x = np.zeros((20, 28, 28), np.uint8)
    y = np.arange(20, dtype=np.uint8) % 10
    aug = Augmenter(rotate=5)
    with pytest.raises(SpaceError, match=r"expanding to 1,000,000,000,000 samples in memory "
                                         r"needs 785,000,000,000,000 bytes"):
        expand(x, y, 10**12, augmenter=aug)
    with pytest.raises(SpaceError, match=r"not enough disk space in .*785,000,000,000,000 bytes"):
        expand_to_hdf5(x, y, 10**12, tmp_path / "big.h5", augmenter=aug)
    with pytest.raises(SpaceError, match="planning 999,999,999,980 augmented copies"):
        plan(y, 10**12)
    with pytest.raises(SpaceError, match="preview grid"):
        preview_grid(x, aug, n=8, copies=5 * 10**7)  # 940 GB: no machine has that
    with pytest.raises(OptionError, match="a PNG is at most 2,147,483,647 pixels"):
        save_png(np.zeros((10, 10), np.uint8), tmp_path / "g.png", scale=10**9)
    for seed in (2**64, -1, 1.5):
        with pytest.raises(OptionError, match="from 0 to 2\\*\\*64 - 1"):
            Augmenter(rotate=5, seed=seed)
        with pytest.raises(OptionError):
            expand_to_hdf5(x, y, 30, tmp_path / "s.h5", augmenter=aug, seed=seed)
    assert not list(tmp_path.iterdir())
