"""Checks of the batches the augmenter takes, and their channel layout: (N, H, W[, C]) inside,
(N, C, H, W) in and out for ``channels="first"``.

:mod:`.transforms` re-exports every name here (their first home).
"""

from __future__ import annotations

import numpy as np

from ..errors import OptionError
from . import functional as F


def _check_batch(name: str, a: object, dtypes: tuple | None) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2 and name == "images" and min(a.shape) > 0:
        raise OptionError(f"images has shape {a.shape}, one (H, W) image, not a batch: use "
                          "aug.image(img) for one image (or img[None], a batch of one)")
    if a.ndim not in (3, 4) or 0 in a.shape[1:]:
        raise OptionError(f"{name} has shape {a.shape}: expected (N, H, W) or (N, H, W, C)")
    if max(a.shape[1:3]) > F.MAX_SIDE:
        raise OptionError(f"{name} has shape {a.shape}: height and width must be at most "
                          f"{F.MAX_SIDE} pixels (OpenCV's remap limit); cut the images into tiles")
    if dtypes is not None and a.dtype not in dtypes:
        allowed = ", ".join(np.dtype(d).name for d in dtypes)
        raise OptionError(f"{name} has dtype {a.dtype}: expected one of {allowed}")
    return a


CHANNELS = ("last", "first")
CHANNEL_COUNTS = (1, 3, 4)  # channel counts an image may have (grey, RGB, RGBA)


def channels_last(name: str, a: np.ndarray, channels: str | None) -> np.ndarray:
    """``a`` as (N, H, W[, C]): a view of an (N, C, H, W) batch for ``channels="first"``, ``a``
    itself otherwise. ``channels=None`` means "last", but refuses a 4-D batch that looks
    channels-first (shape[1] in 1, 3, 4 and shape[-1] not), which would be augmented as garbage
    of the right shape."""
    if channels is not None and (not isinstance(channels, str) or channels not in CHANNELS):
        raise OptionError(f"channels={channels!r} is not allowed: give 'last' for (N, H, W[, C]), "
                          "'first' for (N, C, H, W), or None (last, refusing batches that look "
                          "channels-first)")
    if a.ndim != 4:
        return a
    if channels == "first":
        return a.transpose(0, 2, 3, 1)
    if (channels is None and a.shape[1] in CHANNEL_COUNTS
            and a.shape[-1] not in CHANNEL_COUNTS):
        raise OptionError(f"{name} has shape {a.shape}, which looks channels-first (N, C, H, W): "
                          "pass channels='first' (or channels='last' if it really is (N, H, W, C) "
                          f"with {a.shape[-1]} channels)")
    return a


def channels_back(a: np.ndarray, channels: str | None) -> np.ndarray:
    """A C-contiguous (N, C, H, W) batch from an (N, H, W, C) one for ``channels="first"``
    (``a`` itself otherwise, and when it already is)."""
    if channels == "first" and a.ndim == 4:
        return np.ascontiguousarray(a.transpose(0, 3, 1, 2))
    return a


def _check_fill(name: str, value: float, dtype: np.dtype) -> None:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if float(value) != int(value) or not info.min <= value <= info.max:
            raise OptionError(f"{name}={value!r} does not fit {dtype} data: give an integer in "
                              f"[{info.min}, {info.max}]")
