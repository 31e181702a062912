"""Elastic fields of large images, and their per-image remap.

From ``kernels.ELASTIC_PER_IMAGE_PIXELS`` pixels on, a field is drawn as Simard et al. (2003)
describe it, on a grid ``NODES_PER_SIGMA`` nodes per sigma rather than one node per pixel:
uniform noise on (-1, 1), a separable Gaussian of sigma (in nodes) with reflect-101 borders,
then bilinear upsampling to the image (``cv2.resize``'s pixel-centre alignment). The field is
smooth over sigma pixels, so the coarse grid loses little of it (docs/benchmarks.md measures its
statistics against the exact field), and costs a few noise values and filter taps per node
instead of the exact field's H x r x W products. A per-axis factor gives its variance away
from the borders exactly the exact field's.

Every step works on one sample's own numbers, so a sample's field does not depend on the batch.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from . import functional as F
from . import params

# 2 nodes per sigma: the field's variance, gradient and curvature within 6% of the exact
# field's (1 node per sigma: curvature 1.5x, its kinks show); finer costs noise and filtering
# that grow with the square of the node count.
NODES_PER_SIGMA = 2.0
_BORDERS = {"constant": "BORDER_CONSTANT", "reflect": "BORDER_REFLECT_101",
            "edge": "BORDER_REPLICATE"}


class CoarseField(NamedTuple):
    """Elastic displacements of N samples of H x W, in pixels, held on a grid: ``dx[i]`` is
    ``cv2.resize(gx[i], (W, H))`` (bilinear), likewise ``dy``; gx, gy (N, h, w) float32."""

    gx: np.ndarray
    gy: np.ndarray
    height: int
    width: int

    def take(self, sl) -> CoarseField:
        """The fields of samples ``sl`` (a slice or an index array)."""
        return CoarseField(self.gx[sl], self.gy[sl], self.height, self.width)

    def combine(self, a: np.ndarray, b: np.ndarray, out: np.ndarray, product=None) -> None:
        """out[i] = a[i] * dx[i] + b[i] * dy[i] ((n,) float32 weights; out (n, H, W))."""
        for i in range(len(out)):
            _upsample(a[i] * self.gx[i] + b[i] * self.gy[i], out[i])

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """The displacements as two (N, H, W) float32 arrays (for tests and inspection)."""
        n = len(self.gx)
        dx = np.empty((n, self.height, self.width), np.float32)
        dy = np.empty_like(dx)
        for i in range(n):
            _upsample(self.gx[i], dx[i])
            _upsample(self.gy[i], dy[i])
        return dx, dy


def _into(got: np.ndarray, dst: np.ndarray) -> None:
    if not np.shares_memory(got, dst):  # OpenCV drops a trailing axis of 1
        dst[...] = got.reshape(dst.shape)


def _upsample(grid: np.ndarray, out: np.ndarray) -> None:
    import cv2

    _into(cv2.resize(grid, (out.shape[1], out.shape[0]), dst=out,
                     interpolation=cv2.INTER_LINEAR), out)


@lru_cache(maxsize=64)
def _nodes_at(size: int, m: int) -> tuple[np.ndarray, np.ndarray | None, int, int]:
    """Where m nodes sit along ``size`` pixels for cv2.resize (float64 pixel positions), and
    what bilinear upsampling misses of a plane beyond the outermost nodes, where it holds the
    node's value: the offsets x - clip(x, first, last) (None: none) and the pixels [0, lo) and
    [hi, size) where they are not 0."""
    at = (np.arange(m) + 0.5) * (size / m) - 0.5
    xs = np.arange(size, dtype=np.float64)
    off = xs - np.clip(xs, at[0], at[-1])
    inside = np.flatnonzero(off == 0.0)
    if len(inside) == size:
        return at, None, 0, size
    return at, off, int(inside[0]), int(inside[-1]) + 1


def nodes(size: int, sigma: float) -> int:
    """Grid nodes along a side of ``size`` pixels (the side itself when sigma is small)."""
    return max(1, min(size, math.ceil(size * NODES_PER_SIGMA / sigma)))


def _gaussian(sigma: float) -> np.ndarray:
    """Normalised taps of a Gaussian of ``sigma``, radius ceil(4 sigma), float64."""
    radius = max(1, math.ceil(4.0 * sigma))
    w = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return w / w.sum()


@lru_cache(maxsize=64)
def axis(size: int, sigma: float) -> tuple[int, np.ndarray, float]:
    """(nodes, float32 taps of the Gaussian in nodes, variance factor) along one axis.

    The factor makes the mean variance over the pixels of one row of the upsampled smoothing
    equal the exact smoothing's (sum of squared taps at pixel spacing), borders left out: a
    pixel at fraction t between two nodes gets ((1-t)^2 + t^2) c0 + 2 t (1-t) c1 of it, c0 and c1
    the taps' autocorrelation at lags 0 and 1.
    """
    m = nodes(size, sigma)
    taps = _gaussian(sigma * m / size)
    exact = float(np.sum(_gaussian(sigma) ** 2))
    c0 = float(np.sum(taps * taps))
    c1 = float(np.sum(taps[:-1] * taps[1:]))
    src = (np.arange(size) + 0.5) * (m / size) - 0.5  # cv2.resize's source positions
    t = src - np.floor(src)
    coarse = float(np.mean(((1 - t) ** 2 + t * t) * c0 + 2 * t * (1 - t) * c1))
    return m, taps.astype(np.float32), math.sqrt(exact / coarse)


def field(seed: int, stream: int, start: int, n: int, height: int, width: int,
          alpha: float, sigma: float, ids: np.ndarray | None = None) -> CoarseField:
    """The fields of samples start..start+n-1 (or ``ids``) for H x W images."""
    import cv2

    h, ky, fy = axis(height, sigma)
    w, kx, fx = axis(width, sigma)
    k = 2 * h * w
    noise = (params.uniform16(seed, stream, start, n, k) if ids is None
             else params.uniform16_at(seed, stream, ids, k)).reshape(n, 2, h, w)
    kx = (kx * np.float32(alpha * fx * fy)).astype(np.float32)  # the scale rides on the taps
    for i in range(n):  # one call per grid: the same arithmetic for a sample in any batch
        for j in range(2):
            g = noise[i, j]
            cv2.sepFilter2D(g, cv2.CV_32F, kx, ky, dst=g, borderType=cv2.BORDER_REFLECT_101)
    return CoarseField(noise[:, 0], noise[:, 1], height, width)


def remap_each(images: np.ndarray, inverse: np.ndarray, field: CoarseField, *,
               border: str, fill: float, masks: np.ndarray | None, mask_fill: float,
               out: np.ndarray, mask_out: np.ndarray | None) -> None:
    """Resample image i (and mask i) through its field, then ``inverse[i]``, into ``out[i]``
    (``mask_out[i]``): one ``cv2.remap`` each, bilinear for images and nearest for masks, over
    the same maps; OpenCV's border modes stand in for folding the maps."""
    import cv2

    n, height, width = images.shape[:3]
    mode = getattr(cv2, _BORDERS[border])
    perspective = bool(np.any(inverse[:, 2, :2] != 0.0)) or bool(np.any(inverse[:, 2, 2] != 1.0))
    gh, gw = field.gx.shape[1:]
    px, ox, lo_x, hi_x = _nodes_at(width, gw)
    py, oy, lo_y, hi_y = _nodes_at(height, gh)
    rows = 3 if perspective else 2
    maps = F._buffer("elastic maps", (rows, height, width), np.float32)
    # OpenCV's remap of 3-channel uint8 through float maps costs 1.9x its 4-channel one (at
    # 256 x 256; 1.3x with fixed-point maps, which would round positions to 1/32 pixel): RGB
    # goes through RGBA and back, the same values faster
    rgba = images.dtype == np.uint8 and images.ndim == 4 and images.shape[3] == 3
    if rgba:
        four = F._buffer("elastic rgba", (2, height, width, 4), np.uint8)
    # a (x + dx) + b (y + dy) + c on the grid, then upsampled: bilinear is exact for the plane
    # between the outermost nodes; the pixels beyond them get the rest (ox, oy) afterwards
    a, b, c = (inverse[:, :rows, j] for j in range(3))  # (n, rows) each
    wa, wb = a.astype(np.float32), b.astype(np.float32)
    grids = F._buffer("elastic grids", (n, rows, gh, gw), np.float32)
    np.multiply(wa[..., None, None], field.gx[:, None], out=grids)  # elementwise: per sample
    grids += wb[..., None, None] * field.gy[:, None]
    grids += (a[..., None] * px + c[..., None]).astype(np.float32)[:, :, None, :]
    grids += (b[..., None] * py).astype(np.float32)[..., None]
    fix_x = None if ox is None else (a[..., None] * ox).astype(np.float32)
    fix_y = None if oy is None else (b[..., None] * oy).astype(np.float32)[..., None]
    for i in range(n):
        for k in range(rows):
            m = maps[k]
            _upsample(grids[i, k], m)
            if fix_x is not None and a[i, k] != 0.0:
                m[:, :lo_x] += fix_x[i, k, :lo_x]
                m[:, hi_x:] += fix_x[i, k, hi_x:]
            if fix_y is not None and b[i, k] != 0.0:
                m[:lo_y] += fix_y[i, k, :lo_y]
                m[hi_y:] += fix_y[i, k, hi_y:]
        if perspective:
            den = maps[2]
            np.copyto(den, np.float32(1e-6), where=np.abs(den) < 1e-6)
            np.divide(maps[0], den, out=maps[0])
            np.divide(maps[1], den, out=maps[1])
        if rgba:
            cv2.cvtColor(images[i], cv2.COLOR_RGB2RGBA, dst=four[0])
            cv2.remap(four[0], maps[0], maps[1], cv2.INTER_LINEAR, dst=four[1],
                      borderMode=mode, borderValue=(fill,) * 4)
            cv2.cvtColor(four[1], cv2.COLOR_RGBA2RGB, dst=out[i])
        else:
            _into(cv2.remap(images[i], maps[0], maps[1], cv2.INTER_LINEAR, dst=out[i],
                            borderMode=mode, borderValue=(fill,) * 4), out[i])
        if masks is not None:
            _into(cv2.remap(masks[i], maps[0], maps[1], cv2.INTER_NEAREST, dst=mask_out[i],
                            borderMode=mode, borderValue=(mask_fill,) * 4), mask_out[i])
