"""Folders of images as dlsets datasets: ``load_folder(path, size=(H, W))``.

Layouts (the ones ``torchvision.datasets.ImageFolder`` and Keras' ``image_dataset_from_directory``
read, plus segmentation pairs):

- ``root/<class>/<image>`` (images may sit in subfolders of their class folder);
- ``root/train/<class>/...`` with ``root/test/...`` and/or ``root/val/...`` (``training``,
  ``testing``, ``valid``, ``validation`` too); without ``test/``, ``val/`` is the test split;
- ``root/images/`` + ``root/masks/`` (or the same under ``train/``, ``test/``): pairs matched
  by their path without extension (``masks/a/b.png`` for ``images/a/b.jpg``; the mask's name
  may add ``_mask``, ``-mask``, ``_masks``, ``_seg``, ``_label`` or ``_gt``).

A root holding nothing but one folder that has subfolders (a Kaggle zip's wrapper folder) is
descended into. Names starting with "." and ``__MACOSX`` folders are ignored.

Split rule, when the folder has no train/test folders: within each class, files are ranked by
``sha256("<seed>/<class>/<path below the class folder>")`` and the ``floor(n * test + 0.5)``
lowest go to test (``test=0.1``: one in ten, as notMNIST). Segmentation pairs are ranked by
``sha256("<seed>/<path without extension>")`` over all pairs. The rule sees every file,
readable or not, so a file a decoder rejects moves no other file across the split; each split
is ordered by the same hash, which mixes the classes.

The decoded arrays are prepared once into the cache (``<cache>/_folders/<name>-<hash of the
path>/<options>/``, see :mod:`dlsets.prepared`), tagged with the folder's *content key*: the
sha256 of every file's relative path, size and modification time (nanoseconds) and of what was
skipped. A load lists and stats the folder (no file is read) and rebuilds when the key differs.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from stat import S_ISDIR, S_ISREG
from typing import Any

import numpy as np

from ..common import config
from ..data.dataset import Dataset, Split
from ..errors import DlsetsError, FormatError, OptionError
from ..formats import image as imgread
from ..store import prepared, space
from ..store import scratch as scratch_file
from . import decode_pool

log = logging.getLogger("dlsets")

PathLike = str | os.PathLike
FOLDERS_DIR = "_folders"
VERSION = 1  # bump when what goes into a folder's prepared arrays changes
SPLIT_DIRS = {"train": ("train", "training"), "test": ("test", "testing"),
              "val": ("val", "valid", "validation")}
IGNORED = ("__MACOSX",)
MASK_SUFFIXES = ("", "_mask", "-mask", "_masks", "_seg", "_label", "_gt")
MAX_CLASSES = 256  # labels are uint8 throughout dlsets
MAX_SIDE = 4096
MAX_DEPTH = 32  # folders below a class folder; deeper ones are listed as skipped
INLINE = 48  # fewer files than this are decoded in this process: no pool to start
FAST_FROM = 500  # from this many files, importing OpenCV (0.1 s) for the PNG fast path pays
MEMORY_LIMIT = 1 << 30  # bigger results are assembled in a scratch file, not in memory


class SizesDiffer(OptionError):
    """The images of a folder loaded at their own size (size=None) differ in size."""


# --- options -------------------------------------------------------------------------------


def _size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (size, size)
    ok = (isinstance(size, (tuple, list)) and len(size) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size)
          and all(1 <= v <= MAX_SIDE for v in size))
    if not ok:
        raise OptionError(f"size={size!r} is not allowed: give (height, width) in pixels, each "
                          f"1..{MAX_SIDE}, or None to keep the images' own (common) size")
    return int(size[0]), int(size[1])


def _color(color: str) -> str:
    if color == "greyscale":
        return "grayscale"
    if color not in imgread.COLORS:
        raise OptionError(f"color={color!r} is not allowed; use 'rgb' or 'grayscale'")
    return color


def _fraction(test) -> float:
    if isinstance(test, bool) or not isinstance(test, (int, float)) or not 0 <= test < 1:
        raise OptionError(f"test={test!r} is not allowed: give the fraction of each class that "
                          "goes to the test split, 0 <= test < 1 (default 0.1)")
    return float(test)


def _mask_classes(mask_classes) -> tuple[str, ...] | None:
    if mask_classes is None:
        return None
    if isinstance(mask_classes, (int, np.integer)) and not isinstance(mask_classes, bool):
        if not 2 <= mask_classes <= MAX_CLASSES:
            raise OptionError(f"mask_classes={mask_classes!r}: give 2..{MAX_CLASSES} classes")
        return tuple(str(k) for k in range(int(mask_classes)))
    if (isinstance(mask_classes, (list, tuple)) and 2 <= len(mask_classes) <= MAX_CLASSES
            and all(isinstance(c, str) for c in mask_classes)):
        return tuple(mask_classes)
    raise OptionError(f"mask_classes={mask_classes!r} is not allowed: give the number of mask "
                      f"classes (2..{MAX_CLASSES}) or their names")


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
class _Item:
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

    def items(self, seed: int, test: float) -> list[_Item]:
        """Every sample with its split (the split rule for ``split_from == "rule"``), train
        first, then test, then val, each ordered by its split key."""
        index = {c: i for i, c in enumerate(self.classes)}
        out: list[_Item] = []
        for (split, cls), files in self.groups.items():
            label = index.get(cls, 0)
            group = [_Item(self.rel(p), p, label, split_key(seed, f"{cls}/{inner}" if cls
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
                          + (f"{len(w.skipped)} entries skipped: {_first(w.skipped)}"
                             if w.skipped else "the folder is empty"))
    splits = ["train", "test"] + (["val"] if "val" in split_dirs else [])
    content = w.content_key(f"{layout}\0{split_from}\0{descended}")
    return Scan(folder, root, descended, layout, split_from, splits, classes, groups, masks,
                dict(w.skipped), content, len(w.paths), w.notes, w.cut)


def _first(skipped: dict[str, str], n: int = 3) -> str:
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


# --- decoding on all cores ---------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    target: imgread.Target
    mask_limit: int | None  # values allowed in masks: 0..limit-1; None: any
    fast: bool = False  # plain PNGs through OpenCV (imported before the workers fork)


def _decode_chunk(args) -> tuple[list[int], np.ndarray, np.ndarray | None, list, np.ndarray]:
    """Decode rows of one chunk; returns (rows decoded, images, masks, skips, mask values
    present (256,) counts)."""
    job, chunk = args
    rows, pixels, masks, skips = [], [], [], []
    present = np.zeros(256, np.int64)
    memory = decode_pool.budget()
    for row, path, mask_path in chunk:
        if mask_path is None:
            got = imgread.decode_image(path, job.target, fast=job.fast, memory=memory)
        else:
            got = imgread.decode_pair(path, mask_path, job.target, memory=memory)
        if isinstance(got, imgread.Skip):
            skips.append((row, got.kind, got.reason))
            continue
        if mask_path is not None:
            px, m = got
            values = np.bincount(m.ravel(), minlength=256) > 0
            if job.mask_limit is not None:
                if job.mask_limit == 2 and not values[2:255].any() and not values[1]:
                    m = (m == 255).astype(np.uint8)  # a black-and-white binary mask
                    values = np.bincount(m.ravel(), minlength=256) > 0
                bad = np.flatnonzero(values[job.mask_limit:]) + job.mask_limit
                if len(bad):
                    skips.append((row, "mask", f"mask values {_values(bad)} are outside the "
                                  f"{job.mask_limit} classes (0..{job.mask_limit - 1})"))
                    continue
            present += values
            masks.append(m)
            got = px
        rows.append(row)
        pixels.append(got)
    shape = job.target.shape
    px_arr = np.stack(pixels) if pixels else np.zeros((0, *shape), np.uint8)
    m_arr = np.stack(masks) if masks else None
    return rows, px_arr, m_arr, skips, present


def _values(v: np.ndarray) -> str:
    shown = ", ".join(str(int(x)) for x in v[:8])
    return shown + (", ..." if len(v) > 8 else "")


def default_workers() -> int:
    """Decoding processes: the cores this process may run on, as many as the decoding memory
    budget has room for (see :mod:`dlsets.decode_pool`)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = max(1, os.cpu_count() or 1)
    return decode_pool.cap_workers(cores)


def _chunks(tasks: list, workers: int) -> list[list]:
    size = max(8, min(256, len(tasks) // max(1, workers * 32)))  # short tail, cheap IPC
    return [tasks[i:i + size] for i in range(0, len(tasks), size)]


def _decode_all(tasks: list, job: _Job, workers: int, on_done):
    """Yield _decode_chunk results for ``tasks`` (row, path, mask path), in any order:
    in this process for a few files, else on ``workers`` processes (:mod:`dlsets.decode_pool`:
    workers that die with this process, a memory budget for big images)."""
    if not job.fast and (len(tasks) >= FAST_FROM or "cv2" in sys.modules):
        try:
            import cv2

            job = _Job(job.target, job.mask_limit, True)
            # imported here, so forked workers have it. They call cv2.imdecode only: after a
            # fork, OpenCV's thread pool (started by the parent's own use) hangs whatever
            # touches it (setNumThreads, or cvtColor on a big image)
            del cv2
        except ImportError:
            pass
    if len(tasks) < INLINE:
        workers = 1
    yield from decode_pool.run(_decode_chunk, job, _chunks(tasks, workers), workers, on_done,
                               _chunk_names)


def _chunk_names(chunks) -> str:
    chunks = list(chunks)
    first, last = chunks[0][0][1], chunks[-1][-1][1]
    return first if first == last else f"{first} .. {last}"


# --- load_folder ---------------------------------------------------------------------------


def folder_slot(path: PathLike, cache_dir: PathLike | None = None) -> Path:
    """``<cache>/_folders/<name>-<12 hex of sha256(absolute path)>``: where the prepared
    copies of the folder at ``path`` live (one subfolder per set of options)."""
    p = Path(path).expanduser().resolve()
    digest = hashlib.sha256(str(p).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in p.name)[:40] or "root"
    return config.cache_root(cache_dir) / FOLDERS_DIR / f"{name}-{digest}"


def _options(size, color, resize, test, seed, mask_classes, palette=None) -> dict:
    opts = {"size": list(size) if size else None, "color": color, "resize": resize,
            "test": test, "seed": seed, "mask_classes": list(mask_classes or []) or None,
            "version": VERSION}
    if palette:  # only then: copies made without one keep their key
        opts["mask_palette"] = [list(p) for p in palette]
    return opts


def _variant(opts: dict) -> str:
    digest = hashlib.sha256(json.dumps(opts, sort_keys=True).encode()).hexdigest()[:10]
    size = "x".join(map(str, opts["size"])) if opts["size"] else "native"
    return f"{size}-{opts['color']}-{opts['resize']}-{digest}"


def load_folder(
    path: PathLike,
    size: tuple[int, int] | int | None = None,
    *,
    color: str = "rgb",
    resize: str = "stretch",
    test: float = 0.1,
    seed: int = 0,
    mask_classes: int | Sequence[str] | None = None,
    mask_palette: Mapping | None = None,
    subdir: str | None = None,
    dtype: str = "uint8",
    channels: str | None = None,
    cache_dir: PathLike | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    download: bool = True,
    val: float | int | None = None,
    val_seed: int = 0,
) -> Dataset:
    """Load a folder of images (or a Kaggle dataset, ``"kaggle:OWNER/DATASET[/versions/N]"``)
    as a :class:`Dataset`, the same as the built-ins return.

    Images: uint8 (N, H, W, 3) for ``color="rgb"``, (N, H, W) for ``"grayscale"`` (``channels=``
    and ``dtype=`` as for :func:`dlsets.load`); ``size=(H, W)`` resizes every image the way
    ``resize`` says: ``"stretch"`` (ignore the aspect ratio, as Keras and torchvision's
    ``Resize((H, W))``), ``"crop"`` (scale to cover, centre crop) or ``"pad"`` (scale to fit,
    centre on black); ``size=None`` keeps the images' size, which must then be common to all.
    Labels (N,) uint8, the index of the class folder in ``classes`` (sorted names).
    Segmentation folders (images/ + masks/) give ``Split.masks`` (N, H, W) uint8 class maps,
    resized by nearest neighbour; ``mask_classes`` (a count or names) makes values outside
    them a skip; without it the classes are 0..max value, and masks holding only 0 and 255
    are read as binary 0/1. Labels are then all 0 and ``classes`` names the mask values.
    Colour-coded masks (CamVid, Cityscapes) take ``mask_palette``, a mapping of colours
    (``(r, g, b)``, ``"#rrggbb"`` or ``"r,g,b"``) to class indices; a mask holding a colour
    not in it is skipped, the reason naming the colour.

    Without train/test folders, ``test`` (a fraction) and ``seed`` drive the split rule
    described in :mod:`dlsets.folders`. ``ds.info["skipped"]`` lists every file not used
    (relative path), ``ds.info["skip_reasons"]`` says why (not an image, corrupt, unsupported
    mode, too large, no mask, ...). ``subdir`` points inside the folder (or Kaggle dataset).
    The first load decodes on ``workers`` processes (default: all cores; big images share a
    memory budget, see :mod:`dlsets.decode_pool`) with a progress bar; later loads
    memory-map the prepared copy (milliseconds) until the folder changes.
    ``val``/``val_seed`` carve a validation split from train as :func:`dlsets.load` does
    (a folder with its own ``val/`` has one already).
    """
    from .layout import CHANNELS, DTYPES
    from .layout import check_option as _check

    if val is not None:
        from ..data.splits import check_val

        check_val(val)

    _check("dtype", dtype, DTYPES)
    _check("channels", channels, CHANNELS)
    size = _size(size)
    color = _color(color)
    if resize not in imgread.RESIZE_MODES:
        raise OptionError(f"resize={resize!r} is not allowed; use one of "
                          f"{list(imgread.RESIZE_MODES)}")
    test = _fraction(test)
    from ..augment import params

    seed = params.check_seed(seed)
    names = _mask_classes(mask_classes)
    from ..formats import palette as _palette

    colours = _palette.check(mask_palette)
    if workers is None:
        workers = default_workers()
    elif isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise OptionError(f"workers={workers!r} is not allowed: give an integer >= 1")
    name = str(path)
    if name.startswith("kaggle:"):
        from . import kaggle_fetch as kaggle

        root, slot = kaggle.fetch_folder(name, cache_dir=cache_dir, progress=progress,
                                         download=download)
    else:
        root = Path(path).expanduser()
        slot = None
        name = root.resolve().name or str(root)
    if subdir:
        inner = (Path(root) / subdir).resolve()
        if Path(root).resolve() not in (inner, *inner.parents):
            raise OptionError(f"subdir={subdir!r} points outside {root}")
        root = inner
    if slot is None:
        slot = folder_slot(root, cache_dir)
    ds = _load(name, root, slot, size=size, color=color, resize=resize, test=test,
               seed=seed, names=names, dtype=dtype, channels=channels, workers=workers,
               progress=progress, cache_dir=cache_dir, shown=str(path), palette=colours)
    if val is None:
        return ds
    from ..data.splits import with_validation

    return with_validation(ds, val, seed=params.check_seed(val_seed))


def _load(name, root, slot: Path, *, size, color, resize, test, seed, names, dtype, channels,
          workers, progress, cache_dir, shown: str, palette=None) -> Dataset:
    sc = scan(root)
    opts = _options(size, color, resize, test, seed, names, palette)
    folder = slot / _variant(opts)
    got = _usable(folder, sc, opts)
    if got is not None and got[1].get("skipped"):
        # the cold load listed them; a warm one says they are still missing, and where to look
        n = len(got[1]["skipped"])
        log.warning("%s: %d file%s skipped (`dlsets info %s%s` lists them)", name, n,
                    "s" if n != 1 else "", shlex.quote(shown), _size_flag(opts))
    if got is None:
        from ..store import locks

        try:
            # one process decodes; the others wait here and then find its copy (or, after a
            # `dlsets remove` of it, nothing: locks.take makes the folder again)
            with locks.holding(slot / f"{folder.name}.lock", name, doing="preparing it"):
                if not Path(root).is_dir():
                    raise DlsetsError(f"{name}: {root} was removed by another process while "
                                      "this load waited for it; load it again")
                got = _usable(folder, sc, opts, quiet=True)
                if got is None:
                    got = _build(name, sc, folder, opts, names, workers, progress)
        except OSError as exc:
            raise DlsetsError(
                f"the dlsets cache at {config.cache_root(cache_dir)} cannot be used: "
                f"{exc.strerror or exc} ({exc.filename or folder}). Point --cache-dir or "
                "DLSETS_CACHE at a folder you can write to, or free some space."
            ) from exc
    arrays, manifest = got
    return _dataset(name, arrays, manifest, folder, dtype, channels)


def _size_flag(opts: dict) -> str:
    return f" --size {opts['size'][0]} {opts['size'][1]}" if opts["size"] else ""


def _usable(folder: Path, sc: Scan, opts: dict, quiet: bool = False):
    manifest = prepared.read_manifest(folder)
    if manifest is None:
        return None
    if manifest.get("content") != sc.content or manifest.get("options") != opts:
        log.log(logging.DEBUG if quiet else logging.INFO,
                "%s changed since it was prepared; preparing it again", sc.folder)
        return None
    arrays = prepared.open_arrays(folder, manifest, quiet=quiet)
    if arrays is None or prepared.read_manifest(folder) != manifest:
        return None
    return arrays, manifest


def _build(name: str, sc: Scan, folder: Path, opts: dict, names, workers: int, progress):
    from ..common.progress import bar

    size = tuple(opts["size"]) if opts["size"] else None
    exact = None
    if size is None:
        exact = _common_size(sc, sc.items(opts["seed"], opts["test"]))
    colours = opts.get("mask_palette")
    target = imgread.Target(size, opts["color"], opts["resize"], exact,
                            tuple(map(tuple, colours)) if colours else None)
    seg = sc.layout == "segmentation"
    job = _Job(target, len(names) if names else None)
    items = sc.items(opts["seed"], opts["test"])
    n = len(items)
    shape = target.shape
    nbytes = n * int(np.prod(shape)) + (n * shape[0] * shape[1] if seg else 0)
    scratch: list[Path] = []
    # under the lock, scratch files of this variant are leftovers of killed processes
    for leftover in folder.parent.glob(f"{folder.name}.*.scratch"):
        leftover.unlink(missing_ok=True)
    # the prepared copy, and the scratch file it is written from when it is big
    space.need_disk(folder.parent, nbytes * (2 if nbytes > MEMORY_LIMIT else 1),
                    f"{name}: preparing {n:,} images of {'x'.join(map(str, shape))}",
                    " or give a smaller size= (--size)")
    try:
        images = _buffer(folder, (n, *shape), nbytes, scratch)
        masks = _buffer(folder, (n, *shape[:2]), nbytes, scratch) if seg else None
        ok = np.zeros(n, bool)
        present = np.zeros(256, np.int64)
        skips: dict[int, tuple[str, str]] = {}
        tasks = [(i, it.path, it.mask_path) for i, it in enumerate(items)]
        log.info("%s: decoding %d images on %d %s", name, n, workers,
                 "process" if workers == 1 else "processes")
        with bar(n, f"{name}: decoding", progress=progress, unit="img") as pbar:
            for rows, px, m, sk, pres in _decode_all(tasks, job, workers, pbar.update):
                if rows:
                    # a chunk is a run of rows: a slice when none was skipped
                    idx = (slice(rows[0], rows[-1] + 1) if rows[-1] - rows[0] + 1 == len(rows)
                           else np.asarray(rows))
                    images[idx] = px
                    if masks is not None:
                        masks[idx] = m
                    ok[idx] = True
                present += pres
                for row, kind, reason in sk:
                    skips[row] = (kind, reason)
        arrays, manifest = _assemble(name, sc, items, opts, images, masks, ok, skips, present,
                                     names, target)
        manifest = prepared.write(folder, arrays, manifest)
    finally:
        for p in scratch:
            p.unlink(missing_ok=True)
    log.info("%s: prepared arrays written to %s", name, folder)
    opened = prepared.open_arrays(folder, manifest)
    if opened is None:
        raise FormatError(f"{name}: the prepared arrays in {folder} could not be read back right "
                          "after writing them; check the disk (space, permissions) and try again")
    return opened, manifest


def _buffer(folder: Path, shape: tuple, nbytes: float, scratch: list) -> np.ndarray:
    """Room for the decoded pixels: memory, or a scratch file beside the prepared folder when
    they are big (the prepared files are then written from its pages)."""
    if nbytes <= MEMORY_LIMIT:
        return np.empty(shape, np.uint8)  # rows of skipped files are compacted away
    p = folder.with_name(f"{folder.name}.{os.getpid()}-{len(scratch)}.scratch")
    scratch.append(p)
    return scratch_file.array(p, shape, f"{folder.parent.name}: decoding")


def _common_size(sc: Scan, items: list[_Item]) -> tuple[int, int]:
    for it in items:
        got = imgread.probe_size(it.path)
        if got is not None:
            return got
    raise FormatError(f"{sc.folder}: none of its {len(items)} images can be read")


def _compact(a: np.ndarray, keep: np.ndarray, start: int, stop: int) -> int:
    """Move the kept rows of a[start:stop] down to a[start:], in place; returns their count."""
    idx = np.flatnonzero(keep[start:stop]) + start
    step = max(1, (64 << 20) // max(1, a[0].nbytes if len(a) else 1))  # 64 MB at a time
    for j in range(0, len(idx), step):
        part = idx[j:j + step]
        if part[0] != start + j or part[-1] != start + j + len(part) - 1:
            a[start + j:start + j + len(part)] = a[part]
    return len(idx)


def _assemble(name, sc: Scan, items, opts, images, masks, ok, skips, present, names, target):
    skipped = dict(sc.skipped)
    size_mismatch = [(items[r].rel, reason) for r, (kind, reason) in skips.items()
                     if kind == "size"]
    if size_mismatch:
        raise SizesDiffer(f"{sc.folder}: the images differ in size: "
                          f"{_sizes_found(size_mismatch, target, int(ok.sum()))}. Give "
                          "size=(H, W) (CLI: --size H W) to resize them all to one size; "
                          f"`dlsets info {shlex.quote(str(sc.folder))}` lists the sizes found")
    for r, (_, reason) in sorted(skips.items()):
        skipped[items[r].rel] = reason
    skipped = dict(sorted(skipped.items()))
    labels_all = np.fromiter((it.label for it in items), np.uint8, len(items))
    if sc.layout == "classes":
        have = np.bincount(labels_all[ok], minlength=len(sc.classes))
        empty = [c for c, k in zip(sc.classes, have, strict=True) if k == 0]
        if empty:
            why = [f"{rel}: {r}" for rel, r in skipped.items()
                   if any(f"/{c}/" in f"/{rel}" for c in empty)]
            raise FormatError(
                f"{sc.folder}: class folder(s) {', '.join(map(repr, empty))} hold no readable "
                "image" + (f" ({'; '.join(why[:5])}{' ...' if len(why) > 5 else ''})" if why
                           else "") + ". Add images, or remove the folder")
        classes = list(sc.classes)
    else:
        if not ok.any():
            raise FormatError(f"{sc.folder}: no image/mask pair could be read: {_first(skipped)}")
        top = int(np.flatnonzero(present).max()) if present.any() else 0
        if names is None and present.any() and set(np.flatnonzero(present)) <= {0, 255}:
            np.minimum(masks, 1, out=masks)  # black-and-white masks: binary classes 0/1
            top = 1 if present[255] else 0
        classes = list(names) if names is not None else [str(k) for k in range(max(2, top + 1))]
    arrays: dict[str, np.ndarray] = {}
    counts = {}
    start = 0
    bounds = {}
    for s in sc.splits:
        stop = start + sum(1 for it in items if it.split == s)
        bounds[s] = (start, stop)
        start = stop
    for s in sc.splits:
        a, b = bounds[s]
        kept = _compact(images, ok, a, b)
        arrays[f"{s}_images"] = images[a:a + kept]
        if masks is not None:
            _compact(masks, ok, a, b)
            arrays[f"{s}_masks"] = masks[a:a + kept]
        y = labels_all[a:b][ok[a:b]]
        arrays[f"{s}_labels"] = np.ascontiguousarray(y)
        counts[s] = np.bincount(y, minlength=len(classes) if sc.layout == "classes"
                                else 1).tolist()
    from PIL import __version__ as pil_version

    rule = ("from the folders" if sc.split_from == "folders" else
            f"per class, lowest sha256('{opts['seed']}/<class>/<file>') floor(n*{opts['test']}"
            "+0.5) to test" if sc.layout == "classes" else
            f"lowest sha256('{opts['seed']}/<path without extension>') floor(n*{opts['test']}"
            "+0.5) to test")
    manifest = {
        "name": name, "format": "folder", "sources": {"folder": sc.content},
        "content": sc.content, "options": opts, "layout": sc.layout,
        "split_from": sc.split_from, "splits": list(sc.splits), "classes": classes,
        "counts": counts, "skipped": list(skipped), "skip_reasons": skipped,
        "split_rule": rule, "decoder": f"pillow {pil_version}", "path": str(sc.folder),
        "root": sc.descended, "notes": sc.notes, "image_shape": list(target.shape),
    }
    if skipped:
        log.warning("%s: skipped %d file(s): %s", name, len(skipped), _first(skipped))
    return arrays, manifest


def _sizes_found(mismatch: list[tuple[str, str]], target, same: int) -> str:
    """"7 files 20x24, 1 file 10x40 (height x width, as --size takes them; e.g. b/wide.png)"
    from the size skips (their reasons start "is WxH") and the ``same`` files of the size
    read first."""
    from collections import Counter

    def hw(wh: str) -> str:
        w, _, h = wh.partition("x")
        return f"{h}x{w}"

    found = Counter({f"{target.exact[0]}x{target.exact[1]}": same})
    found.update(hw(why.split()[1]) for _, why in mismatch)
    shown = ", ".join(f"{n} file{'s' if n != 1 else ''} {wh}"
                      for wh, n in found.most_common(5) if n)
    more = f", {len(found) - 5} more sizes" if len(found) > 5 else ""
    return f"{shown}{more} (height x width, as --size takes them; e.g. {mismatch[0][0]})"


def _dataset(name, arrays, manifest, folder: Path, dtype, channels) -> Dataset:
    from .layout import convert as _convert

    classes = tuple(manifest["classes"])
    splits, shapes = {}, {}
    for s in manifest["splits"]:
        x = _convert(arrays[f"{s}_images"], dtype, channels)
        y = np.asarray(arrays[f"{s}_labels"])
        m = arrays.get(f"{s}_masks")
        splits[s] = Split(x, y, None if m is None else np.asarray(m))
        counts = manifest["counts"].get(s, [])
        names = classes if manifest["layout"] == "classes" else ("all",)
        shapes[s] = {"images_shape": list(x.shape), "labels_shape": list(y.shape),
                     "class_counts": dict(zip(names, counts, strict=False))}
        if m is not None:
            shapes[s]["masks_shape"] = list(m.shape)
    skipped = list(manifest.get("skipped", []))
    info: dict[str, Any] = {
        "name": name, "format": "folder", "path": manifest.get("path"),
        "layout": manifest["layout"], "split_from": manifest["split_from"],
        "sources": dict(manifest["sources"]), "content_key": manifest["content"],
        "splits": shapes, "skipped": skipped, "skipped_count": len(skipped),
        "skip_reasons": dict(manifest.get("skip_reasons", {})),
        "prepared_dir": str(folder), "options": dict(manifest["options"]), "dtype": dtype,
        "split_rule": manifest.get("split_rule"), "decoder": manifest.get("decoder"),
    }
    if manifest.get("root"):
        info["root"] = manifest["root"]
    if manifest.get("notes"):
        info["notes"] = list(manifest["notes"])
    if manifest["layout"] == "segmentation":
        info["mask_classes"] = list(classes)
    extra = {s: splits[s] for s in splits if s not in ("train", "test")}
    return Dataset(name, splits["train"], splits["test"], classes, info, extra=extra)


def verify_folder(path: PathLike, *, cache_dir: PathLike | None = None,
                  repair: bool = True) -> list[str]:
    """Hash every prepared copy of the folder at ``path`` in full; returns what is wrong (one
    line per damaged copy, deleted when ``repair`` so the next load rebuilds it)."""
    return verify_slot(folder_slot(path, cache_dir), repair=repair)


def verify_slot(slot: Path, *, repair: bool = True) -> list[str]:
    """:func:`verify_folder` for a folder's cache slot (``<cache>/_folders/<name>-<hash>``)."""
    problems = []
    for folder in sorted(p for p in slot.glob("*") if p.is_dir()):
        why = prepared.verify_or_remove(folder, repair=repair)
        if why is not None:
            problems.append(f"{folder}: {why}; " + ("deleted it; the next load rebuilds it"
                                                    if repair else "not repaired"))
    return problems
