"""Safe tar archives: members are read or written only inside their destination.

A member whose name is absolute or climbs out with ``..``, or that is a link, a device or a
FIFO, makes the whole archive fail with :class:`UnsafeArchiveError`: the datasets we read never
contain such members, so one is a sign of a damaged or hostile file, not something to skip.
"""

from __future__ import annotations

import lzma
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import FormatError, SpaceError, UnsafeArchiveError
from ..store import space
from .inflate import Inflater
from .unpack import Layout, Staging, bomb_check

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


def duplicate(archive: str, path: str) -> str:
    """The message for a member path given twice: tar's "the later one wins" is never used."""
    return (f"{archive}: member {path!r} appears twice; which copy is meant is ambiguous, "
            "refusing the archive (nothing of it was used). It is damaged or was packed "
            "twice over: delete it and fetch again, or repack it with each member once")


_BLOCK = 512
_ZEROS = bytes(_BLOCK)
_CHUNK = 1 << 20  # copy unit when unpacking zip members
_REGULAR = (b"0", b"\0", b"7")  # '7' is a contiguous file: a regular file to every reader
_LINKS = {b"1": "hard link", b"2": "symbolic link"}
_SPECIAL = {b"3": "character device", b"4": "block device", b"6": "FIFO"}
MAX_HEADER = 1 << 20  # GNU long names and pax headers: kilobytes in any real archive

MemberLimit = int | Callable[[str], int] | None


class Member:
    """One regular file of an archive, read from the archive stream while it is current.

    ``path`` is normalised (see :func:`member_path`), ``size`` its length in bytes. Read it with
    :meth:`read`, :meth:`readinto` or :meth:`chunks` before asking for the next member; whatever
    is left unread is skipped then (streamed past, never buffered).
    """

    def __init__(self, stream: Inflater, path: str, size: int, label: str) -> None:
        self._stream = stream
        self.path = path
        self.size = size
        self.left = size
        self.label = label

    def _short(self) -> FormatError:
        return FormatError(f"{self.label}: the archive ends inside member {self.path!r} "
                           "(truncated)")

    def read(self, n: int = -1) -> bytes:
        """The next ``n`` bytes of the member (all that is left by default)."""
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self._stream.read(n)
        if len(data) < n:
            raise self._short()
        self.left -= n
        return data

    def readinto(self, buf) -> int:
        view = memoryview(buf).cast("B")[: self.left]
        got = self._stream.readinto(view)
        if got < len(view):
            raise self._short()
        self.left -= got
        return got

    def chunks(self) -> Iterator[bytes]:
        """The rest of the member in pieces of at most a megabyte."""
        for piece in self._stream.chunks(self.left):
            self.left -= len(piece)
            yield piece
        if self.left:
            raise self._short()

    def _finish(self) -> None:
        if self.left:
            if self._stream.skip(self.left) < self.left:
                raise self._short()
            self.left = 0
        pad = -self.size % _BLOCK
        if pad and self._stream.skip(pad) < pad:
            raise self._short()


def _limit_for(limit: MemberLimit, path: str) -> int | None:
    return limit(path) if callable(limit) else limit


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


def _header_data(stream: Inflater, size: int, label: str) -> bytes:
    if size > MAX_HEADER:
        raise FormatError(f"{label}: a tar header record claims {size:,} bytes (at most "
                          f"{MAX_HEADER:,} in any real archive); the archive is damaged or hostile")
    padded = -(-size // _BLOCK) * _BLOCK
    data = stream.read(padded)
    if len(data) < padded:
        raise FormatError(f"{label}: the archive ends inside a header (truncated)")
    return data[:size]


def _iter_tar(stream: Inflater, label: str, max_member: MemberLimit) -> Iterator[Member]:
    """A minimal streaming tar reader (ustar, GNU and pax headers) that skips tarfile's
    per-member object overhead: notMNIST has half a million members."""
    long_name: str | None = None
    long_link: str | None = None
    pax: dict[str, str] = {}
    seen: set[str] = set()  # the paths themselves are kept by most callers: a small cost
    while True:
        hdr = stream.read(_BLOCK)
        if not hdr:
            return  # some writers omit the two zero blocks at the end
        if len(hdr) < _BLOCK:
            raise FormatError(f"{label}: the archive ends in the middle of a header (truncated)")
        if hdr == _ZEROS:
            return
        stored = _octal(hdr[148:156], label, "checksum")
        if stored != sum(hdr) - sum(hdr[148:156]) + 8 * 32:
            raise FormatError(f"{label}: a tar header fails its checksum; the archive is damaged")
        kind = hdr[156:157]
        size = _octal(hdr[124:136], label, "size")
        if kind in (b"L", b"K", b"x", b"g"):
            data = _header_data(stream, size, label)
            if kind == b"L":
                long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif kind == b"K":
                long_link = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif kind == b"x":
                pax = _pax(data, label)
            continue  # global pax headers ('g') carry defaults we do not need
        if "size" in pax:
            try:
                size = int(pax["size"])
            except ValueError:
                raise FormatError(f"{label}: a pax header gives a bad size {pax['size']!r}"
                                  ) from None
            if size < 0:
                raise FormatError(f"{label}: a pax header gives a negative size ({size})")
        if kind == b"5":  # a directory: nothing is created from it, so its name is harmless
            long_name = long_link = None
            pax = {}
            padded = -(-size // _BLOCK) * _BLOCK
            if padded and stream.skip(padded) < padded:
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
        if kind not in _REGULAR:
            raise FormatError(
                f"{label}: member {full!r} has tar type {kind!r}, which dlsets does not read"
            )
        if path in seen:
            raise FormatError(duplicate(label, path))
        seen.add(path)
        limit = _limit_for(max_member, path)
        if limit is not None and size > limit:
            raise FormatError(
                f"{label}: member {path!r} is {size:,} bytes, more than the {limit:,} such a "
                "member of this dataset can hold; the archive is damaged or hostile (nothing of "
                "it was read)"
            )
        member = Member(stream, path, size, label)
        yield member
        member._finish()


def iter_members(source: Source, *, name: str | None = None, max_member: MemberLimit = None,
                 max_total: int | None = None) -> Iterator[Member]:
    """Yield each regular file of a tar archive (gzip, bzip2, xz or plain) as a :class:`Member`,
    in archive order, streaming: nothing is buffered beyond the piece being read.

    ``name`` labels the archive in errors (default: the path, or the file object's name).
    ``max_member`` (bytes, or a function of the member path giving them) bounds each member: a
    larger one fails with FormatError before any of it is read. ``max_total`` bounds what the
    whole archive may inflate to. Unsafe members (absolute or ``..`` path, link, device, FIFO)
    raise UnsafeArchiveError; a damaged archive, or a member path given twice, FormatError.
    """
    if isinstance(source, str | os.PathLike):
        label = name or os.fspath(source)
        with open(source, "rb") as f:
            yield from _guarded(f, label, max_member, max_total)
    else:
        yield from _guarded(source, name or str(getattr(source, "name", "archive")),
                            max_member, max_total)


def iter_files(source: Source, *, name: str | None = None, max_member: MemberLimit = None,
               max_total: int | None = None,
               want: Callable[[str], bool] | None = None) -> Iterator[tuple[str, bytes]]:
    """Yield ``(relative path, content)`` of each regular file, in archive order; paths are
    normalised, "/"-separated strings (no ``.`` parts, no leading slash).

    As :func:`iter_members` (same bounds), with each member read whole; members for which
    ``want(path)`` is false are skipped without being buffered.
    """
    for m in iter_members(source, name=name, max_member=max_member, max_total=max_total):
        if want is None or want(m.path):
            yield m.path, m.read()


def _guarded(f, label: str, max_member: MemberLimit, max_total: int | None
             ) -> Iterator[Member]:
    try:
        stream = Inflater(f, label, limit=max_total, what="this dataset's archive can hold")
        yield from _iter_tar(stream, label, max_member)
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
        raise FormatError(
            f"{label}: the archive is damaged or truncated ({exc}); delete it and fetch again"
        ) from None


def extract(source: Source, dest: str | os.PathLike, *, max_member: MemberLimit = None,
            max_total: int | None = None) -> list[Path]:
    """Extract the regular files of an archive into the new folder ``dest`` (absent or empty);
    returns their paths.

    Members stream into one staging folder that becomes ``dest`` when the last is written (see
    :mod:`dlsets.formats.unpack`), so a failure leaves nothing behind. The bounds are those of
    :func:`iter_members`, plus the free disk (SpaceError before a member that would not fit)
    and the inflation ratio of the whole (:data:`ZIP_MAX_RATIO` past :data:`ZIP_RATIO_FLOOR`);
    a path given twice, or a file and a folder of one name, is a FormatError.
    """
    label = os.fspath(source) if isinstance(source, str | os.PathLike) else str(
        getattr(source, "name", "archive"))
    stage = Staging(dest, label)
    layout = Layout(label)
    free = space.free_disk(stage.root)
    written, out = 0, []
    try:
        for m in iter_members(source, name=label, max_member=max_member, max_total=max_total):
            parts = layout.add_file(m.path)
            written += m.size
            if free is not None and space.needed_with_margin(written) > free:
                raise SpaceError(f"unpacking {label}: {m.path!r} would bring the files to "
                                 f"{written:,} bytes ({space.human(written)}) but "
                                 f"{stage.dest.parent} has {free:,} free; nothing was kept. "
                                 "Free some space or point the cache at a larger disk.")
            with stage.open(parts) as f:
                for piece in m.chunks():
                    try:
                        f.write(piece)
                    except OSError as exc:  # only writes: reading the source is its own error
                        raise stage._error(exc, stage.root.joinpath(*parts)) from None
                    inflater = m._stream
                    bomb_check(label, inflater.produced, inflater.consumed, ZIP_RATIO_FLOOR,
                               ZIP_MAX_RATIO)
            out.append(stage.path(parts))
        stage.commit()
    finally:
        stage.close()
    return out


# --- zip archives (Kaggle downloads) -------------------------------------------------------

ZIP_MAX_RATIO = 200
"""A member, or a whole archive, that inflates to more than this many times its compressed
size (and more than ZIP_RATIO_FLOOR bytes) is taken for a bomb: images and datasets compress
far less. Tar archives unpacked to disk are held to the same bound."""
ZIP_RATIO_FLOOR = 64 << 20
_S_IFMT, _S_IFLNK = 0o170000, 0o120000


def is_zip(path: str | os.PathLike) -> bool:
    """True when the file at ``path`` starts like a zip archive."""
    with open(path, "rb") as f:
        return f.read(4) in (b"PK\x03\x04", b"PK\x05\x06")


def zip_members(path: str | os.PathLike):
    """The regular-file members of a zip as (relative path, ZipInfo), every one checked first:
    an unsafe or unwritable name, a link, an encrypted member, a path given twice, a file and
    a folder of one name, or a zip bomb (one member, or all together) fails the whole archive."""
    with _open_zip(path) as zf:
        return _checked(zf, os.fspath(path), os.path.getsize(path))


def _open_zip(path: str | os.PathLike):
    import zipfile

    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FormatError(f"{os.fspath(path)}: not a readable zip archive ({exc}); it is "
                          "damaged or truncated, delete it and fetch again") from None


def _checked(zf, label: str, size: int) -> list:
    """:func:`zip_members` of the open zip ``zf`` (``size`` bytes long)."""
    members = []
    layout = Layout(label)
    inflated = packed = 0
    for info in zf.infolist():
        if info.is_dir():
            layout.add_dir(member_path(info.filename, label))  # checked even so
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
        layout.add_file(rel)
        inflated += info.file_size
        packed += info.compress_size
        members.append((rel, info))
    if packed > size:  # members sharing their compressed bytes: an overlapping zip bomb
        raise UnsafeArchiveError(f"{label}: its members claim {packed:,} compressed bytes in a "
                                 f"{size:,}-byte file, so they overlap: refusing what looks "
                                 "like a zip bomb (nothing was unpacked)")
    bomb_check(label, inflated, packed, ZIP_RATIO_FLOOR, ZIP_MAX_RATIO)
    return members


def extract_zip(source: str | os.PathLike, dest: str | os.PathLike,
                on_file=None) -> dict[str, tuple[int, str]]:
    """Extract the regular files of a zip into the new folder ``dest`` (absent or empty; every
    member checked before the first byte is written, see :func:`zip_members`); returns
    {relative path: (size, sha256)}.

    The declared sizes must fit the free disk (SpaceError otherwise, before any write). Reads
    are bounded by each member's declared size and its CRC is checked (zipfile does both);
    ``on_file(rel)`` is called per file. Files stream into one staging folder that becomes
    ``dest`` at the end (see :mod:`dlsets.formats.unpack`): linear in the members."""
    label = os.fspath(source)
    with _open_zip(source) as zf:  # opened once: its directory is parsed once
        members = _checked(zf, label, os.path.getsize(source))
        need = sum(info.file_size for _, info in members)
        space.need_disk(Path(dest).absolute().parent, need, f"unpacking {label}",
                        " or point the cache at a larger disk")
        return _write_zip(zf, members, dest, label, on_file)


def _write_zip(zf, members: list, dest, label: str, on_file) -> dict[str, tuple[int, str]]:
    import hashlib
    import zipfile

    stage = Staging(dest, label)
    out: dict[str, tuple[int, str]] = {}
    try:
        for rel, info in members:
            h = hashlib.sha256()
            with zf.open(info) as src, stage.open(rel.split("/")) as f:
                while block := src.read(_CHUNK):
                    h.update(block)
                    f.write(block)
            out[rel] = (info.file_size, h.hexdigest())
            if on_file:
                on_file(rel)
        stage.commit()
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise FormatError(f"{label}: damaged zip archive ({exc}); delete it and fetch "
                          "again") from None
    except OSError as exc:
        raise stage._error(exc, stage.root) from None
    finally:
        stage.close()
    return out
