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
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import replacing

log = logging.getLogger("dlsets")

MANIFEST = "manifest.json"
HDF5_DIR = "hdf5"
# Bump when what goes into the prepared arrays changes (layout, split rule, ...).
# 2: each array's sha256 in the manifest (older copies cannot be checked: rebuilt).
VERSION = 2


def hashed_on_open(key: str) -> bool:
    """Whether array ``key`` is hashed in full on every open (labels and STL-10's fold
    indices: tens of KB)."""
    return key.endswith(("labels", "folds"))


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The manifest in ``folder``, or None when it is missing, unreadable or of another version."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return None
    if not isinstance(data.get("arrays"), dict) or not isinstance(data.get("sources"), dict):
        return None
    return data


def manifest_problem(folder: str | os.PathLike) -> str:
    """Why :func:`read_manifest` gives None for ``folder``, in words."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return f"no {MANIFEST} (an unfinished copy)"
    try:
        version = json.loads(path.read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError, AttributeError) as exc:
        return f"{MANIFEST} cannot be read ({exc})"
    if version != VERSION:
        return f"made by another dlsets (prepared-copy version {version}, this one is {VERSION})"
    return f"{MANIFEST} lacks its arrays or sources"


def _atomic_write(path: Path, write) -> None:
    with replacing(path) as tmp, open(tmp, "wb") as f:
        # No fsync: a torn file after a crash is caught by the size and header checks
        # in open_arrays, and syncing would cost more than the whole parse of MNIST.
        write(f)


def write(folder: str | os.PathLike, arrays: dict[str, np.ndarray], manifest: dict) -> dict:
    """Store ``arrays`` as ``<key>.npy`` and ``manifest`` (completed with array facts) in
    ``folder``, each file written to a temp name and renamed; returns the manifest written.

    The caller holds the folder's lock (one writer at a time): temp files found here are
    leftovers of a writer that was killed, and are removed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Without a manifest the folder counts as unfinished until the very last rename below.
    (folder / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(folder / HDF5_DIR, ignore_errors=True)
    for leftover in folder.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
    facts = {}
    for key, a in arrays.items():
        a = np.ascontiguousarray(a)
        path = folder / f"{key}.npy"
        _atomic_write(path, lambda f, a=a: np.save(f, a, allow_pickle=False))
        # Hashed as written (read back from the page cache): what a later check compares with.
        facts[key] = {"shape": list(a.shape), "dtype": a.dtype.str, "bytes": path.stat().st_size,
                      "sha256": file_sha256(path)}
    for stale in folder.glob("*.npy"):
        if stale.stem not in arrays:
            stale.unlink(missing_ok=True)
    full = {**manifest, "version": VERSION, "arrays": facts}
    text = json.dumps(full, indent=1, sort_keys=True).encode("utf-8")
    _atomic_write(folder / MANIFEST, lambda f: f.write(text))
    return full


def problem(folder: str | os.PathLike, manifest: dict) -> str | None:
    """Why the arrays in ``folder`` do not match ``manifest`` (None when they all do)."""
    folder = Path(folder)
    for key, fact in manifest["arrays"].items():
        path = folder / f"{key}.npy"
        try:
            size = path.stat().st_size
        except OSError:
            return f"{path.name} is missing"
        if size != fact.get("bytes"):
            return f"{path.name} is {size} bytes, the manifest says {fact.get('bytes')}"
    return None


def open_arrays(folder: str | os.PathLike, manifest: dict, *,
                quiet: bool = False) -> dict[str, np.ndarray] | None:
    """Memory-map every array of ``manifest``; None (logged, at debug level when ``quiet``)
    if any is off. Labels are read whole and hashed instead (see :func:`hashed_on_open`).

    The maps are copy-on-write: users may modify the arrays in place (keras' arrays are
    writable) and the prepared files stay as they were.
    """
    folder = Path(folder)
    why = problem(folder, manifest)
    out: dict[str, Any] = {}
    if why is None:
        for key, fact in manifest["arrays"].items():
            path = folder / f"{key}.npy"
            try:
                if hashed_on_open(key):
                    # The bytes hashed are the bytes used: a file replaced in between can't slip in.
                    data = path.read_bytes()
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
    """Why the arrays in ``folder`` do not match ``manifest``, every one hashed in full
    (None when they all do)."""
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
