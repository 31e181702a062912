"""keras' ``mnist.npz``: x_train, y_train, x_test, y_test in one uncompressed npz."""

from __future__ import annotations

import os
import zipfile
from typing import BinaryIO

import numpy as np

from ..errors import FormatError

KEYS = ("x_train", "y_train", "x_test", "y_test")


def read_mnist_npz(
    source: str | os.PathLike | BinaryIO, *, name: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train (N, 28, 28) uint8, y_train (N,) uint8, x_test, y_test)`` from keras' file.

    Never unpickles (``allow_pickle=False``); missing keys or odd shapes raise FormatError.
    """
    label = name or (os.fspath(source) if isinstance(source, str | os.PathLike) else "mnist.npz")
    try:
        with np.load(source, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            if missing:
                raise FormatError(
                    f"{label}: missing arrays {missing} (has {z.files}); expected keras' mnist.npz"
                )
            arrays = [z[k] for k in KEYS]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise FormatError(f"{label}: not a readable npz file ({exc})") from None
    x_train, y_train, x_test, y_test = arrays
    for xk, x, yk, y in (("x_train", x_train, "y_train", y_train),
                         ("x_test", x_test, "y_test", y_test)):
        if x.ndim != 3 or y.shape != (len(x),):
            raise FormatError(f"{label}: {xk} {x.shape} and {yk} {y.shape} do not fit "
                              "(expected (N, H, W) images and (N,) labels)")
        if x.dtype != np.uint8:
            raise FormatError(f"{label}: {xk} is {x.dtype}, expected uint8")
        if y.size and (y.min() < 0 or y.max() > 255):
            raise FormatError(f"{label}: {yk} holds values outside 0..255")
    return x_train, y_train.astype(np.uint8), x_test, y_test.astype(np.uint8)
