"""Names that become paths: one check for every source, and the confinement of the paths made
from them.

Every name a user, a registry file, a server or an index gives that ends up as a path component
(a dataset, a Kaggle owner/slug/version, a folder key, a shard file name, an archive member's
parts) goes through :func:`check_component`; the path joined from such parts goes through
:func:`confined` before anything is created, read or removed there.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import OptionError

#: bytes of one path component; 255 is the usual file-system limit, and dlsets adds temporary
#: suffixes (``.<host>@<pid>...tmp``, about 40 bytes) to names it writes
MAX_COMPONENT = 200


def check_component(name: object, what: str = "name", *, max_bytes: int = MAX_COMPONENT) -> str:
    """``name`` if it is one safe path component, else an :class:`OptionError` quoting it.

    Refused: non-strings, the empty string, ``.`` and ``..``, ``/`` and ``\\``, NUL and other
    control characters, names that do not encode as UTF-8, and more than ``max_bytes`` bytes."""
    if not isinstance(name, str):
        raise OptionError(f"{what} {name!r} is not a string")
    why = None
    if name in ("", ".", ".."):
        why = "it is empty or a reference to a folder ('.' or '..')"
    elif "/" in name or "\\" in name:
        why = "it holds a path separator"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        why = "it holds a control character (NUL, newline, ...)"
    else:
        try:
            size = len(name.encode("utf-8"))
        except UnicodeEncodeError:
            why = "it does not encode as UTF-8"
        else:
            if size > max_bytes:
                why = f"it is {size} bytes long (at most {max_bytes})"
    if why:
        raise OptionError(f"{what} {name!r} cannot be used as a file or folder name: {why}")
    return name


def inside(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether ``path`` lies in ``root`` (or is it) once both are made absolute and their
    symbolic links resolved."""
    root_r = Path(os.path.realpath(root))
    path_r = Path(os.path.realpath(path))
    return path_r == root_r or root_r in path_r.parents


def confined(root: str | os.PathLike, *parts: str, what: str = "name") -> Path:
    """``root / part / ...`` after checking each part with :func:`check_component` and the
    result with :func:`inside`; an :class:`OptionError` naming the parts otherwise."""
    for part in parts:
        check_component(part, what)
    path = Path(root).joinpath(*parts)
    if not inside(root, path):
        raise OptionError(f"{what} {'/'.join(parts)!r} leads outside {os.fspath(root)!r} "
                          "(through a symbolic link); refusing to use it")
    return path
