"""Bounded streaming decompression: gzip (several members, zero padding), bzip2, xz or plain.

:class:`Inflater` hands out a file's decompressed bytes in exact amounts, in one forward pass.
No single step inflates more than :data:`STEP` bytes, however well the input compresses (a
megabyte of gzip'd zeros is a gigabyte of output: it is produced a step at a time, never at
once), and ``limit`` caps the total: a stream that inflates past it fails with FormatError as
soon as it does. Readers derive that cap from what the format and the dataset's layout allow
(see :mod:`dlsets.formats.limits`), so a small hostile file costs time and memory in proportion to
what a genuine file of that layout would, not to what it claims.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from ..errors import FormatError

STEP = 1 << 20  # the most bytes one step inflates
READ = 1 << 18  # compressed bytes read from the file at a time


class _Zlib:
    def __init__(self) -> None:
        self._d = zlib.decompressobj(wbits=31)  # gzip framing
        self._in = b""
        self.hungry = True

    def feed(self, data: bytes) -> None:
        self._in, self.hungry = data, False

    def pull(self, n: int) -> bytes:
        data, self._in = (self._d.unconsumed_tail or self._in), b""
        out = self._d.decompress(data, n)
        # Less than asked and nothing left over: zlib needs more input (or is at the end).
        self.hungry = len(out) < n and not self._d.unconsumed_tail
        return out

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused(self) -> bytes:
        return self._d.unused_data


class _Buffered:
    """bz2 and lzma decompressors, which keep unconsumed input themselves."""

    def __init__(self, make) -> None:
        self._d = make()
        self._in = b""

    def feed(self, data: bytes) -> None:
        self._in = data

    def pull(self, n: int) -> bytes:
        data, self._in = self._in, b""
        return self._d.decompress(data, n)

    @property
    def hungry(self) -> bool:
        return not self._in and self._d.needs_input

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused(self) -> bytes:
        return self._d.unused_data


CODECS = {
    "gzip": (b"\x1f\x8b", _Zlib),
    "bzip2": (b"BZh", lambda: _Buffered(bz2.BZ2Decompressor)),
    "xz": (b"\xfd7zXZ\x00", lambda: _Buffered(lzma.LZMADecompressor)),
}


class Inflater:
    """Decompressed bytes of ``f`` (sniffed: one of ``codecs``, else plain), read forward.

    ``label`` names the file in errors; ``limit`` (bytes, None for none) caps what the stream
    may inflate to in all; ``what`` says what the cap is for, in that error.
    """

    def __init__(self, f: BinaryIO, label: str, *, limit: int | None = None,
                 what: str = "", codecs: tuple[str, ...] = ("gzip", "bzip2", "xz")) -> None:
        self._f = f
        self.label = label
        self.limit = limit
        self._what = what
        self.produced = 0  # decompressed bytes inflated so far
        self.consumed = 0  # bytes read from f
        head = self._read(6)
        self._make = None
        self.codec = "plain"
        for name in codecs:
            magic, make = CODECS[name]
            if head.startswith(magic):
                self._make, self.codec = make, name
        self._raw = head  # bytes read from f and not yet handed on
        self._out = b""  # inflated bytes not handed out yet (at most STEP), from _off
        self._off = 0
        self._dec = None
        self._between = self._make is not None  # at the start of a (next) member

    def _read(self, n: int) -> bytes:
        data = self._f.read(n)
        self.consumed += len(data)
        return data

    def _fail(self, exc: Exception) -> FormatError:
        return FormatError(f"{self.label}: cannot be decompressed ({exc}); the file is damaged, "
                           "delete it and fetch it again")

    def _piece(self, n: int) -> bytes:
        """The next 1..n decompressed bytes, or b"" at the clean end of the data.

        Output is inflated a STEP at a time and small reads are served from it: asking zlib
        for a few hundred bytes at a time would copy its unconsumed input on every call (a
        tar header per member: half a million of them in notMNIST)."""
        if self._off < len(self._out):
            if self._off == 0 and n >= len(self._out):
                out, self._out = self._out, b""
                return out
            out = self._out[self._off:self._off + n]
            self._off += len(out)
            return out
        try:
            out = self._next(STEP)
        except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as exc:
            raise self._fail(exc) from None
        if out:
            self.produced += len(out)
            if self.limit is not None and self.produced > self.limit:
                raise FormatError(
                    f"{self.label}: inflates to more than {self.limit:,} bytes, more than "
                    f"{self._what or 'its format allows'}; the file is damaged or hostile "
                    "(stopped reading it there)"
                )
        if len(out) <= n:
            return out
        self._out, self._off = out, n
        return out[:n]

    def _next(self, n: int) -> bytes:
        if self._make is None:  # plain
            if self._raw:
                out, self._raw = self._raw[:n], self._raw[n:]
                return out
            return self._read(min(n, STEP))
        while True:
            if self._between:
                data, self._raw = (self._raw or self._read(READ)), b""
                if not data:
                    return b""  # the end, between members: clean
                # gzip allows zero padding after a member; Python's gzip module skips it too.
                data = data.lstrip(b"\0")
                if not data:
                    continue
                self._dec = self._make()
                self._dec.feed(data)
                self._between = False
            dec = self._dec
            if dec.eof:
                self._raw, self._between = dec.unused, True
                continue
            if not dec.hungry:
                out = dec.pull(n)
                if out:
                    return out
                continue
            data = self._read(READ)
            if not data:
                raise FormatError(f"{self.label}: the compressed stream ends early; the file is "
                                  "truncated, delete it and fetch it again")
            dec.feed(data)

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes, fewer only at the end of the data."""
        first = self._piece(min(n, STEP)) if n > 0 else b""
        if len(first) == n or not first:
            return first  # the common case: one piece
        parts, have = [first], len(first)
        while have < n:
            piece = self._piece(min(n - have, STEP))
            if not piece:
                break
            parts.append(piece)
            have += len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readinto(self, buf) -> int:
        """Fill ``buf`` as far as the data goes; returns the count written."""
        view = memoryview(buf).cast("B")
        have = 0
        while have < len(view):
            piece = self._piece(min(len(view) - have, STEP))
            if not piece:
                break
            view[have:have + len(piece)] = piece
            have += len(piece)
        return have

    def chunks(self, n: int) -> Iterator[bytes]:
        """The next ``n`` bytes in pieces of at most STEP; stops early at the end of the data."""
        while n > 0:
            piece = self._piece(min(n, STEP))
            if not piece:
                return
            n -= len(piece)
            yield piece

    def skip(self, n: int) -> int:
        """Consume the next ``n`` bytes without keeping them; returns how many there were."""
        done = 0
        while done < n:
            piece = self._piece(min(n - done, STEP))
            if not piece:
                break
            done += len(piece)
        return done

    def count_rest(self, bound: int) -> int | None:
        """How many bytes are left, counting at most ``bound`` of them (None when more)."""
        left = self.skip(bound)
        if left < bound:
            return left
        return None if self._piece(1) else left
