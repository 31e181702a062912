"""Safe tar archives: members are read or written only inside their destination.

A member whose name is absolute or climbs out with ``..``, or that is a link, a device or a
FIFO, makes the whole archive fail with :class:`UnsafeArchiveError`: the datasets we read never
contain such members, so one is a sign of a damaged or hostile file, not something to skip.
"""

from __future__ import annotations

import lzma
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .atomic import replacing
from .errors import FormatError, UnsafeArchiveError

Source = str | os.PathLike | BinaryIO


def member_path(name: str, archive: str = "archive") -> str:
    """The normalised relative path (``"a/b.png"``) of a member named ``name``; unsafe names
    raise UnsafeArchiveError."""
    # Backslashes are separators on Windows: treat them as such so "..\\x" cannot slip through.
    clean = name.replace("\\", "/")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":"):
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} has an absolute path; refusing to read this archive"
        )
    if ".." in parts:
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} points outside the archive with '..'; "
            "refusing to read this archive"
        )
    if not parts:
        raise UnsafeArchiveError(f"{archive}: member with an empty name {name!r}")
    return "/".join(parts)


_BLOCK = 512
_ZEROS = bytes(_BLOCK)
_CHUNK = 1 << 20
_REGULAR = (b"0", b"\0", b"7")  # '7' is a contiguous file: a regular file to every reader
_LINKS = {b"1": "hard link", b"2": "symbolic link"}
_SPECIAL = {b"3": "character device", b"4": "block device", b"6": "FIFO"}


def _decompressor(head: bytes):
    """A factory of decompressor objects for a stream starting with ``head``; None for a
    plain tar."""
    if head.startswith(b"\x1f\x8b"):
        return lambda: zlib.decompressobj(wbits=31)
    if head.startswith(b"BZh"):
        import bz2

        return bz2.BZ2Decompressor
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMADecompressor
    return None


class _Stream:
    """Decompressed bytes of a file, handed out in exact amounts, in one forward pass."""

    def __init__(self, f, label: str):
        self._f = f
        self._label = label
        head = f.read(6)
        self._make = _decompressor(head)
        self._dec = self._make() if self._make else None
        self._carry = head
        self._buf = bytearray()
        self._pos = 0
        self._done = False

    def _fill(self) -> bool:
        if self._done:
            return False
        raw = self._f.read(_CHUNK)
        if self._carry:
            raw, self._carry = self._carry + raw, b""
        if not raw:
            self._done = True
            if self._dec is not None and not self._dec.eof:
                raise FormatError(f"{self._label}: the compressed stream ends early (truncated)")
            return False
        if self._dec is None:
            out = raw
        else:
            out = self._dec.decompress(raw)
            while self._dec.eof and self._dec.unused_data:
                rest = self._dec.unused_data  # concatenated members (gzip allows them)
                self._dec = self._make()
                out += self._dec.decompress(rest)
        if self._pos > len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += out
        return True

    def take(self, n: int, keep: int | None = None) -> bytes | None:
        """Consume the next ``n`` bytes and return the first ``keep`` of them (all by
        default); None at a clean end of the stream."""
        while len(self._buf) - self._pos < n:
            if not self._fill():
                if len(self._buf) == self._pos:
                    return None
                raise FormatError(
                    f"{self._label}: the archive ends in the middle of a member (truncated)"
                )
        start = self._pos
        self._pos += n
        with memoryview(self._buf) as view:  # released at once: the buffer must stay resizable
            return bytes(view[start : start + (n if keep is None else keep)])


def _octal(field: bytes, label: str, what: str) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256 for values too big for octal
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise FormatError(f"{label}: bad {what} field {field!r} in a tar header") from None


def _pax(data: bytes, label: str) -> dict[str, str]:
    out, pos = {}, 0
    while pos < len(data):
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise FormatError(f"{label}: malformed pax header") from None
        # A record holds at least its own length field and ends inside the header: a length
        # of 0 (or less) would never advance and hang the reader.
        if space < pos or length <= space - pos or pos + length > len(data):
            raise FormatError(f"{label}: malformed pax header (record length {length})")
        record = data[space + 1 : pos + length - 1]
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def _iter_tar(f, label: str) -> Iterator[tuple[str, bytes]]:
    """A minimal streaming tar reader (ustar, GNU and pax headers) that skips tarfile's
    per-member object overhead: notMNIST has half a million members."""
    stream = _Stream(f, label)
    long_name: str | None = None
    long_link: str | None = None
    pax: dict[str, str] = {}
    while True:
        hdr = stream.take(_BLOCK)
        if hdr is None:
            return  # some writers omit the two zero blocks at the end
        if hdr == _ZEROS:
            return
        stored = _octal(hdr[148:156], label, "checksum")
        if stored != sum(hdr) - sum(hdr[148:156]) + 8 * 32:
            raise FormatError(f"{label}: a tar header fails its checksum; the archive is damaged")
        kind = hdr[156:157]
        size = _octal(hdr[124:136], label, "size")
        if kind in (b"L", b"K", b"x", b"g"):
            padded = -(-size // _BLOCK) * _BLOCK
            data = stream.take(padded, size) if padded else b""
            if data is None:
                raise FormatError(f"{label}: the archive ends inside a header (truncated)")
            if kind == b"L":
                long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif kind == b"K":
                long_link = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif kind == b"x":
                pax = _pax(data, label)
            continue  # global pax headers ('g') carry defaults we do not need
        if "size" in pax:
            size = int(pax["size"])
            if size < 0:
                raise FormatError(f"{label}: a pax header gives a negative size ({size})")
        padded = -(-size // _BLOCK) * _BLOCK
        if kind == b"5":  # a directory: nothing is created from it, so its name is harmless
            long_name = long_link = None
            pax = {}
            if padded and stream.take(padded, 0) is None:
                raise FormatError(f"{label}: the archive ends inside a directory entry")
            continue
        name = hdr[0:100].split(b"\0", 1)[0]
        if hdr[257:262] == b"ustar" and hdr[345:346] != b"\0":
            name = hdr[345:500].split(b"\0", 1)[0] + b"/" + name
        full = pax.get("path") or long_name or name.decode("utf-8", "surrogateescape")
        link = pax.get("linkpath") or long_link or hdr[157:257].split(b"\0", 1)[0].decode(
            "utf-8", "surrogateescape")
        long_name = long_link = None
        pax = {}
        path = member_path(full, label)
        if kind in _LINKS:
            raise UnsafeArchiveError(
                f"{label}: member {full!r} is a {_LINKS[kind]} (to {link!r}); dataset archives "
                "hold plain files only, refusing it"
            )
        if kind in _SPECIAL:
            raise UnsafeArchiveError(
                f"{label}: member {full!r} is a {_SPECIAL[kind]}; dataset archives hold plain "
                "files only, refusing it"
            )
        data = stream.take(padded, size) if padded else b""
        if data is None:
            raise FormatError(f"{label}: the archive ends inside member {full!r} (truncated)")
        if kind not in _REGULAR:
            raise FormatError(
                f"{label}: member {full!r} has tar type {kind!r}, which dlsets does not read"
            )
        yield path, data


def iter_files(source: Source) -> Iterator[tuple[str, bytes]]:
    """Yield ``(relative path, content)`` of each regular file, in archive order; paths are
    normalised, "/"-separated strings (no ``.`` parts, no leading slash).

    Reads the archive as one stream (gzip, bzip2, xz or plain), never touching the disk;
    fails with UnsafeArchiveError on the first unsafe member (absolute or ``..`` path, link,
    device, FIFO) and FormatError on a damaged archive.
    """
    if isinstance(source, str | os.PathLike):
        label = os.fspath(source)
        with open(source, "rb") as f:
            yield from _guarded(f, label)
    else:
        yield from _guarded(source, str(getattr(source, "name", "archive")))


def _guarded(f, label: str) -> Iterator[tuple[str, bytes]]:
    try:
        yield from _iter_tar(f, label)
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
        raise FormatError(
            f"{label}: the archive is damaged or truncated ({exc}); delete it and fetch again"
        ) from None


def extract(source: Source, dest: str | os.PathLike) -> list[Path]:
    """Extract the regular files of an archive under ``dest``; returns their paths.

    Every member is checked before anything is written; each file goes to a temporary name
    and is renamed into place, so a failure never leaves a half-written file behind.
    """
    root = Path(dest).resolve()
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for rel, data in iter_files(source):
        target = root.joinpath(*rel.split("/"))
        # Belt and braces: after resolving, the target must still be inside root.
        if root not in target.resolve().parents:
            raise UnsafeArchiveError(f"member {str(rel)!r} would be written outside {root}")
        with replacing(target) as tmp:
            tmp.write_bytes(data)
        written.append(target)
    return written


# --- zip archives (Kaggle downloads) -------------------------------------------------------

ZIP_MAX_RATIO = 200
"""A member that inflates to more than this many times its compressed size (and more than
ZIP_RATIO_FLOOR bytes) is taken for a zip bomb: images and datasets compress far less."""
ZIP_RATIO_FLOOR = 64 << 20
_S_IFMT, _S_IFLNK = 0o170000, 0o120000


def is_zip(path: str | os.PathLike) -> bool:
    """True when the file at ``path`` starts like a zip archive."""
    with open(path, "rb") as f:
        return f.read(4) in (b"PK\x03\x04", b"PK\x05\x06")


def zip_members(path: str | os.PathLike):
    """The regular-file members of a zip as (relative path, ZipInfo), every one checked first:
    an unsafe name, a link, an encrypted member or a zip bomb fails the whole archive."""
    import zipfile

    label = os.fspath(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FormatError(f"{label}: not a readable zip archive ({exc}); it is damaged or "
                          "truncated, delete it and fetch again") from None
    members = []
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                member_path(info.filename, label)  # a hostile name is refused even so
                continue
            rel = member_path(info.filename, label)
            if (info.external_attr >> 16) & _S_IFMT == _S_IFLNK:
                raise UnsafeArchiveError(f"{label}: member {info.filename!r} is a symbolic link; "
                                         "dataset archives hold plain files only, refusing it")
            if info.flag_bits & 0x1:
                raise FormatError(f"{label}: member {info.filename!r} is encrypted; dlsets "
                                  "reads unencrypted archives only")
            if (info.file_size > ZIP_RATIO_FLOOR
                    and info.file_size > ZIP_MAX_RATIO * max(1, info.compress_size)):
                raise UnsafeArchiveError(
                    f"{label}: member {info.filename!r} would inflate {info.compress_size:,} "
                    f"bytes to {info.file_size:,} (more than {ZIP_MAX_RATIO}x): refusing what "
                    "looks like a zip bomb")
            members.append((rel, info))
    return members


def extract_zip(source: str | os.PathLike, dest: str | os.PathLike,
                on_file=None) -> dict[str, tuple[int, str]]:
    """Extract the regular files of a zip under ``dest`` (every member checked before the
    first byte is written, see :func:`zip_members`); returns {relative path: (size, sha256)}.

    Reads are bounded by each member's declared size and its CRC is checked (zipfile does
    both); ``on_file(rel)`` is called per file. Files go to temporary names and are renamed."""
    import hashlib
    import shutil
    import zipfile

    label = os.fspath(source)
    members = zip_members(source)
    root = Path(dest).resolve()
    root.mkdir(parents=True, exist_ok=True)
    need = sum(info.file_size for _, info in members)
    free = shutil.disk_usage(root).free
    if need > free:
        raise FormatError(f"{label}: unpacking needs {need:,} bytes but {root} has {free:,} "
                          "free; free some space or point the cache at a larger disk")
    out: dict[str, tuple[int, str]] = {}
    try:
        with zipfile.ZipFile(source) as zf:
            for rel, info in members:
                target = root.joinpath(*rel.split("/"))
                if root not in target.resolve().parents:
                    raise UnsafeArchiveError(f"member {rel!r} would be written outside {root}")
                h = hashlib.sha256()
                with replacing(target) as tmp, zf.open(info) as src, open(tmp, "wb") as f:
                    while block := src.read(_CHUNK):
                        h.update(block)
                        f.write(block)
                out[rel] = (info.file_size, h.hexdigest())
                if on_file:
                    on_file(rel)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise FormatError(f"{label}: damaged zip archive ({exc}); delete it and fetch "
                          "again") from None
    return out
