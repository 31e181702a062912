"""Listing a folder of images: its layout (class folders, train/test folders, images/ + masks/
pairs), classes, files and content key, found by listing and stat alone (no file is opened),
and the split rule (``split_key``, ``test_count``). See :mod:`dlsets.sources.folders` for the
layouts.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from stat import S_ISDIR, S_ISREG

import numpy as np

from ..errors import FormatError, OptionError
from ..formats import image as imgread

PathLike = str | os.PathLike
SPLIT_DIRS = {"train": ("train", "training"), "test": ("test", "testing"),
              "val": ("val", "valid", "validation")}
IGNORED = ("__MACOSX",)
MASK_SUFFIXES = ("", "_mask", "-mask", "_masks", "_seg", "_label", "_gt")
MAX_CLASSES = 256  # labels are uint8 throughout dlsets
MAX_DEPTH = 32  # folders below a class folder; deeper ones are listed as skipped


def test_count(n: int, test: float) -> int:
    """How many of a class's ``n`` files go to test: ``floor(n * test + 0.5)``, computed on
    ``test`` as the decimal it prints as (0.1 is one tenth exactly, not the nearest double)."""
    from fractions import Fraction

    return math.floor(n * Fraction(repr(float(test))) + Fraction(1, 2))


def split_key(seed: int, relpath: str) -> str:
    """The hash a file is ranked by for the split: sha256 of ``"<seed>/<relpath>"``."""
    return hashlib.sha256(f"{seed}/{relpath}".encode("utf-8", "surrogateescape")).hexdigest()


# --- the scan: layout, files, content key --------------------------------------------------


@dataclass
class Sample:
    """One sample: its image (and mask), relative paths for reports, label, split, rank."""

    rel: str
    path: str
    label: int
    key: str
    mask_path: str | None = None
    split: str = ""


@dataclass
class Scan:
    """What a folder holds, found by listing and stat alone (no file is opened).

    ``groups`` maps (split, class) to the image paths of that class ("all" is the split when
    the split rule decides; class "" for segmentation pairs, whose masks are in ``masks``)."""

    folder: Path
    root: Path
    descended: str
    layout: str  # "classes" or "segmentation"
    split_from: str  # "folders" or "rule"
    splits: list[str]
    classes: list[str]
    groups: dict[tuple[str, str], list[tuple[str, str]]]  # -> [(path, path below class)]
    masks: dict[str, str]  # image path -> mask path
    skipped: dict[str, str]
    content: str
    files: int = 0
    notes: list[str] = field(default_factory=list)
    cut: int = 0

    def rel(self, path: str) -> str:
        rel = path[self.cut:]
        return rel if os.sep == "/" else rel.replace(os.sep, "/")

    def items(self, seed: int, test: float) -> list[Sample]:
        """Every sample with its split (the split rule for ``split_from == "rule"``), train
        first, then test, then val, each ordered by its split key."""
        index = {c: i for i, c in enumerate(self.classes)}
        out: list[Sample] = []
        for (split, cls), files in self.groups.items():
            label = index.get(cls, 0)
            group = [Sample(self.rel(p), p, label, split_key(seed, f"{cls}/{inner}" if cls
                                                            else inner),
                           self.masks.get(p), split) for p, inner in files]
            if split == "all":
                group.sort(key=lambda i: i.key)
                k = test_count(len(group), test)
                for j, it in enumerate(group):
                    it.split = "test" if j < k else "train"
            out += group
        order = {"train": 0, "test": 1, "val": 2}
        out.sort(key=lambda i: (order[i.split], i.key))
        return out


_name = attrgetter("name")


class _Walker:
    """Recursive listing that follows symbolic links once: a folder reached again (a loop, or
    a second link to it) is listed as skipped, never read twice. Every file found and every
    skip goes into the content key."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._top = str(folder)
        self.cut = len(os.path.join(self._top, ""))
        self.seen: dict[tuple[int, int], str] = {}
        self.skipped: dict[str, str] = {}
        self.paths: list[str] = []
        self.sizes: list[int] = []
        self.mtimes: list[int] = []
        self.notes: list[str] = []

    def rel(self, path: str) -> str:
        """``path`` relative to the folder, "/"-separated (every path here is built by joining
        names onto the folder, so this is a slice, not a ``relpath``: it runs per file)."""
        if path == self._top:
            return "."
        rel = path[self.cut:]
        return rel if os.sep == "/" else rel.replace(os.sep, "/")

    def mark(self, path: str) -> bool:
        """Record folder ``path`` as read; False (and a skip) when it was read already."""
        try:
            st = os.stat(path)
        except OSError:
            return True
        key = (st.st_dev, st.st_ino)
        if key in self.seen:
            self.skip(self.rel(path), f"a link to {self.seen[key]}, which is read already: not "
                      "followed (a symbolic link loop or a duplicate)")
            return False
        self.seen[key] = self.rel(path)
        return True

    def skip(self, rel: str, reason: str) -> None:
        self.skipped[rel] = reason

    def _unreadable(self, e, exc: OSError) -> None:
        if exc.errno == errno.ELOOP:
            why = "a symbolic link loop"
        elif e.is_symlink():
            why = "a broken symbolic link"
        else:
            why = f"cannot be read ({exc.strerror or exc})"
        self.skip(self.rel(e.path), why)

    def _scandir(self, path: str) -> list:
        try:
            with os.scandir(path) as it:
                return sorted(it, key=_name)
        except OSError as exc:
            self.skip(self.rel(path), f"folder cannot be listed ({exc.strerror or exc})")
            return []

    def entries(self, path: str) -> list[tuple[str, str, os.stat_result | None]]:
        """(name, path, stat) of the visible entries of folder ``path``, sorted by name;
        stat is None for entries that cannot be read (listed as skipped)."""
        out = []
        for e in self._scandir(path):
            if e.name.startswith(".") or e.name in IGNORED:
                continue
            try:
                st = e.stat()  # follows symbolic links
            except OSError as exc:
                self._unreadable(e, exc)
                st = None
            out.append((e.name, e.path, st))
        return out

    def files_under(self, path: str, out: list[str] | None = None, depth: int = 0
                    ) -> list[str]:
        """Paths of every regular file below folder ``path``, in sorted order (the hot loop
        of a warm load: one stat per file, nothing else)."""
        out = [] if out is None else out
        if depth > MAX_DEPTH:
            self.skip(self.rel(path), f"nested more than {MAX_DEPTH} folders deep: not read")
            return out
        for e in self._scandir(path):
            name = e.name
            if name[0] == "." or name in IGNORED:
                continue
            try:
                st = e.stat()
            except OSError as exc:
                self._unreadable(e, exc)
                continue
            mode = st.st_mode
            if S_ISREG(mode):
                p = e.path
                out.append(p)
                self.paths.append(p)
                self.sizes.append(st.st_size)
                self.mtimes.append(st.st_mtime_ns)
            elif S_ISDIR(mode):
                if self.mark(e.path):
                    self.files_under(e.path, out, depth + 1)
            else:
                self.skip(self.rel(e.path), "not a regular file")
        return out

    def content_key(self, extra: str) -> str:
        h = hashlib.sha256()
        h.update("\0".join(p[self.cut:] for p in self.paths).encode("utf-8", "surrogateescape"))
        h.update(np.asarray(self.sizes, np.int64).tobytes())
        h.update(np.asarray(self.mtimes, np.int64).tobytes())
        h.update(json.dumps(self.skipped, sort_keys=True).encode("utf-8", "surrogateescape"))
        h.update(extra.encode("utf-8", "surrogateescape"))
        return h.hexdigest()


def _is_dir(st) -> bool:
    return st is not None and S_ISDIR(st.st_mode)


def _looks_like_image(name: str) -> bool:
    dot = name.rfind(".")
    return dot < 0 or name[dot:].lower() not in imgread.NOT_IMAGES


def _extension(name: str) -> str:
    return os.path.splitext(name)[1].lower()


_SPECIAL = {n for names in SPLIT_DIRS.values() for n in names} | {"images", "masks"}


def _descend(w: _Walker, folder: Path) -> tuple[Path, str]:
    """The folder that holds the data: ``folder``, or the one folder inside it (repeatedly)
    when it holds nothing else that could be an image and that folder has subfolders."""
    root, parts = folder, []
    for _ in range(8):
        entries = w.entries(str(root))
        dirs = [(n, p) for n, p, st in entries if _is_dir(st)]
        images = [n for n, _, st in entries if not _is_dir(st) and _looks_like_image(n)]
        if len(dirs) != 1 or images or dirs[0][0].lower() in _SPECIAL:
            break
        name, p = dirs[0]
        if not any(_is_dir(st) for _, _, st in w.entries(p)):
            break
        w.mark(p)
        root, parts = Path(p), [*parts, name]
    w.skipped.clear()  # listed again, for real, by the scan
    return root, "/".join(parts)


def scan(path: PathLike) -> Scan:
    """List ``path`` (following symbolic links once) and find its layout, classes and files;
    raises FormatError (naming the folder) for an empty folder, one class, no class folders."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        if folder.suffix.lower() in (".zip", ".tar", ".gz", ".tgz") and folder.is_file():
            raise OptionError(f"{folder}: an archive, not a folder; unpack it and give the "
                              "folder (for a Kaggle dataset, kaggle:OWNER/DATASET downloads and "
                              "unpacks it for you)")
        shown = f"{path} ({folder.absolute()})" if str(path) != str(folder.absolute()) \
            else str(folder)
        raise OptionError(f"{shown}: " + ("not a folder" if folder.exists() else
                                          "no such folder"))
    folder = folder.resolve()
    w = _Walker(folder)
    w.mark(str(folder))
    root, descended = _descend(w, folder)
    top = {n: p for n, p, st in w.entries(str(root)) if _is_dir(st)}
    lower = {n.lower(): n for n in top}
    split_dirs: dict[str, str] = {}
    for split, names in SPLIT_DIRS.items():
        for n in names:
            if n in lower:
                split_dirs[split] = top[lower[n]]
                break
    if "train" in split_dirs and ("test" in split_dirs or "val" in split_dirs):
        split_from = "folders"
        if "test" not in split_dirs:
            split_dirs["test"] = split_dirs.pop("val")
            w.notes.append(f"no test folder: {w.rel(split_dirs['test'])}/ is the test split")
        used = set(split_dirs.values())
        for _, p, st in w.entries(str(root)):
            if p not in used and st is not None:
                w.skip(w.rel(p), "outside the train/test folders")
        for p in split_dirs.values():
            w.mark(p)
    else:
        split_from = "rule"
        split_dirs = {"all": str(root)}
    kinds = {s: _kind(w, p) for s, p in split_dirs.items()}
    if len(set(kinds.values())) > 1:
        listing = ", ".join(f"{w.rel(split_dirs[s])}: {k}" for s, k in kinds.items())
        raise FormatError(f"{folder}: the split folders are laid out differently ({listing}); "
                          "use class folders everywhere, or images/ + masks/ everywhere")
    layout = next(iter(kinds.values()))
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    masks: dict[str, str] = {}
    classes: list[str] = []
    if layout == "segmentation":
        for s, p in split_dirs.items():
            pairs = _pairs(w, p)
            groups[(s, "")] = [(img, stem) for img, _, stem in pairs]
            masks.update((img, m) for img, m, _ in pairs)
    else:
        for s, p in split_dirs.items():
            for cls, files in _class_files(w, p).items():
                groups[(s, cls)] = files
        classes = sorted({c for _, c in groups})
        if not classes and not w.entries(str(root)):
            raise FormatError(f"{folder}: the folder is empty (names starting with '.' are "
                              "ignored); put the images in class folders: "
                              f"{folder}/<class>/<image>")
        _check_classes(folder, root, classes)
    if not any(groups.values()):
        raise FormatError(f"{folder}: no images found (looked for "
                          + ("images/ with masks/" if layout == "segmentation" else
                             "class folders with images in them") + "); "
                          + (f"{len(w.skipped)} entries skipped: {first_skips(w.skipped)}"
                             if w.skipped else "the folder is empty"))
    splits = ["train", "test"] + (["val"] if "val" in split_dirs else [])
    content = w.content_key(f"{layout}\0{split_from}\0{descended}")
    return Scan(folder, root, descended, layout, split_from, splits, classes, groups, masks,
                dict(w.skipped), content, len(w.paths), w.notes, w.cut)


def first_skips(skipped: dict[str, str], n: int = 3) -> str:
    """The first ``n`` skips as "path: reason; ..." for a message."""
    shown = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:n])
    return shown + ("; ..." if len(skipped) > n else "")


def _kind(w: _Walker, path: str) -> str:
    names = {n.lower() for n, _, st in w.entries(path) if _is_dir(st)}
    return "segmentation" if {"images", "masks"} <= names else "classes"


def _class_files(w: _Walker, path: str) -> dict[str, list[tuple[str, str]]]:
    """class name -> [(image path, path below the class folder)]; files outside class folders
    and files that are certainly not images are listed as skipped."""
    found: dict[str, list[tuple[str, str]]] = {}
    for name, p, st in w.entries(path):
        if st is None:
            continue
        if not _is_dir(st):
            w.skip(w.rel(p), "not in a class folder")
            continue
        if not w.mark(p):
            continue
        cut = len(os.path.join(p, ""))
        files = []
        for f in w.files_under(p):
            if _looks_like_image(f):
                inner = f[cut:]
                files.append((f, inner if os.sep == "/" else inner.replace(os.sep, "/")))
            else:
                w.skip(w.rel(f), f"not an image (extension {_extension(f)})")
        found[name] = files
    return found


def _check_classes(folder: Path, root: Path, classes: list[str]) -> None:
    where = f"{folder}" + (f" (data in {root})" if root != folder else "")
    if not classes:
        loose = any(p.is_file() for p in root.iterdir())
        raise FormatError(
            f"{where}: no class folders" + (" (it holds files but no subfolders)" if loose
                                            else "") + ". Put each class's images in a folder of "
            f"its own ({root}/<class>/<image>), or images/ + masks/ for segmentation pairs"
        )
    if len(classes) == 1:
        raise FormatError(
            f"{where}: only one class folder ({classes[0]!r}); a classifier needs at least two. "
            f"Put each class in its own folder under {root} (or point at the folder above)"
        )
    if len(classes) > MAX_CLASSES:
        raise FormatError(f"{where}: {len(classes)} class folders; dlsets labels are uint8, so "
                          f"at most {MAX_CLASSES} classes")


def _pairs(w: _Walker, path: str) -> list[tuple[str, str, str]]:
    """(image path, mask path, path without extension) of the matched pairs under
    ``path``/images and ``path``/masks; unmatched files are listed as skipped by name."""
    dirs = {n.lower(): p for n, p, st in w.entries(path) if _is_dir(st)}
    for n, p, st in w.entries(path):
        if st is not None and n.lower() not in ("images", "masks"):
            w.skip(w.rel(p), "outside images/ and masks/")

    def listing(d: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        if not w.mark(d):
            return out
        cut = len(os.path.join(d, ""))
        for f in w.files_under(d):
            if not _looks_like_image(f):
                w.skip(w.rel(f), f"not an image (extension {_extension(f)})")
                continue
            stem = os.path.splitext(f[cut:])[0].replace(os.sep, "/")
            out.setdefault(stem, []).append(f)
        return out

    images, masks = listing(dirs["images"]), listing(dirs["masks"])
    used: set[str] = set()
    pairs = []
    for stem, files in images.items():
        if len(files) > 1:
            for f in files:
                w.skip(w.rel(f), f"two images share the name {stem!r}: "
                       + ", ".join(Path(x).name for x in files))
            continue
        hits = [(m, ms[0]) for m in (stem + s for s in MASK_SUFFIXES)
                if (ms := masks.get(m)) and len(ms) == 1]
        if not hits:
            w.skip(w.rel(files[0]), f"no mask for it in {w.rel(dirs['masks'])}/ (looked for "
                   f"{Path(stem).name}.* and {Path(stem).name}_mask.*)")
            continue
        m_stem, m_path = hits[0]
        used.add(m_stem)
        pairs.append((files[0], m_path, stem))
    for stem, files in masks.items():
        if stem not in used:
            for f in files:
                w.skip(w.rel(f), "mask without an image" if len(files) == 1 else
                       f"two masks share the name {stem!r}")
    return pairs

