"""The prepared-array cache: parsed datasets as .npy files plus a manifest, memory-mapped.

``<prepared_dir>/`` holds one ``<key>.npy`` per array (``train_images``, ``train_labels``, ...)
and ``manifest.json``: the sha256 of the source files, each array's shape, dtype, byte size and
sha256, class counts and skipped files. The manifest is removed first and written last, so a
folder without one is unfinished; every array is checked against it before it is handed out:
labels (small) are hashed on every open, images only have their size and header checked
(hashing them would cost far more than the millisecond a warm load takes); ``verify`` hashes
them all.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import queue
import re
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..common import jsontext
from ..errors import FormatError
from . import space
from .atomic import replacing
from .regular import open_regular, read_bounded

log = logging.getLogger("dlsets")

MANIFEST = "manifest.json"
HDF5_DIR = "hdf5"
# Bump when what goes into the prepared arrays changes (layout, split rule, ...).
# 2: each array's sha256 in the manifest (older copies cannot be checked: rebuilt).
VERSION = 2
# The manifest: a few KB, more with a long list of skipped files; a bound for a damaged one.
MAX_MANIFEST = 64 << 20


def hashed_on_open(key: str) -> bool:
    """Whether array ``key`` is hashed in full on every open (labels and STL-10's fold
    indices: tens of KB)."""
    return key.endswith(("labels", "folds"))


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of the regular file at ``path`` (NotRegular, an OSError, for anything else)."""
    h = hashlib.sha256()
    f, _ = open_regular(path)
    with f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEY = re.compile(r"[a-z0-9_]{1,64}")


def _names(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _counts(v) -> bool:
    return (isinstance(v, dict) and all(isinstance(k, str) for k in v)
            and all(isinstance(c, list) and all(_count(x) for x in c) for c in v.values()))


# manifest key -> (required, check of its value, what it should be); unknown keys are ignored
FIELDS = {
    "version": (True, lambda v: v == VERSION, f"{VERSION}"),
    "name": (True, lambda v: isinstance(v, str), "a string"),
    "format": (True, lambda v: isinstance(v, str), "a string"),
    "arrays": (True, lambda v: isinstance(v, dict) and bool(v), "an object of arrays"),
    "sources": (True, lambda v: isinstance(v, dict) and bool(v) and all(
        isinstance(k, str) and (x is None or isinstance(x, str) and _HEX64.fullmatch(x))
        for k, x in v.items()), "an object of file name -> sha256"),
    "source_stats": (False, lambda v: isinstance(v, dict) and all(
        isinstance(x, list) and len(x) == 2 and all(_count(n) for n in x)
        for x in v.values()), "an object of file name -> [size, mtime_ns]"),
    "counts": (False, _counts, "an object of split -> counts per class"),
    "coarse_counts": (False, _counts, "an object of split -> counts per class"),
    "skipped": (False, _names, "a list of file names"),
    "archive_classes": (False, _names, "a list of class names"),
    "archive_coarse_classes": (False, _names, "a list of class names"),
    "decoder": (False, lambda v: isinstance(v, str), "a string"),
    "split_rule": (False, lambda v: isinstance(v, str), "a string"),
    # variants and extra splits (EMNIST, SVHN, STL-10)
    "splits": (False, lambda v: _names(v) and len(set(v)) == len(v), "a list of split names"),
    "variant": (False, lambda v: v is None or isinstance(v, str), "a variant name"),
    # image folders (dlsets.folders)
    "content": (False, lambda v: isinstance(v, str), "a content key"),
    "options": (False, lambda v: isinstance(v, dict), "an object of options"),
    "layout": (False, lambda v: v in ("classes", "segmentation"), "classes or segmentation"),
    "classes": (False, _names, "a list of class names"),
    "skip_reasons": (False, lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(x, str) for k, x in v.items()),
        "an object of file -> reason"),
    "notes": (False, _names, "a list of notes"),
    "path": (False, lambda v: isinstance(v, str), "a path"),
    "root": (False, lambda v: v is None or isinstance(v, str), "a folder name"),
}


def _array_problem(key, fact) -> str | None:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        return f"array name {key!r} is not a plain name"
    if not isinstance(fact, dict):
        return f"array {key!r} is {type(fact).__name__}, not an object"
    shape, dtype, size, sha = (fact.get(k) for k in ("shape", "dtype", "bytes", "sha256"))
    if not isinstance(shape, list) or not all(_count(n) for n in shape) or len(shape) > 8:
        return f"array {key!r} has shape {shape!r}"
    try:
        dt = np.dtype(dtype) if isinstance(dtype, str) else None
    except TypeError:
        dt = None
    if dt is None or dt.hasobject or dt.str != dtype:
        return f"array {key!r} has dtype {dtype!r}"
    if not _count(size):
        return f"array {key!r} has byte size {size!r}"
    header = size - math.prod(shape) * dt.itemsize
    # np.save writes a header of a multiple of 64 bytes before the data
    if header < 64 or header % 64 or header > 1 << 16:
        return (f"array {key!r}: {size} bytes do not fit shape {shape} of {dtype} (a header "
                "and the data)")
    if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
        return f"array {key!r} has sha256 {sha!r}"
    return None


def check_manifest(data: Any) -> str | None:
    """What is wrong with a parsed manifest, in words (None when nothing): every field this
    code reads is checked for type and consistency, as strictly as a user registry entry."""
    if not isinstance(data, dict):
        return f"{MANIFEST} holds {type(data).__name__}, not an object"
    version = data.get("version")
    if version != VERSION:
        return f"made by another dlsets (prepared-copy version {version}, this one is {VERSION})"
    for key, (required, ok, want) in FIELDS.items():
        if key not in data:
            if required:
                return f"{MANIFEST} lacks {key!r}"
            continue
        if not ok(data[key]):
            return f"{MANIFEST}: {key!r} is {str(data[key])[:80]!r}, expected {want}"
    for key, fact in data["arrays"].items():
        why = _array_problem(key, fact)
        if why:
            return f"{MANIFEST}: {why}"
    if not set(data.get("source_stats", {})) <= set(data["sources"]):
        return f"{MANIFEST}: 'source_stats' names files that are not among its 'sources'"
    return None


def _load_manifest(folder: str | os.PathLike) -> tuple[dict | None, str | None]:
    path = Path(folder) / MANIFEST
    try:  # a FIFO or /dev/zero there is a damaged copy (rebuilt), never waited for nor read
        text = read_bounded(path, MAX_MANIFEST).decode("utf-8")
    except FileNotFoundError:
        return None, f"no {MANIFEST} (an unfinished copy)"
    except (OSError, ValueError) as exc:
        return None, f"{MANIFEST} cannot be read ({exc})"
    try:
        data = jsontext.loads(text)
    except ValueError as exc:
        return None, f"{MANIFEST} is not valid JSON ({str(exc)[:80]})"
    why = check_manifest(data)
    return (None, why) if why else (data, None)


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The manifest in ``folder``, or None when it is missing, unreadable, of another version
    or fails :func:`check_manifest` in any way (the copy is then rebuilt)."""
    return _load_manifest(folder)[0]


def manifest_problem(folder: str | os.PathLike) -> str:
    """Why :func:`read_manifest` gives None for ``folder``, in words."""
    return _load_manifest(folder)[1] or "no problem"


class Writer:
    """Writes a prepared folder: each array as ``<key>.npy`` (to a temporary name, renamed once
    whole), hashed as it is written, then the manifest, last.

    Arrays come whole (:meth:`array`) or as a stream of byte pieces (:meth:`stream`: an IDX
    file is inflated straight into its .npy this way, with the writing and hashing on a second
    thread so that they overlap the inflating). ``needed`` bytes are checked against the free
    space first; a failure (a full disk included) removes what was written and raises
    SpaceError or WriteError naming the folder. The caller holds the folder's lock: temporary
    files found here are leftovers of a writer that was killed, and are removed.
    """

    def __init__(self, folder: str | os.PathLike, needed: int, what: str = "") -> None:
        self.folder = Path(folder)
        self.what = what or f"preparing arrays in {self.folder}"
        self.needed = needed
        self.facts: dict[str, dict] = {}
        self._written: list[Path] = []
        try:
            space.check_output(self.folder / MANIFEST, self.what)
            space.need_disk(self.folder, needed, self.what, _SPACE_HINT)
            self.folder.mkdir(parents=True, exist_ok=True)
            # Without a manifest the folder counts as unfinished until the last rename.
            (self.folder / MANIFEST).unlink(missing_ok=True)
            shutil.rmtree(self.folder / HDF5_DIR, ignore_errors=True)
            for leftover in self.folder.glob(".*.tmp"):
                leftover.unlink(missing_ok=True)
        except OSError as exc:
            raise self._error(exc) from None

    def _error(self, exc: OSError) -> Exception:
        err = space.write_error(exc, self.folder, self.needed, self.what, _SPACE_HINT)
        return err if err is not exc else space.WriteError(
            f"{self.what}: cannot write in {self.folder} ({exc}); check the disk")

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if exc is not None:
            self.abort()

    def abort(self) -> None:
        """Remove every array this writer wrote (the folder stays unfinished, as it was)."""
        for path in self._written:
            path.unlink(missing_ok=True)
        self._written.clear()

    def array(self, key: str, a: np.ndarray) -> None:
        """Write array ``a`` as ``<key>.npy``."""
        a = np.ascontiguousarray(a)
        flat = memoryview(a.reshape(-1).view(np.uint8)) if a.size else memoryview(b"")
        step = 1 << 22
        self.stream(key, a.shape, a.dtype, (flat[i:i + step] for i in range(0, len(flat), step)))

    def stream(self, key: str, shape, dtype, pieces: Iterable) -> None:
        """Write ``<key>.npy`` of ``shape`` and ``dtype`` from byte ``pieces`` (exactly the
        array's data, C order); the pieces are produced here while a second thread writes."""
        dtype = np.dtype(dtype)
        shape = tuple(int(n) for n in shape)
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {
            "descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
            "shape": shape})
        expected = math.prod(shape) * dtype.itemsize
        path = self.folder / f"{key}.npy"
        sha = hashlib.sha256()
        try:
            with replacing(path) as tmp:
                with open(tmp, "wb") as f:
                    got = _pipe(f, sha, header.getvalue(), pieces)
                if got != expected:
                    raise FormatError(f"{key}: {got} bytes of data for shape {list(shape)}, "
                                      f"expected {expected}")
                self._written.append(path)
        except OSError as exc:
            raise self._error(exc) from None
        # No fsync: a torn file after a crash is caught by the size and header checks in
        # open_arrays, and syncing would cost more than the whole parse of MNIST.
        self.facts[key] = {"shape": list(shape), "dtype": dtype.str,
                           "bytes": len(header.getvalue()) + expected,
                           "sha256": sha.hexdigest()}

    def finish(self, manifest: dict) -> dict:
        """Remove arrays of earlier copies this one does not have, write ``manifest``
        (completed with the facts of each array); returns the manifest written."""
        try:
            for stale in self.folder.glob("*.npy"):
                if stale.stem not in self.facts:
                    stale.unlink(missing_ok=True)
            full = {**manifest, "version": VERSION, "arrays": self.facts}
            text = json.dumps(full, indent=1, sort_keys=True).encode("utf-8")
            with replacing(self.folder / MANIFEST) as tmp:
                tmp.write_bytes(text)
        except OSError as exc:
            self.abort()
            raise self._error(exc) from None
        self._written.clear()
        return full


_SPACE_HINT = (", or put the cache on a disk with room (DLSETS_CACHE, --cache-dir, "
               "cache_dir=)")


def _pipe(f, sha, header: bytes, pieces: Iterable) -> int:
    """Write ``header`` and ``pieces`` to ``f`` and hash them on a second thread while this
    one produces the pieces (zlib, file writes and hashlib all release the GIL); returns the
    count of data bytes. A write error is raised here, at once."""
    q: queue.Queue = queue.Queue(maxsize=8)
    failed: list[BaseException] = []

    def drain() -> None:
        while (item := q.get()) is not None:
            if failed:
                continue  # keep taking pieces so the producer never blocks
            try:
                f.write(item)
                sha.update(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the producer
                failed.append(exc)

    worker = threading.Thread(target=drain, name="dlsets-prepared-writer", daemon=True)
    worker.start()
    total = 0
    try:
        q.put(header)
        for piece in pieces:
            if failed:
                break
            total += len(piece)
            q.put(piece)
    finally:
        q.put(None)
        worker.join()
    if failed:
        raise failed[0]
    return total


def write(folder: str | os.PathLike, arrays: dict[str, np.ndarray], manifest: dict) -> dict:
    """Store ``arrays`` as ``<key>.npy`` and ``manifest`` (completed with array facts) in
    ``folder`` (see :class:`Writer`); returns the manifest written."""
    needed = sum(a.nbytes + 128 for a in arrays.values()) + 65536
    with Writer(folder, needed) as w:
        for key, a in arrays.items():
            w.array(key, a)
        return w.finish(manifest)


def _header(path: Path) -> tuple[list[int], str]:
    """(shape, dtype.str) from a .npy file's header alone."""
    f, _ = open_regular(path)
    with f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(f)
    if fortran:
        raise ValueError("Fortran order")
    return list(shape), dtype.str


def problem(folder: str | os.PathLike, manifest: dict, *, headers: bool = True) -> str | None:
    """Why the arrays in ``folder`` do not match ``manifest`` (None when they all do): each
    file's size and (with ``headers``) .npy header, shape and dtype, are compared with the
    manifest's."""
    folder = Path(folder)
    for key, fact in manifest["arrays"].items():
        path = folder / f"{key}.npy"
        try:
            size = path.stat().st_size
        except OSError:
            return f"{path.name} is missing"
        if size != fact.get("bytes"):
            return f"{path.name} is {size} bytes, the manifest says {fact.get('bytes')}"
        if not headers:
            continue
        try:
            shape, dtype = _header(path)
        except (OSError, ValueError) as exc:
            return f"{path.name} cannot be read ({exc})"
        if shape != fact.get("shape") or dtype != fact.get("dtype"):
            return (f"{path.name} holds {dtype} {shape}, the manifest says "
                    f"{fact.get('dtype')} {fact.get('shape')}")
    return None


def open_arrays(folder: str | os.PathLike, manifest: dict, *,
                quiet: bool = False) -> dict[str, np.ndarray] | None:
    """Memory-map every array of ``manifest``; None (logged, at debug level when ``quiet``)
    if any is off. Labels are read whole and hashed instead (see :func:`hashed_on_open`).

    The maps are copy-on-write: users may modify the arrays in place (keras' arrays are
    writable) and the prepared files stay as they were.
    """
    folder = Path(folder)
    why = problem(folder, manifest, headers=False)  # np.load below reads the headers
    out: dict[str, Any] = {}
    if why is None:
        for key, fact in manifest["arrays"].items():
            path = folder / f"{key}.npy"
            try:
                if hashed_on_open(key):
                    # The bytes hashed are the bytes used: a file replaced in between can't slip in.
                    data = read_bounded(path, fact["bytes"])
                    sha = hashlib.sha256(data).hexdigest()
                    if sha != fact.get("sha256"):
                        why = (f"{path.name} has sha256 {sha}, the manifest says "
                               f"{fact.get('sha256')}")
                        break
                    a = np.load(io.BytesIO(data), allow_pickle=False)
                else:
                    a = np.load(path, mmap_mode="c", allow_pickle=False)
            except (OSError, ValueError) as exc:
                why = f"{key}.npy cannot be read ({exc})"
                break
            if list(a.shape) != fact.get("shape") or a.dtype.str != fact.get("dtype"):
                why = (f"{key}.npy holds {a.dtype.str} {list(a.shape)}, the manifest says "
                       f"{fact.get('dtype')} {fact.get('shape')}")
                break
            out[key] = a
    if why is not None:
        log.log(logging.DEBUG if quiet else logging.WARNING,
                "prepared arrays in %s are damaged (%s); rebuilding them", folder, why)
        return None
    return out


def verify(folder: str | os.PathLike, manifest: dict) -> str | None:
    """Why the arrays in ``folder`` do not match ``manifest``: what a load checks (sizes,
    headers), and every array hashed in full (None when they all match)."""
    folder = Path(folder)
    why = problem(folder, manifest)
    if why is not None:
        return why
    for key, fact in manifest["arrays"].items():
        path = folder / f"{key}.npy"
        try:
            sha = file_sha256(path)
        except OSError as exc:
            return f"{path.name} cannot be read ({exc})"
        if sha != fact.get("sha256"):
            return f"{path.name} has sha256 {sha}, the manifest says {fact.get('sha256')}"
    return None


def verify_or_remove(folder: str | os.PathLike, *, repair: bool = True) -> str | None:
    """Why the prepared copy in ``folder`` is damaged (its manifest, or an array hashed in
    full), after deleting it when ``repair``; None when it verifies."""
    manifest = read_manifest(folder)
    why = verify(folder, manifest) if manifest is not None else manifest_problem(folder)
    if why is not None and repair:
        shutil.rmtree(folder, ignore_errors=True)
    return why
