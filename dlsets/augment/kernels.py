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
# Per-image warps take their matrices for up to this many samples at once, drawn in the calling
# thread (~0.1 us a sample, ~3 MB of temporaries): drawn per piece in the workers they cost
# 15-20% of the rate at 128-224 pixels on 2 cores (small NumPy calls between the warps).
GEOMETRY_SAMPLES = 8192
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


def groups(units: list[tuple[int, int]], samples: int) -> list[list[tuple[int, int]]]:
    """Consecutive units in groups of at most ``samples`` samples (at least one unit each);
    all in one group when ``samples`` is 0."""
    if not samples:
        return [units]
    found: list[list[tuple[int, int]]] = []
    for unit in units:
        if found and unit[1] - found[-1][0][0] <= samples:
            found[-1].append(unit)
        else:
            found.append([unit])
    return found


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
    height, width = images.shape[1:3]
    mode = getattr(cv2, _BORDERS[border])
    call = cv2.warpPerspective if perspective else cv2.warpAffine
    m = inverse if perspective else inverse[:, :2]
    size = (width, height)
    linear = (cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, mode, (fill,) * 4)
    # one image (and mask) per OpenCV call: the loop's own cost is per image, so it passes
    # views from zip and positional arguments (keywords cost ~0.3 us a call at 64 x 64)
    images, out = _squeezed(images), _squeezed(out)
    if not len(images):
        return
    if masks is None:
        if _in_place(call, images, m, size, out, linear):
            for src, mat, dst in zip(images[1:], m[1:], out[1:], strict=True):
                call(src, mat, size, dst, *linear)
        return
    masks, mask_out = _squeezed(masks), _squeezed(mask_out)
    nearest = (cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, mode, (mask_fill,) * 4)
    image_ok = _in_place(call, images, m, size, out, linear)
    mask_ok = _in_place(call, masks, m, size, mask_out, nearest)
    if image_ok and mask_ok:
        # image i then mask i: the mask's source rows are still in cache
        for src, msrc, mat, dst, mdst in zip(images[1:], masks[1:], m[1:], out[1:],
                                             mask_out[1:], strict=True):
            call(src, mat, size, dst, *linear)
            call(msrc, mat, size, mdst, *nearest)
        return
    for ok, src, dst, how in ((image_ok, images, out, linear),
                              (mask_ok, masks, mask_out, nearest)):
        if ok:
            for i in range(1, len(src)):
                call(src[i], m[i], size, dst[i], *how)


def _squeezed(a: np.ndarray) -> np.ndarray:
    """(N, H, W, 1) as an (N, H, W) view: OpenCV drops a trailing axis of 1 and would then
    write a new array rather than the ``dst`` given."""
    return a[..., 0] if a.ndim == 4 and a.shape[3] == 1 else a


def _in_place(call, src: np.ndarray, m: np.ndarray, size: tuple[int, int], dst: np.ndarray,
              how: tuple) -> bool:
    """Warp image 0 into ``dst[0]``; True when OpenCV wrote it in place, so the other images
    (same shape, dtype and strides) will be too. Otherwise warp them all, copying each result
    into ``dst``, and return False."""
    got = call(src[0], m[0], size, dst[0], *how)
    if np.shares_memory(dst[0], got):
        return True
    for i in range(len(src)):
        dst[i] = call(src[i], m[i], size, None, *how).reshape(dst.shape[1:])
    return False
