"""The dataset registry: built-in entries from ``registry.json`` plus user JSON files.

Nothing is read at import time; the built-in file is parsed on first use and user files
(``$DLSETS_REGISTRY`` and :func:`register_file`) are re-read whenever they change.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from . import config
from .errors import RegistryError

USER_ENTRY_KEYS = {"like", "files", "classes", "description", "license", "homepage", "citation"}
USER_FILE_KEYS = {"sha256", "urls", "size", "md5"}
_HEX = re.compile(r"[0-9a-fA-F]+")


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset: what it must hash to and where it can be found."""

    name: str
    sha256: str | None
    md5: str | None
    size: int | None
    urls: tuple[str, ...]


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its files, and the facts loaders and users need about it.

    ``file_sets`` lists alternative complete sets of files (MNIST as four IDX files or keras'
    ``mnist.npz``; CIFAR as the binary or the python archive); the first is what gets downloaded.
    ``format`` names the file layout the loaders parse (``idx``, ``cifar10``, ``cifar100``,
    ``notmnist``); a user entry inherits it from the built-in named by ``like``.
    """

    name: str
    like: str
    format: str
    files: dict[str, FileSpec]
    file_sets: tuple[tuple[str, ...], ...]
    image_shape: tuple[int, ...]
    classes: tuple[str, ...]
    coarse_classes: tuple[str, ...] = ()
    title: str = ""
    description: str = ""
    license: str = ""
    homepage: str = ""
    citation: str = ""
    builtin: bool = True
    source: str = "built-in"
    extra: dict[str, Any] = field(default_factory=dict)
    # published per-channel mean and std of the train split in [0, 1] units, if known
    stats: dict[str, list[float]] | None = None

    def default_files(self) -> list[str]:
        """Names of the files fetched when no selection is given: the first file set."""
        return list(self.file_sets[0])


_user_files: list[Path] = []


def register_file(path: str | os.PathLike) -> list[str]:
    """Add a user registry JSON file; returns the dataset names it defines."""
    p = Path(path).expanduser().resolve()
    entries = _parse_user_file(p)  # validate now, so a bad file fails where it is registered
    _check_conflicts(_builtin(), {p: entries})
    if p not in _user_files:
        _user_files.append(p)
    return sorted(entries)


def names() -> list[str]:
    """All dataset names, built-in first, then user entries."""
    return list(_all())


def get(name: str) -> DatasetSpec:
    """The spec of dataset ``name``; unknown names fail with the list of known ones."""
    datasets = _all()
    if name not in datasets:
        import difflib

        folded = {n.lower(): n for n in datasets}
        close = [folded[name.lower()]] if name.lower() in folded else difflib.get_close_matches(
            name, list(datasets), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise RegistryError(
            f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(datasets)}. "
            "Add your own with a JSON registry file (DLSETS_REGISTRY or dlsets.register_file)."
        )
    return datasets[name]


def _all() -> dict[str, DatasetSpec]:
    builtin = _builtin()
    paths = list(dict.fromkeys([*(p.resolve() for p in config.registry_paths()), *_user_files]))
    users = {p: _parse_user_file(p) for p in paths}
    _check_conflicts(builtin, users)
    merged = dict(builtin)
    for entries in users.values():
        merged.update(entries)
    return merged


def _check_conflicts(builtin: dict[str, DatasetSpec], users: dict[Path, dict]) -> None:
    seen: dict[str, Path] = {}
    for path, entries in users.items():
        for name in entries:
            if name in builtin:
                raise RegistryError(
                    f"{path}: entry {name!r} has the name of a built-in dataset; "
                    "user entries may not replace built-ins, pick another name"
                )
            if name in seen and seen[name] != path:
                raise RegistryError(
                    f"dataset {name!r} is defined twice, in {seen[name]} and in {path}; keep one"
                )
            seen[name] = path


@lru_cache(maxsize=1)
def _builtin() -> dict[str, DatasetSpec]:
    text = resources.files("dlsets").joinpath("registry.json").read_text(encoding="utf-8")
    out = {}
    for name, e in json.loads(text).items():
        files = {fn: _file_spec(fn, f) for fn, f in e["files"].items()}
        out[name] = DatasetSpec(
            name=name,
            like=name,
            format=e["format"],
            files=files,
            file_sets=tuple(tuple(fs) for fs in e.get("file_sets", [list(files)])),
            image_shape=tuple(e["image_shape"]),
            classes=tuple(e["classes"]),
            coarse_classes=tuple(e.get("coarse_classes", ())),
            title=e.get("title", name),
            description=e.get("description", ""),
            license=e.get("license", ""),
            homepage=e.get("homepage", ""),
            citation=e.get("citation", ""),
            stats=e.get("stats"),
        )
    return out


def _file_spec(name: str, f: dict) -> FileSpec:
    return FileSpec(
        name=name,
        sha256=f.get("sha256") and f["sha256"].lower(),
        md5=f.get("md5") and f["md5"].lower(),
        size=f.get("size"),
        urls=tuple(f["urls"]),
    )


_parsed: dict[Path, tuple[int, int, dict[str, DatasetSpec]]] = {}


def _parse_user_file(path: Path) -> dict[str, DatasetSpec]:
    try:
        st = path.stat()
    except OSError as exc:
        raise RegistryError(f"registry file {path} cannot be read: {exc.strerror}") from None
    hit = _parsed.get(path)
    if hit and hit[:2] == (st.st_mtime_ns, st.st_size):
        return hit[2]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"registry file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"registry file {path}: expected an object of dataset entries")
    entries = {name: _user_entry(path, name, e) for name, e in data.items()}
    _parsed[path] = (st.st_mtime_ns, st.st_size, entries)
    return entries


def _user_entry(path: Path, name: str, e: Any) -> DatasetSpec:
    where = f"{path}, entry {name!r}"

    def fail(msg: str) -> RegistryError:
        return RegistryError(f"{where}: {msg}")

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise fail("a dataset name uses letters, digits, '.', '_' and '-' only")
    if not isinstance(e, dict):
        raise fail("expected an object with 'like' and 'files'")
    unknown = set(e) - USER_ENTRY_KEYS
    if unknown:
        raise fail(f"unknown keys {sorted(unknown)}; allowed: {sorted(USER_ENTRY_KEYS)}")
    for key in ("like", "files"):
        if key not in e:
            raise fail(f"missing required key {key!r}")
    builtin = _builtin()
    like = e["like"]
    if not isinstance(like, str) or like not in builtin:
        raise fail(f"'like' is {like!r}, not a built-in dataset; use one of {list(builtin)}")
    base = builtin[like]
    if not isinstance(e["files"], dict) or not e["files"]:
        raise fail("'files' must be a non-empty object of file name -> file entry")
    files = {}
    for fn, f in e["files"].items():
        files[fn] = _user_file(where, fn, f)
    classes = e.get("classes", list(base.classes))
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise fail("'classes' must be a list of names")
    for key in ("description", "license", "homepage", "citation"):
        if key in e and not isinstance(e[key], str):
            raise fail(f"{key!r} must be a string")
    return DatasetSpec(
        name=name,
        like=like,
        format=base.format,
        files=files,
        file_sets=_user_file_sets(base, files),
        image_shape=base.image_shape,
        classes=tuple(classes),
        coarse_classes=base.coarse_classes,
        title=name,
        description=e.get("description", ""),
        license=e.get("license", ""),
        homepage=e.get("homepage", ""),
        citation=e.get("citation", ""),
        builtin=False,
        source=str(path),
    )


def _user_file_sets(base: DatasetSpec, files: dict[str, FileSpec]) -> tuple[tuple[str, ...], ...]:
    """The ``like`` dataset's alternative file sets that the user's files cover, when they
    account for every file listed (a CIFAR entry may list both archives: either one will do);
    otherwise one set of all the files."""
    sets = tuple(fs for fs in base.file_sets if set(fs) <= set(files))
    if sets and set().union(*sets) == set(files):
        return sets
    return (tuple(files),)


def _user_file(where: str, fn: str, f: Any) -> FileSpec:
    def fail(msg: str) -> RegistryError:
        return RegistryError(f"{where}, file {fn!r}: {msg}")

    if "/" in fn or "\\" in fn or fn in ("", ".", ".."):
        raise fail("a file name may not contain a path")
    if not isinstance(f, dict):
        raise fail("expected an object with 'sha256' and 'urls'")
    unknown = set(f) - USER_FILE_KEYS
    if unknown:
        raise fail(f"unknown keys {sorted(unknown)}; allowed: {sorted(USER_FILE_KEYS)}")
    for key, length in (("sha256", 64), ("md5", 32)):
        if key not in f:
            if key == "sha256":
                raise fail("missing required key 'sha256'")
            continue
        v = f[key]
        if v is None and key == "md5":
            continue  # as in the built-in registry: no md5 known
        if not isinstance(v, str) or len(v) != length or not _HEX.fullmatch(v):
            got = f"{len(v)} characters" if isinstance(v, str) else type(v).__name__
            raise fail(f"{key} must be {length} hexadecimal characters, got {got}")
    urls = f.get("urls")
    if not isinstance(urls, list) or not urls:
        raise fail("'urls' must be a non-empty list of http(s) URLs")
    for u in urls:
        if not isinstance(u, str) or not u.startswith(("http://", "https://")):
            raise fail(f"URL {u!r} is not an http(s) URL")
    size = f.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise fail("'size' must be a non-negative integer number of bytes")
    return _file_spec(fn, {**f, "urls": urls})
