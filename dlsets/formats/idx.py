"""IDX files (MNIST and relatives), plain or gzip'd, every type code of the spec."""

from __future__ import annotations

import io
import math
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

import numpy as np

from ..errors import FormatError
from ..store import space
from .inflate import Inflater

# type code -> big-endian dtype, as the IDX spec lists them
TYPE_CODES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_BYTES = 1 << 40  # no IDX file of any dataset comes near a terabyte
TRAILING = 1 << 20  # bytes after the data that are counted for the error message


def read_idx(
    source: str | os.PathLike | bytes | BinaryIO, *, name: str | None = None
) -> np.ndarray:
    """Parse an IDX file (gzip'd or not) into an array of its shape, in native byte order.

    ``source`` is a path, the file's bytes, or a binary file object. Gzip input is
    decompressed once, as a stream, straight into the result. A file whose length disagrees
    with its header raises FormatError naming the file, the expected and the actual length;
    one whose header claims more than the file (plain) or the memory (gzip'd) can hold fails
    before anything is allocated.
    """
    with open_idx(source, name=name) as f:
        space.need_memory(f.nbytes, f"reading {f.label}")
        out = np.empty(f.shape, dtype=f.dtype)
        f.readinto(out)
        f.finish()
    if f.dtype.byteorder == ">":
        out = out.astype(f.dtype.newbyteorder("="))
    return out


@contextmanager
def open_idx(source: str | os.PathLike | bytes | BinaryIO, *, name: str | None = None
             ) -> Iterator[IdxFile]:
    """An :class:`IdxFile` whose header has been read and checked; its data is read next."""
    if isinstance(source, bytes | bytearray | memoryview):
        yield IdxFile(io.BytesIO(source), name or "IDX data", len(source))
    elif isinstance(source, str | os.PathLike):
        with open(source, "rb") as f:
            yield IdxFile(f, name or os.fspath(source), os.fstat(f.fileno()).st_size)
    else:
        yield IdxFile(source, name or str(getattr(source, "name", "IDX data")))


class IdxFile:
    """An open IDX file, plain or gzip'd, read in one forward pass: first the header, giving
    ``shape``, ``dtype`` (as stored: big-endian), ``header_bytes`` and ``nbytes`` (of the data),
    then the data (:meth:`chunks` or :meth:`readinto`), then :meth:`finish`, which checks that
    nothing follows (without counting more than a megabyte of what does)."""

    def __init__(self, f: BinaryIO, label: str, file_size: int | None = None) -> None:
        self.label = label
        self._got = 0
        self._in = Inflater(f, label, codecs=("gzip",))
        try:
            self._header(file_size)
        except FormatError as exc:
            raise exc if str(exc).startswith(label) else FormatError(f"{label}: {exc}") from None

    def _header(self, file_size: int | None) -> None:
        label = self.label
        magic = self._in.read(4)
        if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
            raise FormatError(
                f"{label}: not an IDX file (magic bytes {magic.hex() or 'missing'}; "
                "expected 00 00 <type> <dims>)"
            )
        code, ndim = magic[2], magic[3]
        if code not in TYPE_CODES:
            known = ", ".join(f"0x{c:02X}" for c in TYPE_CODES)
            raise FormatError(f"{label}: unknown IDX type code 0x{code:02X} (known: {known})")
        dims_raw = self._in.read(4 * ndim)
        self.header_bytes = 4 + 4 * ndim
        if len(dims_raw) < 4 * ndim:
            raise FormatError(
                f"{label}: header says {ndim} dimensions but the file ends after "
                f"{4 + len(dims_raw)} bytes; expected at least {self.header_bytes}"
            )
        self.code = code
        self.shape = struct.unpack(f">{ndim}I", dims_raw)
        self.dtype = TYPE_CODES[code]
        self.nbytes = math.prod(self.shape) * self.dtype.itemsize  # exact: no int64 overflow
        if self.nbytes > MAX_BYTES:
            raise FormatError(
                f"{label}: IDX header (type 0x{code:02X}, shape {self.shape}) claims "
                f"{self.nbytes:,} bytes of data, more than any IDX file holds "
                f"({MAX_BYTES:,}); the header is damaged"
            )
        if (file_size is not None and self._in.codec == "plain"
                and self.header_bytes + self.nbytes > file_size):
            raise FormatError(f"{self._length_error(file_size)}; the file is truncated or its "
                              "header damaged")

    def _length_error(self, total: int | None) -> FormatError:
        expected = self.header_bytes + self.nbytes
        actual = (f"it is {total} bytes" if total is not None else
                  f"it goes on past {expected + TRAILING} bytes (not read further)")
        return FormatError(
            f"{self.label}: IDX header (type 0x{self.code:02X}, shape {self.shape}) says the "
            f"file is {expected} bytes long, but {actual}"
        )

    def chunks(self) -> Iterator[bytes]:
        """The data, in pieces of at most a megabyte; FormatError if the file ends early."""
        for piece in self._in.chunks(self.nbytes - self._got):
            self._got += len(piece)
            yield piece
        if self._got < self.nbytes:
            raise self._length_error(self.header_bytes + self._got)

    def readinto(self, out: np.ndarray) -> None:
        """Fill the array ``out`` (of :attr:`nbytes`) with the data."""
        got = self._in.readinto(memoryview(out.reshape(-1).view(np.uint8)))
        self._got += got
        if self._got < self.nbytes:
            raise self._length_error(self.header_bytes + self._got)

    def finish(self) -> None:
        """FormatError when data follows what the header declares."""
        extra = self._in.count_rest(TRAILING)
        if extra != 0:
            raise self._length_error(None if extra is None else
                                     self.header_bytes + self.nbytes + extra)
