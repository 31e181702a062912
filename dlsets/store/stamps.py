"""Which existing files an output may replace: only what dlsets wrote, unless told otherwise.

Every HDF5 file dlsets writes carries the root attribute ``dlsets`` (the version that wrote
it), every npz the zip comment ``dlsets <version>`` and every PNG the text chunk ``Software:
dlsets <version>``. An existing file at an output path is replaced when it carries that stamp,
or is an HDF5 file in the dlsets layout written before the stamp existed (root ``classes`` with
``sources``, ``originals`` or ``augmenter``); anything else (a user's own HDF5 or npz file, a
photo, a text file) is refused unless ``overwrite=True`` / ``--overwrite``. A folder is never
replaced here (see :func:`dlsets.store.atomic.replacing_dir`).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from ..errors import OptionError
from .regular import NotRegular, open_regular

ATTR = "dlsets"  # HDF5 root attribute: the dlsets version that wrote the file
NPZ_COMMENT = b"dlsets "  # npz: the zip's comment, "dlsets <version>"
PNG_KEY = "Software"  # PNG text chunk: "dlsets <version>"
_LEGACY_WITH = ("sources", "originals", "augmenter")


def version() -> str:
    from ..common.version import __version__

    return __version__


def stamp_hdf5(f) -> None:
    """Mark an open, writable h5py file as written by dlsets."""
    f.attrs[ATTR] = version()


def stamp_npz(path: str | os.PathLike) -> None:
    """Mark a written npz as dlsets': its zip comment (numpy ignores it; no extra array)."""
    with zipfile.ZipFile(path, "a") as z:
        z.comment = NPZ_COMMENT + version().encode("ascii")


def png_stamp():
    """PNG text chunk (``Software: dlsets <version>``, written before the pixels) for Pillow."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(PNG_KEY, f"dlsets {version()}")
    return info


def written_by_dlsets(path: str | os.PathLike) -> bool:
    """Whether the file at ``path`` is a dlsets output (stamped, or legacy dlsets HDF5); only a
    regular file is read (a FIFO, device or socket there: False, nothing of it read)."""
    try:
        f, _ = open_regular(path)
    except OSError:
        return False
    with f:  # every reader below reads this verified file, never the path again
        head = f.read(8)
        f.seek(0)
        return _stamped(f, head)


def _stamped(f, head: bytes) -> bool:
    if head.startswith(b"PK"):  # npz: a zip; its directory is read, no member is
        try:
            with zipfile.ZipFile(f) as z:
                return z.comment.startswith(NPZ_COMMENT)
        except (OSError, zipfile.BadZipFile, ValueError):
            return False
    if head == b"\x89PNG\r\n\x1a\n":  # the chunks before the pixels are read, no pixel
        try:
            from PIL.PngImagePlugin import PngImageFile

            # the plugin itself, not Image.open: its pixel-count guard would call a big
            # preview a decompression bomb, and no pixel is decoded here
            with PngImageFile(f) as im:
                return str(im.info.get(PNG_KEY, "")).startswith("dlsets ")
        except Exception:  # noqa: BLE001 - a PNG Pillow cannot open: not ours
            return False
    if head != b"\x89HDF\r\n\x1a\n":
        return False
    try:
        import h5py

        with h5py.File(f, "r") as h:
            keys = set(h.attrs.keys())
    except Exception:  # noqa: BLE001 - whatever HDF5 makes of a damaged file: not ours
        return False
    return ATTR in keys or ("classes" in keys and any(k in keys for k in _LEGACY_WITH))


def check_replace(path: str | os.PathLike, overwrite: bool = False, what: str = "output") -> None:
    """OptionError when ``path`` is an existing file that dlsets did not write and
    ``overwrite`` is false (a folder, FIFO, device or socket there: always), before any work."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    if path.is_dir():
        raise OptionError(f"{what}: {path} is a folder; give the name of a file to write")
    try:
        f, size = open_regular(path)
        f.close()
    except NotRegular:
        raise OptionError(
            f"{what}: {path} exists and is not a regular file (a FIFO, device or socket); it "
            "was left as it is and nothing was written. Give the name of a file to write"
        ) from None
    except OSError:
        size = None  # e.g. a dangling symlink: replaced only when told to
    if overwrite or written_by_dlsets(path):
        return
    raise OptionError(
        f"{what}: {path} already exists ({'a file' if size is None else f'{size:,} bytes'}) and "
        "was not written by dlsets; it was left as it is. Give another name, or overwrite=True "
        "to replace it"
    )
