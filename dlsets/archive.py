"""Safe tar archives: members are read or written only inside their destination.

A member whose name is absolute or climbs out with ``..``, or that is a link, a device or a
FIFO, makes the whole archive fail with :class:`UnsafeArchiveError`: the datasets we read never
contain such members, so one is a sign of a damaged or hostile file, not something to skip.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .errors import FormatError, UnsafeArchiveError

Source = str | os.PathLike | BinaryIO


def member_path(name: str, archive: str = "archive") -> PurePosixPath:
    """The relative path of a member named ``name``; unsafe names raise UnsafeArchiveError."""
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
    return PurePosixPath(*parts)


def check_member(info: tarfile.TarInfo, archive: str = "archive") -> PurePosixPath | None:
    """The safe relative path of a regular file member, None for a directory; raise otherwise."""
    path = member_path(info.name, archive)
    if info.isdir():
        return None
    if info.issym() or info.islnk():
        raise UnsafeArchiveError(
            f"{archive}: member {info.name!r} is a {'symbolic' if info.issym() else 'hard'} link "
            f"(to {info.linkname!r}); dataset archives hold plain files only, refusing it"
        )
    if not info.isfile():
        raise UnsafeArchiveError(
            f"{archive}: member {info.name!r} is a device or FIFO (tar type {info.type!r}); "
            "dataset archives hold plain files only, refusing it"
        )
    return path


def _open(source: Source) -> tuple[tarfile.TarFile, str]:
    label = str(source) if isinstance(source, str | os.PathLike) else getattr(
        source, "name", "archive"
    )
    try:
        # Stream mode ("r|*"): one pass over the (compressed) bytes, no seeking back.
        if isinstance(source, str | os.PathLike):
            tf = tarfile.open(source, mode="r|*")
        else:
            tf = tarfile.open(fileobj=source, mode="r|*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise FormatError(f"{label}: not a readable tar archive ({exc})") from None
    return tf, str(label)


def iter_files(source: Source) -> Iterator[tuple[PurePosixPath, bytes]]:
    """Yield ``(relative path, content)`` of each regular file, in archive order.

    Reads the archive as one stream (gzip or not), never touching the disk; fails with
    UnsafeArchiveError on the first unsafe member and FormatError on a damaged archive.
    """
    tf, label = _open(source)
    try:
        with tf:
            for info in tf:
                path = check_member(info, label)
                if path is None:
                    continue
                f = tf.extractfile(info)
                yield path, (f.read() if f is not None else b"")
    except (tarfile.TarError, EOFError, OSError) as exc:
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
        target = root.joinpath(*rel.parts)
        # Belt and braces: after resolving, the target must still be inside root.
        if root not in target.resolve().parents:
            raise UnsafeArchiveError(f"member {str(rel)!r} would be written outside {root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(target)
    return written
