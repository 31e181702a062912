"""SVHN cropped digits: MATLAB v5 ``.mat`` files holding ``X`` (32, 32, 3, N) uint8 and ``y``
(N, 1), digits 1..10 where 10 means 0. Read with ``scipy.io`` (the ``scipy`` extra)."""

from __future__ import annotations

import os

import numpy as np

from ..errors import FormatError, MissingDependencyError

IMAGE_SHAPE = (32, 32, 3)
DEFLATE_MAX_RATIO = 1032  # a compressed MATLAB variable inflates at most this much


def _scipy_io():
    try:
        import scipy.io
    except ImportError:
        raise MissingDependencyError(
            "reading SVHN's MATLAB files needs scipy, which is not installed: "
            "pip install 'dlsets[scipy]'"
        ) from None
    return scipy.io


def read_svhn_mat(path: str | os.PathLike, *, name: str | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 32, 32, 3) uint8, labels (N,) uint8 in 0..9)`` from one SVHN ``.mat`` file.

    The variables' headers are read first (``whosmat``): X must be uint8 (32, 32, 3, N), y must
    hold N values, and N no more than the file's size allows, before anything is allocated.
    """
    sio = _scipy_io()
    label = name or os.fspath(path)
    size = os.path.getsize(path)
    try:
        heads = {n: (tuple(shape), cls) for n, shape, cls in sio.whosmat(os.fspath(path))}
    except NotImplementedError:
        raise FormatError(f"{label}: a MATLAB v7.3 (HDF5) file; SVHN ships v5 files, fetch "
                          "it again") from None
    except MemoryError:
        raise
    except Exception as exc:  # scipy raises many types for a damaged file
        raise FormatError(f"{label}: not a readable MATLAB file ({exc})") from None
    if "X" not in heads or "y" not in heads:
        raise FormatError(f"{label}: needs variables X and y, has {sorted(heads)}")
    (xshape, xcls), (yshape, _) = heads["X"], heads["y"]
    if xcls != "uint8" or len(xshape) != 4 or xshape[:3] != IMAGE_SHAPE:
        raise FormatError(f"{label}: X is {xcls} {xshape}, expected uint8 (32, 32, 3, N)")
    n = xshape[3]
    if n * int(np.prod(IMAGE_SHAPE)) > size * DEFLATE_MAX_RATIO:
        raise FormatError(f"{label}: X claims {n:,} images, more than a {size:,}-byte file can "
                          "hold; the file is damaged")
    if sorted(yshape) != sorted((n, 1)):
        raise FormatError(f"{label}: y has shape {yshape}, expected ({n}, 1) for {n} images")
    try:
        m = sio.loadmat(os.fspath(path), variable_names=["X", "y"])
    except MemoryError:
        raise
    except Exception as exc:
        raise FormatError(f"{label}: cannot be read ({exc}); fetch it again") from None
    x, y = np.asarray(m.pop("X")), np.asarray(m.pop("y")).reshape(-1)
    if x.dtype != np.uint8 or x.shape != (*IMAGE_SHAPE, n) or len(y) != n:
        raise FormatError(f"{label}: X {x.dtype} {x.shape} and y {y.shape} differ from their "
                          "headers")
    if y.size and (not np.all(np.isfinite(y)) or np.any(y != np.round(y))
                   or y.min() < 1 or y.max() > 10):
        raise FormatError(f"{label}: y holds values outside the digits 1..10")
    # X(row, col, c, n) column-major: x.T is a C-ordered (N, 3, col, row) view; copied a plane at
    # a time (2.5x faster than one 4-D transpose copy).
    planes = x.T
    images = np.empty((n, *IMAGE_SHAPE), np.uint8)
    for c in range(3):
        images[..., c] = planes[:, c].transpose(0, 2, 1)
    del x, planes
    return images, (y.astype(np.int64) % 10).astype(np.uint8)
