"""Pure array functions of the augmentation engine: no randomness, no state.

Geometry is described by *inverse* homographies, (N, 3, 3) float64 matrices that map an output
pixel (x, y, 1) to the source position it samples (pixel centres at integer coordinates, x to the
right, y down). An optional elastic field adds a displacement in output space before the
homography. :func:`warp` turns all of it into one sampling map per batch and resamples every
image with a single ``cv2.remap`` over a mosaic of tiles, so each pixel is interpolated once.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from ..errors import OptionError

BORDERS = ("constant", "reflect", "edge")
INTERPOLATIONS = ("bilinear", "nearest")
IMAGE_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)
_SHRT_MAX = 32767  # cv2.remap converts float maps to 16-bit fixed point: a mosaic must fit
_SMOOTH_TOL = 1e-3  # singular values of the smoothing operator kept down to this fraction
# two fill rows under each tile: a coordinate folded to H reads rows H and H + 1 (the second
# with weight 0, but 0 x NaN is NaN), so it must never reach the next tile's first row
_FILL_ROWS = 2
# Mosaics of up to 32767 rows (remap's limit) whose vertical source coordinates are multiples
# of 1/512 pixel: then adding a tile's row offset (below 2**15) is exact in float32 (24 bits), so
# a sample's output does not depend on the tile it lands on. Mosaics of 2**13 rows with a
# 1/2048 grid cost a fifth of the speed on MNIST-sized images (four times the remap calls); a
# 1/512-pixel grid moves a few percent of pixels by one level against OpenCV's own warpAffine.
_MOSAIC_ROWS = _SHRT_MAX
_V_STEPS = 512
MAX_SIDE = _SHRT_MAX - 1 - _FILL_ROWS  # largest height or width (a tile and its fill rows fit)
SCRATCH_KEEP = 1 << 25  # bytes: bigger scratch arrays (huge images) are not kept between pieces


class Field(NamedTuple):
    """An elastic displacement field in low-rank form, for N samples of H x W.

    ``dx[i] = rows @ zx[i] @ cols.T`` and ``dy[i] = rows @ zy[i] @ cols.T``, in pixels:
    rows (H, r) float32, cols (W, s) float32, zx and zy (N, r, s) float32.
    """

    rows: np.ndarray
    cols: np.ndarray
    zx: np.ndarray
    zy: np.ndarray

    def take(self, sl) -> Field:
        """The fields of samples ``sl`` (a slice or an index array)."""
        return Field(self.rows, self.cols, self.zx[sl], self.zy[sl])

    def combine(self, a: np.ndarray, b: np.ndarray, out: np.ndarray, product) -> None:
        """out[i] = a[i] * dx[i] + b[i] * dy[i] ((n,) float32 weights; out (n, H, W)):
        rows @ (a zx + b zy) @ cols.T, low rank, through ``product(rows, z, cols, out)``."""
        z = a[:, None, None] * self.zx + b[:, None, None] * self.zy  # (n, r, s)
        product(self.rows, z, self.cols, out)

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """The displacements as two (N, H, W) float32 arrays (for tests and inspection)."""
        return (
            np.einsum("hr,nrs,ws->nhw", self.rows, self.zx, self.cols),
            np.einsum("hr,nrs,ws->nhw", self.rows, self.zy, self.cols),
        )


def _centre(height: int, width: int) -> tuple[float, float]:
    return (width - 1) / 2.0, (height - 1) / 2.0


def affine_inverse(
    angle: np.ndarray,
    shear_x: np.ndarray,
    shear_y: np.ndarray,
    scale: np.ndarray,
    tx: np.ndarray,
    ty: np.ndarray,
    height: int,
    width: int,
) -> np.ndarray:
    """Inverse matrices (N, 3, 3) of affine maps about the image centre.

    The forward map shears (degrees; x then y), scales, rotates by ``angle`` degrees
    (counter-clockwise as displayed) and then translates by (tx, ty) pixels (sub-pixel allowed).
    """
    th = np.radians(np.asarray(angle, dtype=np.float64))
    cos, sin = np.cos(th), np.sin(th)
    kx = np.tan(np.radians(np.asarray(shear_x, dtype=np.float64)))
    ky = np.tan(np.radians(np.asarray(shear_y, dtype=np.float64)))
    s = np.asarray(scale, dtype=np.float64)
    # forward linear part L = R(angle) @ [[1, kx], [ky, 1]] * s, with y pointing down
    a = (cos + sin * ky) * s
    b = (cos * kx + sin) * s
    c = (-sin + cos * ky) * s
    d = (-sin * kx + cos) * s
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    cx, cy = _centre(height, width)
    px = cx + np.asarray(tx, dtype=np.float64)
    py = cy + np.asarray(ty, dtype=np.float64)
    out = np.zeros((th.shape[0], 3, 3))
    out[:, 0, 0], out[:, 0, 1] = ia, ib
    out[:, 1, 0], out[:, 1, 1] = ic, id_
    out[:, 0, 2] = cx - (ia * px + ib * py)
    out[:, 1, 2] = cy - (ic * px + id_ * py)
    out[:, 2, 2] = 1.0
    return out


def flip_inverse(flip_x: np.ndarray, flip_y: np.ndarray, height: int, width: int) -> np.ndarray:
    """Matrices (N, 3, 3) mirroring left-right where ``flip_x`` and top-bottom where ``flip_y``."""
    fx = np.asarray(flip_x, dtype=bool)
    fy = np.asarray(flip_y, dtype=bool)
    out = np.zeros((fx.shape[0], 3, 3))
    out[:, 0, 0] = np.where(fx, -1.0, 1.0)
    out[:, 0, 2] = np.where(fx, width - 1.0, 0.0)
    out[:, 1, 1] = np.where(fy, -1.0, 1.0)
    out[:, 1, 2] = np.where(fy, height - 1.0, 0.0)
    out[:, 2, 2] = 1.0
    return out


def perspective_inverse(offsets: np.ndarray, height: int, width: int) -> np.ndarray:
    """Inverse homographies (N, 3, 3) that move the image corners by ``offsets``.

    ``offsets`` is (N, 4, 2) in pixels, (dx, dy) for the corners top-left, top-right,
    bottom-right, bottom-left: the forward map sends corner k to corner k + offsets[:, k].
    """
    off = np.asarray(offsets, dtype=np.float64)
    n = off.shape[0]
    src = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], float)
    dst = src[None] + off  # where the source corners land in the output
    x, y = dst[..., 0], dst[..., 1]
    big_x = np.broadcast_to(src[:, 0], (n, 4))
    big_y = np.broadcast_to(src[:, 1], (n, 4))
    zero, one = np.zeros((n, 4)), np.ones((n, 4))
    # solve h (8 unknowns, h22 = 1) with H @ dst_k ~ src_k: two equations per corner
    rows_x = np.stack([x, y, one, zero, zero, zero, -x * big_x, -y * big_x], axis=-1)
    rows_y = np.stack([zero, zero, zero, x, y, one, -x * big_y, -y * big_y], axis=-1)
    system = np.concatenate([rows_x, rows_y], axis=1)
    rhs = np.concatenate([big_x, big_y], axis=1)
    h = np.linalg.solve(system, rhs[..., None])[..., 0]
    return np.concatenate([h, np.ones((n, 1))], axis=1).reshape(n, 3, 3)


@lru_cache(maxsize=64)
def smoothing_basis(size: int, sigma: float) -> np.ndarray:
    """(size, r) float32 factor B of Gaussian smoothing along one axis (reflect border).

    With K the smoothing matrix and K = U S V^T, ``B = (U S)[:, :r]`` keeps the singular values
    down to 1e-3 of the largest. Because V is orthogonal, ``K Z K'^T`` of white Gaussian noise Z
    has the same law as ``B Z' B'^T`` with Z' small white noise (r x r'): an exact smoothed field
    (up to the dropped 1e-3 tail) from a few numbers per sample.
    """
    radius = max(1, int(np.ceil(4.0 * sigma)))
    taps = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (taps / sigma) ** 2)
    weights /= weights.sum()
    k = np.zeros((size, size))
    for i in range(size):
        j = reflect_indices(i + taps, size)
        np.add.at(k[i], j, weights)
    u, s, _ = np.linalg.svd(k)
    r = max(1, int(np.count_nonzero(s >= _SMOOTH_TOL * s[0])))
    basis = (u[:, :r] * s[:r]).astype(np.float32)
    basis.setflags(write=False)
    return basis


def reflect_indices(index: np.ndarray, size: int) -> np.ndarray:
    """Integer positions mirrored into [0, size) without repeating the edge (reflect-101)."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    t = np.mod(index, period)
    return (size - 1) - np.abs(t - (size - 1))


def _fold(c: np.ndarray, size: int, border: str) -> None:
    """Bring sampling coordinates into the tile, in place, so that one remap over a mosaic of
    tiles treats every tile's border on its own (neighbouring tiles are never read)."""
    if border == "constant":
        # -1 and `size` are fill pixels (the mosaic's separator column or outside the mosaic)
        np.clip(c, -1.0, float(size), out=c)
    elif border == "edge":
        np.clip(c, 0.0, float(size - 1), out=c)
    elif size == 1:
        c[...] = 0.0
    else:
        # reflect-101 is piecewise linear with integer knots, so bilinear sampling at the
        # mirrored coordinate equals sampling the mirrored image
        last = float(size - 1)
        np.clip(c, -1e6, 1e6, out=c)
        np.mod(c, 2.0 * last, out=c)
        c -= last
        np.abs(c, out=c)
        np.subtract(last, c, out=c)


def _buffer(name: str, shape: tuple, dtype) -> np.ndarray:
    """A scratch array reused by this thread (big maps would page-fault on every piece).

    Arrays over ``SCRATCH_KEEP`` bytes are fresh each time: the pool's idle threads would
    otherwise hold hundreds of MB for the rest of the process after one batch of photos.
    """
    cache = _scratch.__dict__.setdefault("arrays", {})
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if size > SCRATCH_KEEP:
        return np.empty(shape, dtype)
    buf = cache.get(name)
    if buf is None or buf.size < size:
        buf = cache[name] = np.empty(max(size, 1), np.uint8)
    return buf[:size].view(dtype).reshape(shape)


def _stacked_product(rows: np.ndarray, z: np.ndarray, cols: np.ndarray, out: np.ndarray) -> None:
    """out[i] = rows @ z[i] @ cols.T, one small matrix product per sample (numpy loops over the
    stack): the same call for every sample, so the result cannot depend on the batch."""
    np.matmul(rows, np.matmul(z, cols.T), out=out)


def _maps(inverse: np.ndarray, field: Field | None, height: int, width: int,
          product=_stacked_product):
    """Source coordinates (u, v) for each output pixel, each (n, H, W) float32 (scratch).

    Every value is computed from its own sample's numbers only, so a sample's map does not
    depend on its neighbours in the batch.
    """
    n = inverse.shape[0]
    perspective = bool(np.any(inverse[:, 2, :2] != 0.0)) or bool(np.any(inverse[:, 2, 2] != 1.0))
    xs = np.arange(width, dtype=np.float64)
    ys = np.arange(height, dtype=np.float64)
    out = []
    for k in range(3 if perspective else 2):
        a, b, c = inverse[:, k, 0], inverse[:, k, 1], inverse[:, k, 2]
        along_x = (a[:, None] * xs[None, :] + c[:, None]).astype(np.float32)  # (n, W)
        along_y = (b[:, None] * ys[None, :]).astype(np.float32)  # (n, H)
        m = _buffer(f"map{k}", (n, height, width), np.float32)
        np.add(along_y[:, :, None], along_x[:, None, :], out=m)
        if field is not None:
            # a*dx + b*dy: a Field's low-rank products, or a large image's coarse field
            d = _buffer("disp", (n, height, width), np.float32)
            field.combine(a.astype(np.float32), b.astype(np.float32), d, product)
            m += d
        out.append(m)
    if perspective:
        den = out[2]
        # a homography's denominator stays positive inside sane warps; keep it off zero anyway
        np.copyto(den, np.float32(1e-6), where=np.abs(den) < 1e-6)
        np.divide(out[0], den, out=out[0])
        np.divide(out[1], den, out=out[1])
    return out[0], out[1]


def sample_maps(inverse: np.ndarray, field: Field | None, height: int, width: int,
                border: str, product=_stacked_product) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates (u, v), each (n, H, W) float32 scratch, folded into the image for
    ``border`` and with v on the 1/512-pixel grid (so a tile's row offset adds exactly);
    ``product(rows, z, cols, out)`` evaluates the elastic field's low-rank products."""
    u, v = _maps(inverse, field, height, width, product)
    _fold(u, width, border)
    _fold(v, height, border)
    v *= np.float32(_V_STEPS)
    np.rint(v, out=v)
    v *= np.float32(1.0 / _V_STEPS)
    return u, v


def max_tiles(height: int) -> int:
    """Most tiles of this height one remap call takes (a mosaic of at most _MOSAIC_ROWS rows,
    or one tile)."""
    return max(1, (_MOSAIC_ROWS - 2) // (height + _FILL_ROWS))


def warp(
    images: np.ndarray,
    inverse: np.ndarray,
    *,
    field: Field | None = None,
    interpolation: str = "bilinear",
    border: str = "constant",
    fill: float = 0,
    masks: np.ndarray | None = None,
    mask_fill: float = 0,
    slot: int = 0,
    out: np.ndarray | None = None,
    mask_out: np.ndarray | None = None,
):
    """Resample ``images`` (N, H, W) or (N, H, W, C) through ``inverse`` (N, 3, 3) and ``field``.

    Returns a new array of the same shape and dtype (written into ``out`` when given), or
    ``(images, masks)`` when ``masks`` (N, H, W[, C]) is given: masks follow the same geometry
    with nearest-neighbour sampling and ``mask_fill`` outside.

    The images are stacked as tiles of a mosaic, image i at tile ``slot + i`` (modulo the
    most tiles one remap takes); an image's output does not depend on its tile (nor on the
    other images): vertical source coordinates are rounded to 1/512 pixel, so adding a
    tile's offset to them is exact in float32.
    """
    import cv2

    if interpolation not in INTERPOLATIONS:
        raise OptionError(f"interpolation={interpolation!r} is not allowed: give one of "
                          f"{INTERPOLATIONS}")
    n, height, width = images.shape[:3]
    if out is None:
        out = np.empty(images.shape, images.dtype)
    if masks is not None and mask_out is None:
        mask_out = np.empty(masks.shape, masks.dtype)
    for name, a in (("out", out), ("mask_out", mask_out)):
        if a is not None and not a.flags.c_contiguous:
            raise OptionError(f"{name} must be a C-contiguous array (remap writes into it)")
    flag = cv2.INTER_NEAREST if interpolation == "nearest" else cv2.INTER_LINEAR
    cap = max_tiles(height)
    s = 0
    while s < n:
        first = (slot + s) % cap
        e = min(n, s + cap - first)
        u, v = sample_maps(inverse[s:e], None if field is None else field.take(slice(s, e)),
                           height, width, border)
        v += (np.arange(first, first + e - s, dtype=np.float32)
              * (height + _FILL_ROWS))[:, None, None]
        u2 = u.reshape(-1, width)
        v2 = v.reshape(-1, width)
        _remap_tiles(images[s:e], first, u2, v2, flag, fill, out[s:e], "src")
        if masks is not None:
            _remap_tiles(masks[s:e], first, u2, v2, cv2.INTER_NEAREST, mask_fill, mask_out[s:e],
                         "mask")
        s = e
    return out if masks is None else (out, mask_out)


def _remap_tiles(tiles, first, u2, v2, flag, fill, out, name) -> None:
    """One remap over a mosaic holding ``tiles`` (n, H, W[, C]) at tiles first.., fill rows
    under each tile (read by coordinates folded to -1 or H)."""
    import cv2

    n, height, width = tiles.shape[:3]
    extra = tiles.shape[3:]
    channels = extra[0] if extra else 1
    mosaic = _buffer(name, (first + n, height + _FILL_ROWS, width, *extra), tiles.dtype)
    mosaic[first:, :height] = tiles
    mosaic[first:, height:] = fill
    if first:
        mosaic[first - 1, height:] = fill
    flat = mosaic.reshape((first + n) * (height + _FILL_ROWS), width, *extra)
    target = out.reshape(n * height, width, *extra)
    border = (fill,) * 4
    if channels <= 4 and (extra == () or extra[0] > 1):
        cv2.remap(flat, u2, v2, flag, dst=target, borderMode=cv2.BORDER_CONSTANT,
                  borderValue=border)
        return
    for c in range(0, channels, 4):
        part = np.ascontiguousarray(flat[..., c:c + 4])
        got = cv2.remap(part, u2, v2, flag, borderMode=cv2.BORDER_CONSTANT, borderValue=border)
        target[..., c:c + 4] = got.reshape(n * height, width, -1)


_scratch = threading.local()
