"""IDX files (MNIST and relatives), plain or gzip'd, every type code of the spec."""

from __future__ import annotations

import os
import struct
import zlib
from typing import BinaryIO

import numpy as np

from ..errors import FormatError

# type code -> big-endian dtype, as the IDX spec lists them
TYPE_CODES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CHUNK = 1 << 20


def read_idx(
    source: str | os.PathLike | bytes | BinaryIO, *, name: str | None = None
) -> np.ndarray:
    """Parse an IDX file (gzip'd or not) into an array of its shape, in native byte order.

    ``source`` is a path, the file's bytes, or a binary file object. Gzip input is
    decompressed once, as a stream, straight into the result. A file whose length disagrees
    with its header raises FormatError naming the file, the expected and the actual length.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        label = name or "IDX data"
        return _parse(_Reader(memoryview(source)), label)
    if isinstance(source, str | os.PathLike):
        label = name or os.fspath(source)
        with open(source, "rb") as f:
            return _parse(_Reader(f), label)
    return _parse(_Reader(source), name or getattr(source, "name", "IDX data"))


class _Reader:
    """Reads a byte stream that may be gzip'd, decompressing it in one pass."""

    def __init__(self, src):
        self._mem = src if isinstance(src, memoryview) else None
        self._file = None if self._mem is not None else src
        self._pos = 0
        self._pending = b""  # decompressed bytes not handed out yet
        self._dec = None
        self._carry = b""  # compressed bytes read while sniffing the format
        head = self._raw(2)
        if head == b"\x1f\x8b":
            self._dec = zlib.decompressobj(wbits=31)
            self._carry = head
        else:
            self._pending = head

    def _raw(self, n: int) -> bytes:
        if self._mem is not None:
            out = self._mem[self._pos : self._pos + n].tobytes()
            self._pos += len(out)
            return out
        return self._file.read(n)

    def _more(self) -> bytes:
        """The next decompressed (or plain) piece, b"" at the end."""
        if self._dec is None:
            return self._raw(_CHUNK)
        while True:
            comp = self._raw(_CHUNK)
            if self._carry:
                comp, self._carry = self._carry + comp, b""
            if not comp:
                if not self._dec.eof:
                    raise FormatError("gzip stream ends early: the file is truncated")
                return b""
            out = self._dec.decompress(comp)
            while self._dec.eof and self._dec.unused_data:
                # A gzip file may hold several members back to back, and zero padding after
                # them (gzip and Python's gzip module skip it).
                rest = self._dec.unused_data.lstrip(b"\0")
                if not rest:
                    break
                self._dec = zlib.decompressobj(wbits=31)
                out += self._dec.decompress(rest)
            if out:
                return out

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end of the data."""
        parts, have = [], 0
        if self._pending:
            parts.append(self._pending[:n])
            have = len(parts[0])
            self._pending = self._pending[n:]
        while have < n:
            piece = self._more()
            if not piece:
                break
            take = piece[: n - have]
            parts.append(take)
            have += len(take)
            if len(take) < len(piece):
                self._pending = piece[len(take) :]
        return b"".join(parts)

    def readinto(self, out: memoryview) -> int:
        """Fill ``out`` as far as the data goes; returns the count written."""
        have = 0
        n = len(out)
        if self._pending:
            take = self._pending[:n]
            out[: len(take)] = take
            have = len(take)
            self._pending = self._pending[have:]
        if self._dec is None and self._file is not None and have < n:
            # Plain file: read straight into the array, no intermediate copy.
            while have < n:
                got = self._file.readinto(out[have:])
                if not got:
                    break
                have += got
            return have
        while have < n:
            piece = self._more()
            if not piece:
                break
            take = min(len(piece), n - have)
            out[have : have + take] = piece[:take] if take < len(piece) else piece
            have += take
            if take < len(piece):
                self._pending = piece[take:]
        return have

    def remaining(self) -> int:
        """Count (and consume) the bytes left."""
        total = len(self._pending)
        self._pending = b""
        while True:
            piece = self._more()
            if not piece:
                return total
            total += len(piece)


def _parse(reader: _Reader, label: str) -> np.ndarray:
    try:
        magic = reader.read(4)
        if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
            raise FormatError(
                f"{label}: not an IDX file (magic bytes {magic.hex() or 'missing'}; "
                "expected 00 00 <type> <dims>)"
            )
        code, ndim = magic[2], magic[3]
        if code not in TYPE_CODES:
            known = ", ".join(f"0x{c:02X}" for c in TYPE_CODES)
            raise FormatError(f"{label}: unknown IDX type code 0x{code:02X} (known: {known})")
        dims_raw = reader.read(4 * ndim)
        header = 4 + 4 * ndim
        if len(dims_raw) < 4 * ndim:
            raise FormatError(
                f"{label}: header says {ndim} dimensions but the file ends after "
                f"{4 + len(dims_raw)} bytes; expected at least {header}"
            )
        shape = struct.unpack(f">{ndim}I", dims_raw)
        dtype = TYPE_CODES[code]
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        try:
            out = np.empty(shape, dtype=dtype)
        except (ValueError, MemoryError):
            raise FormatError(
                f"{label}: IDX header (type 0x{code:02X}, shape {shape}) claims {expected:,} "
                "bytes of data, more than can be held in memory; the header is damaged"
            ) from None
        got = reader.readinto(memoryview(out.reshape(-1).view(np.uint8)))
        extra = reader.remaining() if got == expected else 0
    except FormatError as exc:
        if str(exc).startswith(label):
            raise
        raise FormatError(f"{label}: {exc}") from None
    except (zlib.error, OSError) as exc:
        raise FormatError(f"{label}: cannot be decompressed ({exc}); fetch it again") from None
    if got != expected or extra:
        raise FormatError(
            f"{label}: IDX header (type 0x{code:02X}, shape {shape}) says the file is "
            f"{header + expected} bytes long, but it is {header + got + extra} bytes"
        )
    if dtype.byteorder == ">":
        out = out.astype(dtype.newbyteorder("="))
    return out
