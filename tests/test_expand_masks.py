"""Segmentation masks through expand, expand_to_hdf5, take_subset and preview_grid."""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dlsets.augment import Augmenter, expand, expand_to_hdf5, preview_grid, take_subset
from dlsets.errors import OptionError  # noqa: E402


def _seg(n=20, h=16, w=16):
    rng = np.random.default_rng(0)
    masks = np.zeros((n, h, w), np.uint8)
    masks[:, : h // 2, : w // 2] = 1
    masks[:, h // 2:, w // 2:] = 2
    x = (masks * 100 + rng.integers(0, 20, masks.shape)).astype(np.uint8)  # image shows mask
    y = (np.arange(n) % 2).astype(np.uint8)
    return x, y, masks


def test_expand_moves_masks_with_their_images():
    x, y, m = _seg(h=64, w=64)
    aug = Augmenter(rotate=30, shift=0.1, seed=3)
    ex, ey, em = expand(x, y, 100, augmenter=aug, masks=m, seed=1)
    assert ex.shape == (100, 64, 64) and em.shape == (100, 64, 64) and em.dtype == np.uint8
    assert np.array_equal(em[:20], m) and np.array_equal(ex[:20], x)
    assert set(np.unique(em)) <= {0, 1, 2}  # nearest neighbour: no values in between
    # the image shows its mask (class * 100): where the mask says class k, so does the image
    inside = em[20:] > 0
    agree = np.abs(ex[20:][inside].astype(int) // 100 - em[20:][inside]) == 0
    assert agree.mean() > 0.95
    # the same geometry as the images get without masks
    ex2, _ = expand(x, y, 100, augmenter=aug, seed=1)
    assert np.array_equal(ex, ex2)


def test_hflip_moves_the_mask_exactly():
    x, y, m = _seg(6)
    m[:, :, :3] = 3  # a stripe on the left
    ex, _, em = expand(x, y, 12, augmenter=Augmenter(hflip=1.0), masks=m)
    assert (em[6:, :, -3:] == 3).all() and np.array_equal(em[6:], m[:, :, ::-1])


def test_expand_to_hdf5_writes_masks_like_expand(tmp_path):
    x, y, m = _seg()
    aug = Augmenter(rotate=20, seed=2)
    ex, ey, em = expand(x, y, 90, augmenter=aug, masks=m)
    out = expand_to_hdf5(x, y, 90, tmp_path / "seg.h5", augmenter=aug, masks=m, chunk_size=7,
                         progress=False)
    with h5py.File(out) as f:
        assert np.array_equal(f["train/images"][:], ex)
        assert np.array_equal(f["train/masks"][:], em)
        assert np.array_equal(f["train/labels"][:], ey)


def test_masks_must_fit_the_images():
    x, y, m = _seg()
    with pytest.raises(OptionError, match="one class map per image"):
        expand(x, y, 30, augmenter=Augmenter(rotate=5), masks=m[:5])
    with pytest.raises(OptionError, match="height and width"):
        expand(x, y, 30, augmenter=Augmenter(rotate=5), masks=m[:, :8])


def test_take_subset_and_preview_with_masks():
    x, y, m = _seg()
    sx, sy, sm = take_subset(x, y, 6, masks=m, seed=4)
    px, py = take_subset(x, y, 6, seed=4)
    assert np.array_equal(sx, px) and np.array_equal(sy, py) and sm.shape == (6, 16, 16)
    grid = preview_grid(sx, Augmenter(rotate=10), n=3, copies=2, masks=sm)
    plain = preview_grid(sx, Augmenter(rotate=10), n=3, copies=2)
    assert grid.shape[0] == 2 * plain.shape[0] + 1 and grid.shape[1] == plain.shape[1]
    # the first mask cell (row 2) spreads classes 0..2 over 0..255
    assert set(np.unique(grid[17:33, :16])) <= {0, 127, 255}
