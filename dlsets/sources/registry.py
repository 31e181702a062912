"""The dataset registry: built-in entries from ``registry.json`` plus user JSON files.

Nothing is read at import time; the built-in file is parsed on first use and user files
(``$DLSETS_REGISTRY`` and :func:`register_file`) are re-read whenever they change.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..common import config, jsontext
from ..errors import OptionError, RegistryError
from ..formats.limits import DEFAULT_MAX_IMAGES
from ..store.regular import NotRegular, TooLarge, read_bounded

USER_ENTRY_KEYS = {"like", "files", "classes", "description", "license", "homepage", "citation",
                   "max_images"}
MAX_IMAGES_CEILING = 1 << 40  # a 'max_images' above this is a typo, not a dataset
USER_FILE_KEYS = {"sha256", "urls", "size", "md5"}
KAGGLE_ENTRY_KEYS = {"kaggle", "like", "subdir", "size", "color", "resize", "test", "seed",
                     "mask_classes", "classes", "description", "license", "homepage", "citation"}
_HEX = re.compile(r"[0-9a-fA-F]+")
MAX_REGISTRY_BYTES = 16 << 20
"""Largest user registry file read (a thousand datasets fit in well under 1 MB)."""
MAX_NAME = 100
"""Longest dataset name; file names may have 150 bytes (room for dlsets' suffixes)."""
MAX_FILE_NAME = 150


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset: what it must hash to and where it can be found."""

    name: str
    sha256: str | None
    md5: str | None
    size: int | None
    urls: tuple[str, ...]


@dataclass(frozen=True)
class VariantSpec:
    """One of several datasets packed in the same files (EMNIST's byclass, letters, ...)."""

    name: str
    classes: tuple[str, ...]
    description: str = ""
    label_offset: int = 0  # subtracted from the labels on disk (EMNIST letters: 1..26)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SplitSpec:
    """A split beyond train and test (SVHN's extra, STL-10's unlabeled). It is prepared and
    returned only when asked for (``load(..., extra=True)``); ``files`` are the extra files it
    needs beyond the dataset's file set, fetched only then."""

    name: str
    labelled: bool = True
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its files, and the facts loaders and users need about it.

    ``file_sets`` lists alternative complete sets of files (MNIST as four IDX files or keras'
    ``mnist.npz``; CIFAR as the binary or the python archive); the first is what gets downloaded.
    ``format`` names the file layout the loaders parse (``idx``, ``cifar10``, ``cifar100``,
    ``notmnist``, ``emnist``, ``svhn``, ``stl10``); a user entry inherits it from the built-in
    named by ``like``, with its ``variants`` and ``extra_splits``.
    ``max_images`` bounds the images per split that its readers accept (see dlsets.limits).
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
    variants: dict[str, VariantSpec] = field(default_factory=dict)
    default_variant: str | None = None
    extra_splits: dict[str, SplitSpec] = field(default_factory=dict)
    max_images: int = DEFAULT_MAX_IMAGES
    # published per-channel mean and std of the train split in [0, 1] units, if known
    stats: dict[str, list[float]] | None = None

    def default_files(self) -> list[str]:
        """Names of the files fetched when no selection is given: the first file set."""
        return list(self.file_sets[0])

    def optional_files(self) -> set[str]:
        """Files only the extra splits need (never part of a file set)."""
        return {f for s in self.extra_splits.values() for f in s.files}

    # readable in a REPL and a notebook (what dlsets.describe(name) shows), not a raw dataclass
    def __repr__(self) -> str:
        from ..common.display import spec_text

        return spec_text(self)

    def _repr_html_(self) -> str:
        from ..common.display import spec_html

        return spec_html(self)


log = logging.getLogger("dlsets")

_user_files: list[Path] = []


def register_file(path: str | os.PathLike) -> list[str]:
    """Add a user registry JSON file; returns the dataset names it defines."""
    if "\0" in os.fspath(path):
        raise RegistryError(f"registry file name {os.fspath(path)!r} contains a NUL character")
    p = _resolve(path)
    entries = _parse_user_file(p)  # validate now, so a bad file fails where it is registered
    _check_conflicts(_builtin(), {p: entries})
    if p not in _user_files:
        _user_files.append(p)
    return sorted(entries)


def _resolve(path: str | os.PathLike) -> Path:
    """The absolute path of a registry file; a symlink loop is a RegistryError (resolve raises
    RuntimeError for one)."""
    try:
        return Path(path).expanduser().resolve()
    except (RuntimeError, OSError) as exc:
        raise RegistryError(f"registry file {os.fspath(path)} cannot be found: its path is a "
                            f"symlink loop or unreadable ({exc}); point DLSETS_REGISTRY or "
                            "register_file at the JSON file itself") from None


def names() -> list[str]:
    """All dataset names, built-in first, then user entries (a broken user registry file
    leaves the built-ins listed, and says so at warning level)."""
    return list(_all_or_builtin())


def get(name: str) -> DatasetSpec:
    """The spec of dataset ``name``; unknown names fail with the list of known ones. A broken
    user registry file fails the lookup of user entries only: built-ins still work."""
    datasets = _all_or_builtin() if name in _builtin() else _all()
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


_warned: set[str] = set()


def _all_or_builtin() -> dict[str, DatasetSpec]:
    """:func:`_all`, or the built-ins alone when a user registry file is broken."""
    try:
        return _all()
    except RegistryError as exc:
        if str(exc) not in _warned:  # once per process and problem, not on every lookup
            _warned.add(str(exc))
            log.warning("%s (built-in datasets still work; user entries do not until that is "
                        "fixed)", exc)
        return dict(_builtin())


def _all() -> dict[str, DatasetSpec]:
    builtin = _builtin()
    paths = list(dict.fromkeys([*(_resolve(p) for p in config.registry_paths()), *_user_files]))
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
            extra={k: v for k, v in e.items() if k not in _BUILTIN_KEYS},
            variants={v: _variant(v, ve) for v, ve in e.get("variants", {}).items()},
            default_variant=e.get("default_variant"),
            extra_splits={n: SplitSpec(n, bool(se.get("labelled", True)),
                                       tuple(se.get("files", ())))
                          for n, se in e.get("extra_splits", {}).items()},
            max_images=e.get("max_images", DEFAULT_MAX_IMAGES),
            stats=e.get("stats"),
        )
    return out


_BUILTIN_KEYS = {"format", "title", "description", "image_shape", "classes", "coarse_classes",
                 "homepage", "license", "citation", "files", "file_sets", "variants",
                 "default_variant", "extra_splits"}


def _variant(name: str, e: dict) -> VariantSpec:
    return VariantSpec(name=name, classes=tuple(e["classes"]), description=e.get("description", ""),
                       label_offset=int(e.get("label_offset", 0)), counts=dict(e.get("counts", {})))


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
        # Python 3.13's resolve() no longer raises on a loop: stat meets it here
        loop = " (a symlink loop)" if exc.errno == errno.ELOOP else ""
        raise RegistryError(f"registry file {path} cannot be read: {exc.strerror}{loop}"
                            ) from None
    hit = _parsed.get(path)
    if hit and hit[:2] == (st.st_mtime_ns, st.st_size):
        return hit[2]
    if st.st_size > MAX_REGISTRY_BYTES:
        raise RegistryError(f"registry file {path} has {st.st_size:,} bytes; a registry may "
                            f"have at most {MAX_REGISTRY_BYTES:,}")
    try:
        data = jsontext.loads(read_bounded(path, MAX_REGISTRY_BYTES).decode("utf-8"))
    except NotRegular:
        raise RegistryError(f"registry file {path} is not a regular file (a FIFO, device, "
                            "socket or folder); point DLSETS_REGISTRY or register_file at a "
                            "JSON file") from None
    except TooLarge:
        raise RegistryError(f"registry file {path} is larger than {MAX_REGISTRY_BYTES:,} "
                            "bytes") from None
    except jsontext.TooDeep:
        raise RegistryError(f"registry file {path} is nested too deeply to be a registry "
                            "(entries need three levels)") from None
    except OSError as exc:
        raise RegistryError(f"registry file {path} cannot be read: {exc.strerror or exc}"
                            ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
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
    if len(name) > MAX_NAME:
        raise fail(f"a dataset name may have at most {MAX_NAME} characters")
    if not isinstance(e, dict):
        raise fail("expected an object with 'like' and 'files'")
    if "kaggle" in e:
        return _kaggle_entry(path, name, e, fail)
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
    max_images = e.get("max_images", base.max_images)
    if (isinstance(max_images, bool) or not isinstance(max_images, int)
            or not 1 <= max_images <= MAX_IMAGES_CEILING):
        raise fail(f"'max_images' must be an integer from 1 to {MAX_IMAGES_CEILING:,} (the most "
                   f"images per split its files may hold), got {max_images!r}")
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
        extra=base.extra,
        variants=base.variants,
        default_variant=base.default_variant,
        # an extra split is there when the entry lists the files it needs
        extra_splits={n: s for n, s in base.extra_splits.items() if set(s.files) <= set(files)},
        max_images=max_images,
    )


def _kaggle_entry(path: Path, name: str, e: dict, fail) -> DatasetSpec:
    """A user entry for a Kaggle dataset: ``{"kaggle": "OWNER/DATASET[/versions/N]"}``, loaded
    as an image folder (``subdir``, ``size``, ``color``, ``resize``, ``test``, ``seed``,
    ``mask_classes``) or, with ``like``, in a built-in dataset's file layout."""
    unknown = set(e) - KAGGLE_ENTRY_KEYS
    if unknown:
        raise fail(f"unknown keys {sorted(unknown)} for a Kaggle entry; allowed: "
                   f"{sorted(KAGGLE_ENTRY_KEYS)}")
    ref = e["kaggle"]
    if not isinstance(ref, str) or not re.fullmatch(
            r"(competitions/[\w.-]+|[\w.-]+/[\w.-]+(/versions/\d+)?)", ref):
        raise fail(f"'kaggle' is {ref!r}: give 'OWNER/DATASET', 'OWNER/DATASET/versions/N' or "
                   "'competitions/NAME'")
    from .kaggle_ref import parse_ref

    try:  # its parts become folders of the cache: '..' and over-long parts are refused
        parse_ref(ref)
    except OptionError as exc:
        raise fail(f"'kaggle': {exc}") from None
    builtin = _builtin()
    like = e.get("like")
    if like is not None and like not in builtin:
        raise fail(f"'like' is {like!r}, not a built-in dataset; use one of {list(builtin)}")
    size = e.get("size")
    if size is not None and not (isinstance(size, list) and len(size) == 2
                                 and all(isinstance(v, int) and v > 0 for v in size)):
        raise fail("'size' must be [height, width] in pixels")
    for key in ("subdir", "color", "resize", "description", "license", "homepage", "citation"):
        if key in e and not isinstance(e[key], str):
            raise fail(f"{key!r} must be a string")
    classes = e.get("classes")
    if classes is not None and (not isinstance(classes, list)
                                or not all(isinstance(c, str) for c in classes)):
        raise fail("'classes' must be a list of names")
    base = builtin[like] if like else None
    options = {k: e[k] for k in ("subdir", "color", "resize", "test", "seed", "mask_classes")
               if k in e}
    if size is not None:
        options["size"] = tuple(size)
    return DatasetSpec(
        name=name,
        like=like or "",
        format="kaggle",
        files={},
        file_sets=((),),
        image_shape=tuple(size) if size else (base.image_shape if base else ()),
        classes=tuple(classes) if classes else (base.classes if base else ()),
        coarse_classes=base.coarse_classes if base else (),
        title=name,
        description=e.get("description", ""),
        license=e.get("license", ""),
        homepage=e.get("homepage", f"https://www.kaggle.com/{_kaggle_page(ref)}"),
        citation=e.get("citation", ""),
        builtin=False,
        source=str(path),
        extra={"kaggle": ref, "like": like, "options": options},
    )


def _kaggle_page(ref: str) -> str:
    if ref.startswith("competitions/"):
        return ref
    return "datasets/" + "/".join(ref.split("/")[:2])


def _user_file_sets(base: DatasetSpec, files: dict[str, FileSpec]) -> tuple[tuple[str, ...], ...]:
    """The ``like`` dataset's alternative file sets that the user's files cover, when they
    account for every file listed (a CIFAR entry may list both archives: either one will do);
    otherwise one set of all the files. Files of the ``like`` dataset's extra splits (SVHN's
    extra_32x32.mat) stay out of the sets: they are fetched only when that split is asked for."""
    optional = base.optional_files()
    core = [f for f in files if f not in optional]
    sets = tuple(fs for fs in base.file_sets if set(fs) <= set(core))
    if sets and set().union(*sets) == set(core):
        return sets
    return (tuple(core),)


def _user_file(where: str, fn: str, f: Any) -> FileSpec:
    def fail(msg: str) -> RegistryError:
        return RegistryError(f"{where}, file {fn!r}: {msg}")

    if "/" in fn or "\\" in fn or fn in ("", ".", ".."):
        raise fail("a file name may not contain a path")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in fn):
        raise fail("a file name may not contain control characters (NUL, newline, ...)")
    if fn.startswith("."):
        raise fail("a file name may not start with '.' (hidden names are dlsets' temporaries)")
    if len(fn.encode("utf-8", "surrogatepass")) > MAX_FILE_NAME:
        raise fail(f"a file name may have at most {MAX_FILE_NAME} bytes")
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
        why = config.url_problem(u)
        if why:
            raise fail(f"URL {u!r} {why}")
        if len(u) > 4096 or any(ord(ch) <= 32 or ord(ch) == 127 for ch in u):
            raise fail(f"URL {u[:80]!r} has spaces or control characters, or is over 4096 "
                       "characters long (percent-encode what it needs)")
    size = f.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise fail("'size' must be a non-negative integer number of bytes")
    if size is not None and size > config.MAX_FILE_SIZE:
        raise fail(f"'size' is {size:,} bytes; dlsets accepts files of at most "
                   f"{config.MAX_FILE_SIZE:,} bytes (16 TiB)")
    return _file_spec(fn, {**f, "urls": urls})
