"""Unpacking an archive into a folder: one staging folder, one rename, bounded on the whole.

Every file goes under its own name into one staging folder beside the destination (named like
any dlsets temporary, so a killed process's folder is cleaned up later), and the staging folder
becomes the destination by one rename when the last member is written. So the cost is linear
in the members (no per-file temporary, no per-file scan of a folder), member names are never
lengthened (a legal 255-byte name stays legal), and the destination is either absent or whole.

Member paths are checked part by part with :func:`dlsets.store.names.check_component` (up to
:data:`MAX_NAME` bytes, the usual file-system limit); two members of one path, or a file and a
folder of one name, make the archive fail with FormatError naming both: the rule is that an
archive describes one tree, nothing of it silently overwritten.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from ..errors import DlsetsError, FormatError, OptionError, UnsafeArchiveError, WriteError
from ..store import space
from ..store.atomic import clean, temp_path
from ..store.names import check_component, inside

MAX_NAME = 255
"""Bytes of one member path part: what common file systems allow, and archives carry."""


def parts_of(rel: str, label: str) -> list[str]:
    """The parts of the normalised member path ``rel``, each checked as a file name."""
    parts = rel.split("/")
    for part in parts:
        try:
            check_component(part, "member part", max_bytes=MAX_NAME)
        except OptionError as exc:
            raise FormatError(f"{label}: member {rel!r} cannot be unpacked: {exc}") from None
    return parts


class Layout:
    """The tree an archive describes, member by member: refuses a path given twice and a
    name that is both a file and a folder."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.files: set[str] = set()
        self.dirs: set[str] = set()

    def _conflict(self, a: str, b: str) -> FormatError:
        return FormatError(
            f"{self.label}: {a!r} is a file and {b!r} needs a folder of that name; an archive "
            "must describe one tree, refusing it (nothing was unpacked)")

    def add_dir(self, rel: str, needed_by: str | None = None) -> None:
        parts = parts_of(rel, self.label)
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d in self.dirs:
                continue
            if d in self.files:
                raise self._conflict(d, needed_by or rel + "/")
            self.dirs.add(d)

    def add_file(self, rel: str) -> list[str]:
        folder, _, name = rel.rpartition("/")
        if folder and folder in self.dirs:  # the common case: a folder seen before
            parts = [*folder.split("/"), *parts_of(name, self.label)]
        else:
            parts = parts_of(rel, self.label)
        if rel in self.files:
            raise FormatError(f"{self.label}: member {rel!r} appears twice; which one is meant "
                              "is ambiguous, refusing the archive (nothing was unpacked)")
        if rel in self.dirs:  # the error path only: finding who needs the folder may scan
            inner = sorted(f for f in self.files | self.dirs if f.startswith(rel + "/"))
            raise self._conflict(rel, inner[0] if inner else rel + "/")
        if folder and folder not in self.dirs:
            self.add_dir(folder, rel)
        self.files.add(rel)
        return parts


class Staging:
    """A staging folder for ``dest`` (which must be absent or an empty folder); ``commit()``
    renames it into place, ``close()`` removes whatever is left of it."""

    def __init__(self, dest: str | os.PathLike, label: str) -> None:
        self.label = label
        dest = Path(dest)
        # the parent resolved (returned paths compare with resolved ones), the name itself not:
        # a link there is refused below rather than followed
        self.dest = dest.absolute().parent.resolve() / dest.name
        if self.dest.is_symlink() or (self.dest.exists() and (
                not self.dest.is_dir() or _holds_anything(self.dest))):
            raise OptionError(f"unpacking {label}: {self.dest} already exists and is not an "
                              "empty folder; an archive is unpacked into a new folder, whole: "
                              "give one that does not exist yet, or remove it")
        name = self.dest.name if len(self.dest.name.encode()) <= 150 else "unpack"
        self.root = temp_path(self.dest.with_name(name))
        self._made: set[str] = set()
        try:
            self.dest.parent.mkdir(parents=True, exist_ok=True)
            clean(self.dest.parent)  # staging folders of dead processes: one scan per archive
            shutil.rmtree(self.root, ignore_errors=True)
            self.root.mkdir()
        except OSError as exc:
            raise self._error(exc, self.root) from None

    def _error(self, exc: OSError, path: Path) -> DlsetsError:
        err = space.write_error(exc, path, None, f"unpacking {self.label}")
        if isinstance(err, DlsetsError):
            return err
        if exc.errno == errno.ENAMETOOLONG:
            return FormatError(f"unpacking {self.label}: this file system refuses the name "
                               f"{path.name!r} ({len(path.name.encode())} bytes) as too long; "
                               "unpack it on another file system")
        return WriteError(f"unpacking {self.label}: cannot write {path} "
                          f"({exc.strerror or exc}); check the permissions and the disk there")

    def open(self, parts: list[str]):
        """A new file (exclusive: never an existing one, never through a link) at ``parts``."""
        path = self.root.joinpath(*parts)
        try:
            if len(parts) > 1:
                self._folder(parts[:-1])
            return open(path, "xb")
        except OSError as exc:
            raise self._error(exc, path) from None

    def _folder(self, parts: list[str]) -> None:
        key = "/".join(parts)
        if key in self._made:
            return
        folder = self.root.joinpath(*parts)
        folder.mkdir(parents=True, exist_ok=True)
        # Once per folder, not per file: nothing but this process writes in the staging folder.
        if not inside(self.root, folder):
            raise UnsafeArchiveError(f"{self.label}: folder {key!r} would lie outside {self.dest}")
        self._made.add(key)

    def path(self, parts: list[str]) -> Path:
        return self.dest.joinpath(*parts)

    def commit(self) -> None:
        try:
            if self.dest.is_dir():
                self.dest.rmdir()  # empty, checked above
            os.replace(self.root, self.dest)
        except OSError as exc:
            raise self._error(exc, self.dest) from None

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _holds_anything(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(True for _ in entries)


def bomb_check(label: str, inflated: int, packed: int, floor: int, ratio: int) -> None:
    """UnsafeArchiveError when ``inflated`` bytes from ``packed`` look like a bomb."""
    if inflated > floor and inflated > ratio * max(1, packed):
        raise UnsafeArchiveError(
            f"{label}: the members together inflate {packed:,} bytes to more than "
            f"{inflated:,} (more than {ratio}x): refusing what looks like a zip bomb "
            "(nothing was unpacked)")
