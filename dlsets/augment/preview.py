"""Preview grids: each row an original image followed by augmented copies of it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import OptionError
from ..store import cache, space, stamps

SEPARATOR = 128  # mid grey stands out on both black-background digits and photos
PNG_MAX_SIDE = 2**31 - 1  # the PNG format's limit on width and height


def grid_size(n: int, copies: int, image_shape, gap: int = 1, scale: int = 1
              ) -> tuple[int, int, int]:
    """(height, width, bytes) of the PNG that :func:`preview_grid` and :func:`save_png` make for
    ``n`` rows of ``copies`` copies of images of ``image_shape`` (H, W[, C]), scaled."""
    h, w = int(image_shape[0]), int(image_shape[1])
    channels = int(image_shape[2]) if len(image_shape) > 2 else 1
    rows = n * h + (n - 1) * gap
    cols = (copies + 1) * w + (copies - 1) * gap + 2 * gap + 1
    return rows * scale, cols * scale, rows * cols * channels * scale * scale


DEFAULT_WIDTH = 2000  # pixels a preview is at most wide unless a scale is asked for
DEFAULT_SCALE = 4  # tiny images (MNIST, CIFAR) are enlarged up to this


def default_scale(width: int) -> int:
    """The scale for a grid ``width`` pixels wide when none is asked for: at most
    DEFAULT_SCALE, and the result at most DEFAULT_WIDTH pixels wide where scale 1 is."""
    return max(1, min(DEFAULT_SCALE, DEFAULT_WIDTH // max(1, int(width))))


# How messages name the numbers a grid is made of: the library's keywords; the command line
# passes its own flags.
NAMES = {"rows": "n=", "copies": "copies=", "scale": "scale="}


def fewer(names: dict | None = None, scale: bool = True) -> str:
    """What to ask for when a grid is too large, naming the options as the caller knows them."""
    names = names or NAMES
    ask = f"ask for fewer copies ({names['copies']}) or rows ({names['rows']})"
    return ask + (f", or a smaller scale ({names['scale']})" if scale else "")


def check_grid(n: int, copies: int, image_shape, gap: int = 1, scale: int = 1, *,
               names: dict | None = None) -> None:
    """OptionError when the grid cannot be a PNG; SpaceError when it cannot fit in memory.
    ``names``: how messages name rows, copies and scale (default :data:`NAMES`)."""
    height, width, nbytes = grid_size(n, copies, image_shape, gap, scale)
    if max(height, width) > PNG_MAX_SIDE:
        raise OptionError(
            f"{n} rows of {copies} copies at scale {scale} make a {width:,} x {height:,} pixel "
            f"grid; a PNG is at most {PNG_MAX_SIDE:,} pixels wide and high: {fewer(names)}"
        )
    cells = n * (copies + 1) * int(np.prod(image_shape))
    # the copies (input and output of the augmenter), the grid, and its scaled copy for PNG
    space.need_memory(3 * cells + (2 * nbytes if scale > 1 else nbytes),
                      f"a preview grid of {width:,} x {height:,} pixels", fewer(names))


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return (a >> 8).astype(np.uint8)
    a = a.astype(np.float64)
    if a.size and float(np.nanmax(a)) <= 1.0:  # float images in [0, 1]
        a = a * 255.0
    return np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8)


def preview_grid(
    images: np.ndarray,
    augmenter: object,
    *,
    n: int = 8,
    copies: int = 7,
    seed: int = 0,
    gap: int = 1,
    channels: str | None = None,
    masks: np.ndarray | None = None,
) -> np.ndarray:
    """A uint8 grid (rows, cols) or (rows, cols, C): row i is ``images[i]``, a wider separator,
    then ``copies`` augmented versions of it, for the first ``n`` images (N, H, W[, C]), or
    (N, C, H, W) with ``channels="first"`` (the grid is channels-last, as PNG wants; ``None``
    refuses images that look channels-first, as :class:`Augmenter` does).

    ``augmenter`` is a dlsets Augmenter or an albumentations pipeline (seeded from ``seed``).
    Float images are taken as [0, 1] when their maximum is at most 1, else as [0, 255].
    With ``masks`` (N, H, W) class maps, each image row is followed by a row of its masks,
    moved with the images, their values spread over black..white so the classes can be told
    apart (the grid then has 2n rows).
    """
    from .transforms import channels_last

    images = np.asarray(images)
    for name, value, low in (("n", n, 1), ("copies", copies, 1), ("gap", gap, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise OptionError(f"{name}={value!r} is not allowed: give an integer >= {low}")
    if images.ndim not in (3, 4):
        raise OptionError(f"images has shape {images.shape}: expected (N, H, W) or (N, H, W, C)")
    images = channels_last("images", images, channels)
    if n > len(images):
        raise OptionError(f"n={n} rows asked for but only {len(images)} images given")
    if images.ndim == 4 and images.shape[3] not in (1, 3, 4):
        raise OptionError(f"images have {images.shape[3]} channels: a PNG grid needs 1, 3 or 4")
    if masks is not None:
        masks = np.asarray(masks)
        if masks.ndim != 3 or masks.shape[:3] != images.shape[:3]:
            raise OptionError(f"masks have shape {masks.shape}: expected {images.shape[:3]}, "
                              "one (H, W) class map per image")
    check_grid(n if masks is None else 2 * n, copies, images.shape[1:], gap)
    return grid_of(preview_cells(images, augmenter, n=n, copies=copies, seed=seed, masks=masks),
                   gap=gap)


def grid_of(cells: np.ndarray, *, gap: int = 1) -> np.ndarray:
    """The preview grid of uint8 ``cells`` (rows, copies + 1, H, W[, C]) from
    :func:`preview_cells`."""
    n, copies = cells.shape[0], cells.shape[1] - 1
    h, w = cells.shape[2:4]
    extra = cells.shape[4:]
    first = 2 * gap + 1  # wider line between the original and its copies
    rows = n * h + (n - 1) * gap
    cols = (copies + 1) * w + (copies - 1) * gap + first
    grid = np.full((rows, cols, *extra), SEPARATOR, np.uint8)
    for i in range(n):
        top = i * (h + gap)
        for j in range(copies + 1):
            left = 0 if j == 0 else w + first + (j - 1) * (w + gap)
            grid[top:top + h, left:left + w] = cells[i, j]
    return grid


def preview_cells(images: np.ndarray, augmenter: object, *, n: int, copies: int, seed: int = 0,
                  masks: np.ndarray | None = None) -> np.ndarray:
    """uint8 (n, copies + 1, H, W[, C]): for each of the first ``n`` channels-last ``images``
    the original, then its ``copies`` augmented versions (copy j of image i is sample
    ``i * copies + j`` of the augmenter's stream); a single channel is dropped. With ``masks``
    (N, H, W), each image row is followed by its masks' row (2n rows), values spread over
    black..white."""
    from .albu import as_batch_augmenter

    aug = as_batch_augmenter(augmenter, seed)
    originals = images[:n]
    if masks is None:
        copied = aug(np.repeat(originals, copies, axis=0), start=0, channels="last")
    else:
        copied, mcopied = aug(np.repeat(originals, copies, axis=0),
                              masks=np.repeat(masks[:n], copies, axis=0), start=0,
                              channels="last")
    cells = np.concatenate(
        [originals[:, None], copied.reshape(n, copies, *images.shape[1:])], axis=1)
    cells = _to_uint8(cells)
    if masks is not None:
        mcells = np.concatenate(
            [masks[:n, None], mcopied.reshape(n, copies, *masks.shape[1:])], axis=1)
        top = max(1, int(mcells.max()))
        mcells = (mcells.astype(np.int64) * 255 // top).astype(np.uint8)
        if cells.ndim == 5:
            mcells = np.repeat(mcells[..., None], cells.shape[4], axis=4)
            if cells.shape[4] == 4:
                mcells[..., 3] = 255  # opaque
        # an image row, then its masks' row
        cells = np.stack([cells, mcells], axis=1).reshape(2 * n, *cells.shape[1:])
    if cells.ndim == 5 and cells.shape[4] == 1:
        cells = cells[..., 0]
    return cells


def save_png(grid: np.ndarray, path: str | os.PathLike, *, scale: int = 1,
             overwrite: bool = False) -> Path:
    """Write a uint8 image (H, W), (H, W, 3) or (H, W, 4) as PNG, atomically; ``scale`` enlarges
    it by pixel repetition. An existing PNG that dlsets did not write is refused unless
    ``overwrite`` (see :mod:`dlsets.store.stamps`). Returns the path."""
    from PIL import Image

    grid = np.asarray(grid)
    if grid.dtype != np.uint8 or not (grid.ndim == 2 or (grid.ndim == 3 and grid.shape[2] in (3,
                                                                                        4))):
        raise OptionError(f"grid of shape {grid.shape} and dtype {grid.dtype} is not a uint8 "
                          "image (H, W), (H, W, 3) or (H, W, 4)")
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise OptionError(f"scale={scale!r} is not allowed: give an integer >= 1")
    scale = int(scale)
    height, width = grid.shape[0] * scale, grid.shape[1] * scale
    if max(height, width) > PNG_MAX_SIDE:
        raise OptionError(f"scale={scale} makes a {width:,} x {height:,} pixel image; a PNG is "
                          f"at most {PNG_MAX_SIDE:,} pixels wide and high")
    nbytes = grid.nbytes * scale * scale
    if scale > 1:
        space.need_memory(2 * nbytes, f"a {width:,} x {height:,} pixel PNG", "use a smaller scale")
    path = Path(path)
    cache.check_outside(path, f"writing {path.name}")
    stamps.check_replace(path, overwrite, f"writing {path.name}")
    with space.output(path, nbytes + 4096, f"writing {path.name}") as tmp:
        if scale > 1:
            grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
        Image.fromarray(grid).save(tmp, format="PNG", pnginfo=stamps.png_stamp())
    return path
