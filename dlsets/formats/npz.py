"""keras' ``mnist.npz``: x_train, y_train, x_test, y_test in one uncompressed npz."""

from __future__ import annotations

import math
import os
import zipfile
from typing import BinaryIO

import numpy as np

from ..errors import FormatError
from ..store import space
from .limits import Limits

KEYS = ("x_train", "y_train", "x_test", "y_test")


def _header(zf: zipfile.ZipFile, key: str, label: str):
    """(shape, dtype) of member ``key`` from its .npy header alone."""
    with zf.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise FormatError(f"{label}: {key} has .npy format version {version}")
    return tuple(shape), dtype


def read_mnist_npz(
    source: str | os.PathLike | BinaryIO, *, name: str | None = None,
    limits: Limits | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train (N, 28, 28) uint8, y_train (N,) uint8, x_test, y_test)`` from keras' file.

    Never unpickles (``allow_pickle=False``); missing keys or odd shapes raise FormatError.
    Each array's header is checked against ``limits`` (image shape, at most ``max_images``)
    and the memory before any of its data is read.
    """
    label = name or (os.fspath(source) if isinstance(source, str | os.PathLike) else "mnist.npz")
    try:
        with zipfile.ZipFile(source) as zf:
            present = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
            missing = [k for k in KEYS if k not in present]
            if missing:
                raise FormatError(
                    f"{label}: missing arrays {missing} (has {present}); expected keras' mnist.npz"
                )
            headers = {k: _header(zf, k, label) for k in KEYS}
            _check_headers(headers, label, limits)
            space.need_memory(sum(math.prod(sh) * dt.itemsize for sh, dt in headers.values()),
                              f"reading {label}")
            arrays = []
            for k in KEYS:
                with zf.open(f"{k}.npy") as f:
                    arrays.append(np.lib.format.read_array(f, allow_pickle=False))
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise FormatError(f"{label}: not a readable npz file ({exc})") from None
    x_train, y_train, x_test, y_test = arrays
    for yk, y in (("y_train", y_train), ("y_test", y_test)):
        if y.size and (y.min() < 0 or y.max() > 255):
            raise FormatError(f"{label}: {yk} holds values outside 0..255")
    return x_train, y_train.astype(np.uint8), x_test, y_test.astype(np.uint8)


def _check_headers(headers: dict, label: str, limits: Limits | None) -> None:
    for xk, yk in (("x_train", "y_train"), ("x_test", "y_test")):
        (xs, xd), (ys, yd) = headers[xk], headers[yk]
        if len(xs) != 3 or ys != (xs[0],):
            raise FormatError(f"{label}: {xk} {xs} and {yk} {ys} do not fit "
                              "(expected (N, H, W) images and (N,) labels)")
        if xd != np.uint8:
            raise FormatError(f"{label}: {xk} is {xd}, expected uint8")
        if yd.hasobject or yd.kind not in "iub":
            raise FormatError(f"{label}: {yk} is {yd}, expected integer labels")
        if limits is not None:
            limits.check_shape(xs, f"{label}:{xk}")
