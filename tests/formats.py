"""Writers for the datasets' real file formats, used to build small test fixtures."""

from __future__ import annotations

import gzip
import struct

import numpy as np

_IDX_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(">i2"): 0x0B,
    np.dtype(">i4"): 0x0C,
    np.dtype(">f4"): 0x0D,
    np.dtype(">f8"): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """An uncompressed IDX file holding ``array`` (big-endian, as the spec says)."""
    a = np.asarray(array)
    if a.dtype.itemsize > 1:
        a = a.astype(a.dtype.newbyteorder(">"))
    code = _IDX_CODES[a.dtype]
    header = struct.pack(">BBBB", 0, 0, code, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.tobytes()


def idx_gz_bytes(array: np.ndarray) -> bytes:
    """A gzip'd IDX file, as MNIST and its relatives ship."""
    return gzip.compress(idx_bytes(array), compresslevel=6, mtime=0)
