"""Which resampling a batch gets, by image shape and dtype only, and the per-image kernels.

Small images go through :func:`.functional.warp` (one ``cv2.remap`` over a mosaic of many
images: per-call costs dominate there). From ``PER_IMAGE_PIXELS`` pixels on
(``ELASTIC_PER_IMAGE_PIXELS`` with an elastic field), each image gets
its own OpenCV call: ``cv2.warpAffine`` / ``cv2.warpPerspective`` for chains without an elastic
field (OpenCV computes the sampling positions block by block in cache, which no NumPy map can
match), ``cv2.remap`` over the image's own map otherwise (the mosaic's map, its field's
products computed in blocks small enough for one thread). The choice depends on the shape,
dtype and kinds of transform, never on timing, threads or the machine, so a sample's output
depends only on (seed, sample id, shape, dtype).

``ALGORITHM`` numbers the arithmetic: it is part of every Augmenter's ``repr``, which HDF5 and
Caffe outputs record and shard folders compare (a folder begun under another number is refused).
Bump it whenever any sample's output changes.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ..errors import OptionError
from . import functional as F

# 1: every image through the mosaic (sampling rows on a 1/512-pixel grid).
# 2: images of PER_IMAGE_PIXELS (elastic: ELASTIC_PER_IMAGE_PIXELS) pixels or more warped one
#    OpenCV call each (warpAffine /
#    warpPerspective for geometry without an elastic field: OpenCV's own sampling positions;
#    elastic fields' products in blocks that OpenBLAS runs on one thread).
ALGORITHM = 2

# From these sizes on, one call per image beats the mosaic (measured side by side on 2 cores,
# tests/bench/bench_augment_sizes.py): affine warps from 32 x 32 pixels (28 x 28 ties: MNIST
# keeps the mosaic), elastic ones from 144 x 144 (per-image maps and field products cost more
# below; above, the mosaic's whole products make OpenBLAS start threads that fight the pool's).
# Part of ALGORITHM: changing them changes outputs, so bump the number with them.
PER_IMAGE_PIXELS = 32 * 32
ELASTIC_PER_IMAGE_PIXELS = 144 * 144
_MAX_CHANNELS = 4  # OpenCV's warps take at most 4 channels; more go through the mosaic


def per_image(shape: tuple[int, ...], mask_shape: tuple[int, ...] | None = None, *,
              elastic: bool = False) -> bool:
    """True when images of ``shape`` (N, H, W[, C]) (with masks of ``mask_shape``) are warped
    one OpenCV call each rather than through the mosaic; ``elastic``: the chain has a field."""
    h, w = shape[1:3]
    if h * w < (ELASTIC_PER_IMAGE_PIXELS if elastic else PER_IMAGE_PIXELS):
        return False
    return all(s is None or len(s) < 4 or s[3] <= _MAX_CHANNELS for s in (shape, mask_shape))


def pick(shape: tuple[int, ...], mask_shape: tuple[int, ...] | None, *, elastic: bool,
         affine: bool):
    """The warp function for this batch: the mosaic's, or :func:`warp_each` (warpAffine only
    when every transform is known to be affine)."""
    if not per_image(shape, mask_shape, elastic=elastic):
        return F.warp
    return partial(warp_each, perspective=not affine)


def check_algorithm(algorithm: object) -> None:
    """``algorithm=`` given to an Augmenter must be this release's (or None)."""
    if algorithm is not None and algorithm != ALGORITHM:
        raise OptionError(f"algorithm={algorithm!r} is not available: this dlsets augments "
                          f"with algorithm {ALGORITHM} only (outputs recorded under another "
                          "number need the dlsets release that made them)")


_BORDERS = {"constant": "BORDER_CONSTANT", "reflect": "BORDER_REFLECT_101",
            "edge": "BORDER_REPLICATE"}


def warp_each(
    images: np.ndarray,
    inverse: np.ndarray,
    *,
    field: F.Field | None = None,
    perspective: bool = False,
    border: str = "constant",
    fill: float = 0,
    masks: np.ndarray | None = None,
    mask_fill: float = 0,
    out: np.ndarray,
    mask_out: np.ndarray | None = None,
) -> None:
    """Resample image i (and mask i) through ``inverse[i]`` (and ``field``) into ``out[i]``
    (``mask_out[i]``), one OpenCV call per image: bilinear for images, nearest for masks."""
    import cv2

    n, height, width = images.shape[:3]
    mode = getattr(cv2, _BORDERS[border])
    jobs = [(images, out, cv2.INTER_LINEAR, (fill,) * 4)]
    if masks is not None:
        jobs.append((masks, mask_out, cv2.INTER_NEAREST, (mask_fill,) * 4))
    for i in range(n):
        if field is None:
            m = inverse[i] if perspective else inverse[i, :2]
            call = cv2.warpPerspective if perspective else cv2.warpAffine
            for src, dst, flag, value in jobs:
                _into(dst[i], call(src[i], m, (width, height), dst=dst[i],
                                   flags=flag | cv2.WARP_INVERSE_MAP, borderMode=mode,
                                   borderValue=value))
            continue
        u, v = F.sample_maps(inverse[i:i + 1], field.take(slice(i, i + 1)), height, width,
                             border, product=_blocked_product)
        for src, dst, flag, value in jobs:
            _into(dst[i], cv2.remap(src[i], u[0], v[0], flag, dst=dst[i],
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=value))


def _into(dst: np.ndarray, got: np.ndarray) -> None:
    """OpenCV drops a trailing axis of 1 and then writes a new array, not ``dst``."""
    if not np.shares_memory(dst, got):
        dst[...] = got.reshape(dst.shape)


def _blocked_product(rows: np.ndarray, z: np.ndarray, cols: np.ndarray, out: np.ndarray) -> None:
    """out[i] = rows @ z[i] @ cols.T in products small enough that OpenBLAS never starts threads
    (it does above 2**18 multiply-adds): called from the pool threads, its threads spun against
    each other and against other load, making elastic warps 5-10x slower."""
    for i in range(len(z)):
        _single_threaded(rows, _single_threaded(z[i], cols.T), out[i])


_SINGLE_THREAD_MNK = 1 << 18  # OpenBLAS: SMP_THRESHOLD_MIN (65536) x GEMM_MULTITHREAD_THRESHOLD (4)


def _single_threaded(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """a @ b in square-ish output blocks, each product under OpenBLAS' threading threshold
    (blocks of a few rows would re-pack all of b for every call: 18x slower at 512 pixels)."""
    m, k = a.shape
    n = b.shape[1]
    if out is None:
        out = np.empty((m, n), np.result_type(a, b))
    side = max(1, int((_SINGLE_THREAD_MNK // max(1, k)) ** 0.5))
    for s in range(0, m, side):
        for t in range(0, n, side):
            out[s:s + side, t:t + side] = np.matmul(a[s:s + side], b[:, t:t + side])
    return out
