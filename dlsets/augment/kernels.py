"""Which resampling a batch gets, by image shape and dtype only, and the per-image kernels.

Small images go through :func:`.functional.warp` (one ``cv2.remap`` over a mosaic of many
images: per-call costs dominate there). From ``PER_IMAGE_PIXELS`` pixels on
(``ELASTIC_PER_IMAGE_PIXELS`` with an elastic field), each image gets
its own OpenCV call: ``cv2.warpAffine`` / ``cv2.warpPerspective`` for chains without an elastic
field (OpenCV computes the sampling positions block by block in cache, which no NumPy map can
match), ``cv2.remap`` over the image's own map otherwise (:mod:`.elastic`: the field drawn on a
grid of nodes and upsampled). The choice depends on the shape, dtype and kinds of transform,
never on timing, threads or the machine, so a sample's output depends only on (seed, sample
id, shape, dtype).

``ALGORITHM`` numbers the arithmetic: it is part of every Augmenter's ``repr``, which HDF5 and
Caffe outputs record and shard folders compare (a folder begun under another number is refused).
Bump it whenever any sample's output changes (before a release: 2 is not released yet).
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ..errors import OptionError
from . import elastic as coarse
from . import functional as F

# 1: every image through the mosaic (sampling rows on a 1/512-pixel grid).
# 2: images of PER_IMAGE_PIXELS (elastic: ELASTIC_PER_IMAGE_PIXELS) pixels or more warped one
#    OpenCV call each (warpAffine / warpPerspective for geometry without an elastic field:
#    OpenCV's own sampling positions; elastic fields drawn on a grid of 2 nodes per sigma,
#    upsampled bilinearly, then remap).
ALGORITHM = 2

# From these sizes on, one call per image beats the mosaic (measured side by side on 2 cores,
# tests/bench/bench_augment_sizes.py and docs/benchmarks.md): affine warps from 32 x 32 pixels
# (28 x 28 ties: MNIST keeps the mosaic), elastic ones from 128 x 128 (the grid field and its
# per-image remap: 0.6-0.9x the mosaic's exact low-rank field at 96 and 112, 1.05-1.2x at 128,
# 2x at 160, where the mosaic's products make OpenBLAS start threads that fight the pool's).
# Part of ALGORITHM: changing them changes outputs.
PER_IMAGE_PIXELS = 32 * 32
ELASTIC_PER_IMAGE_PIXELS = 128 * 128
_MAX_CHANNELS = 4  # OpenCV's warps take at most 4 channels; more go through the mosaic


def per_image(shape: tuple[int, ...], mask_shape: tuple[int, ...] | None = None, *,
              elastic: bool = False) -> bool:
    """True when images of ``shape`` (N, H, W[, C]) (with masks of ``mask_shape``) are warped
    one OpenCV call each rather than through the mosaic; ``elastic``: the chain has a field."""
    h, w = shape[1:3]
    if h * w < (ELASTIC_PER_IMAGE_PIXELS if elastic else PER_IMAGE_PIXELS):
        return False
    return all(s is None or len(s) < 4 or s[3] <= _MAX_CHANNELS for s in (shape, mask_shape))


# The exact field's basis is an SVD of a side x side matrix: 0.1 s at 512, 34 s at 5000 (a
# 3 x 5000 strip, mosaic-sized by its pixels); longer sides get the grid field too.
EXACT_FIELD_MAX_SIDE = 512


def coarse_field(height: int, width: int) -> bool:
    """True when elastic fields of H x W images are drawn on a grid (:mod:`.elastic`): from the
    size on which they are warped one image per call, or a side over EXACT_FIELD_MAX_SIDE."""
    return (height * width >= ELASTIC_PER_IMAGE_PIXELS
            or max(height, width) > EXACT_FIELD_MAX_SIDE)


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
    field: coarse.CoarseField | None = None,
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

    if field is not None:  # large images' fields are coarse (coarse_field)
        coarse.remap_each(images, inverse, field, border=border, fill=fill, masks=masks,
                           mask_fill=mask_fill, out=out, mask_out=mask_out)
        return
    n, height, width = images.shape[:3]
    mode = getattr(cv2, _BORDERS[border])
    jobs = [(images, out, cv2.INTER_LINEAR, (fill,) * 4)]
    if masks is not None:
        jobs.append((masks, mask_out, cv2.INTER_NEAREST, (mask_fill,) * 4))
    m = inverse if perspective else inverse[:, :2]
    call = cv2.warpPerspective if perspective else cv2.warpAffine
    for i in range(n):
        for src, dst, flag, value in jobs:
            _into(dst[i], call(src[i], m[i], (width, height), dst=dst[i],
                               flags=flag | cv2.WARP_INVERSE_MAP, borderMode=mode,
                               borderValue=value))


def _into(dst: np.ndarray, got: np.ndarray) -> None:
    """OpenCV drops a trailing axis of 1 and then writes a new array, not ``dst``."""
    if not np.shares_memory(dst, got):
        dst[...] = got.reshape(dst.shape)
