"""Elastic fields of large images, drawn on a grid (dlsets/augment/elastic.py), against the
exact field of Simard et al.: uniform noise on every pixel, Gaussian-smoothed, times alpha."""

import numpy as np
import pytest

from dlsets.augment import Augmenter, kernels, params
from dlsets.augment import elastic as E


def _exact(n, h, w, sigma, rng):
    import cv2

    r = int(np.ceil(4 * sigma))
    taps = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    taps /= taps.sum()
    return np.stack([cv2.sepFilter2D(rng.uniform(-1, 1, (h, w)).astype(np.float32), cv2.CV_32F,
                                     taps, taps, borderType=cv2.BORDER_REFLECT_101)
                     for _ in range(n)])


def _stats(d, sigma):
    b = int(4 * sigma)  # away from the borders
    inner = d[:, b:-b, b:-b]
    var = inner.var()
    lag = int(round(sigma))
    grad = (np.diff(d, axis=2)[:, b:-b, b:-b].var() + np.diff(d, axis=1)[:, b:-b, b:-b].var())

    def corr(k):
        return (np.mean(inner[:, :, k:] * inner[:, :, :-k])
                + np.mean(inner[:, k:] * inner[:, :-k])) / (2 * var)

    return {"var": var, "magnitude": np.abs(inner).mean(), "gradient": grad / (2 * var),
            "corr sigma": corr(lag), "corr 2 sigma": corr(2 * lag)}


@pytest.mark.parametrize("h,w,sigma", [(128, 128, 4.0), (128, 150, 3.0), (160, 128, 8.0),
                                       (128, 128, 1.5)])
def test_the_grid_field_has_the_exact_fields_statistics(h, w, sigma):
    # documented tolerances (docs/benchmarks.md): variance and mean magnitude within 5%,
    # gradient variance within 10%, correlations at sigma and 2 sigma within 0.04
    alpha, n = 3.0, 60
    exact = _stats(alpha * _exact(n, h, w, sigma, np.random.default_rng(0)), sigma)
    assert kernels.coarse_field(h, w)
    dx, dy = Augmenter(elastic=(alpha, sigma), seed=1)._geometry(0, n, h, w)[1].dense()
    assert abs(float(dx.mean())) < 0.05 * alpha and abs(float(dy.mean())) < 0.05 * alpha
    for d in (dx, dy):
        got = _stats(d, sigma)
        assert got["var"] == pytest.approx(exact["var"], rel=0.05)
        assert got["magnitude"] == pytest.approx(exact["magnitude"], rel=0.05)
        assert got["gradient"] == pytest.approx(exact["gradient"], rel=0.1)
        for k in ("corr sigma", "corr 2 sigma"):
            assert got[k] == pytest.approx(exact[k], abs=0.04)
    # dx and dy are independent
    assert abs(np.corrcoef(dx.ravel(), dy.ravel())[0, 1]) < 0.05


def test_the_grid_has_two_nodes_per_sigma_and_no_more_than_the_pixels():
    assert E.nodes(256, 4.0) == 128 and E.nodes(250, 3.0) == 167
    assert E.nodes(150, 1.0) == 150 and E.nodes(1, 50.0) == 1
    # no upsampling: the variance factor is 1
    assert E.axis(150, 1.0)[2] == pytest.approx(1.0)


def test_grid_noise_is_the_same_by_id_or_by_range():
    a = params.uniform16(7, 2, 10, 5, 37)
    b = params.uniform16_at(7, 2, np.array([14, 10, 12]), 37)
    assert a.dtype == np.float32 and a.shape == (5, 37)
    assert np.array_equal(b, a[[4, 0, 2]])
    assert -1 < a.min() and a.max() < 1
    big = params.uniform16(0, 0, 0, 1, 40_000)
    assert big.var() == pytest.approx(1 / 3, rel=0.03) and abs(big.mean()) < 0.01


def test_narrow_and_tiny_sided_images_get_fields_quickly():
    # a 3 x 5000 strip goes through the mosaic; its exact field would need a 5000 x 5000 SVD
    assert kernels.coarse_field(3, 5000) and not kernels.per_image((1, 3, 5000), elastic=True)
    assert not kernels.coarse_field(20, 512)
    for h, w in [(1, 20_000), (20_000, 1), (3, 5000)]:
        x = np.random.default_rng(0).integers(0, 255, (2, h, w), np.uint8)
        got = Augmenter(elastic=(5, 4), seed=0)(x, channels="last")
        assert got.shape == x.shape and not np.array_equal(got, x)


def test_colour_images_are_each_channel_warped_alike():
    # uint8 RGB goes through RGBA inside: the same values as each channel on its own
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 128, 130, 3), np.uint8)
    aug = Augmenter(rotate=10, elastic=(20, 3), border="reflect", seed=2)
    got = aug(x, start=0)
    for ch in range(3):
        assert np.array_equal(got[..., ch], aug(np.ascontiguousarray(x[..., ch]), start=0,
                                                         channels="last"))
