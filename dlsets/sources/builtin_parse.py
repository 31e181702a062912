"""A registry dataset's downloaded files parsed into arrays, and written as its prepared copy
(see :mod:`dlsets.store.prepared`): IDX, CIFAR, notMNIST, EMNIST, SVHN and STL-10 layouts."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import SPLITS
from ..errors import FormatError
from ..store import prepared
from .registry import DatasetSpec

log = logging.getLogger("dlsets")


def build(spec: DatasetSpec, files: dict[str, Path], folder: Path, progress,
           variant: str | None = None, wanted: tuple[str, ...] = ()) -> dict:
    """Parse the source files into the prepared folder; returns the manifest written."""
    npz = len(files) == 1 and next(iter(files)).lower().endswith(".npz")
    if spec.format == "idx" and not npz:
        return _build_idx(spec, files, folder)
    arrays, manifest = parse(spec, files, progress, variant, wanted)
    needed = sum(a.nbytes + 128 for a in arrays.values()) + 65536
    with prepared.Writer(folder, needed, f"{spec.name}: preparing its arrays in {folder}") as w:
        for key, a in arrays.items():
            w.array(key, a)
        return w.finish(manifest)


def _build_idx(spec: DatasetSpec, files: dict[str, Path], folder: Path) -> dict:
    """Four IDX files -> the prepared folder. Every header is read and checked against the
    layout before any data is inflated; images are inflated straight into their .npy files
    (no array in memory, no copy), labels (small) are read, checked and written."""
    from ..formats.idx import open_idx

    roles = _idx_roles(spec, files)
    limits = _limits(spec)
    with contextlib.ExitStack() as stack:
        opened = {role: stack.enter_context(open_idx(files[fname], name=fname))
                  for role, fname in roles.items()}
        for (split, kind), f in opened.items():
            if f.dtype != np.uint8:
                raise FormatError(f"{f.label}: IDX {kind} of type {f.dtype}, expected unsigned "
                                  "bytes")
            if kind == "labels":
                if len(f.shape) != 1:
                    raise FormatError(f"{f.label}: labels have shape {f.shape}, expected (N,)")
                continue
            limits.check_shape(f.shape, f.label)
            n = opened[(split, "labels")].shape[:1]
            if f.shape[:1] != n:
                raise FormatError(f"{spec.name}: {f.shape[0]} {split} images ({f.label}) but "
                                  f"{n[0] if n else 0} labels ({opened[(split, 'labels')].label})")
        needed = sum(f.nbytes + 128 for f in opened.values()) + 65536
        arrays = {}
        with prepared.Writer(folder, needed, f"{spec.name}: preparing its arrays in {folder}"
                             ) as w:
            for (split, kind), f in opened.items():
                key = f"{split}_{kind}"
                if kind == "images":
                    w.stream(key, f.shape, np.uint8, f.chunks())
                else:
                    arrays[key] = np.empty(f.shape, np.uint8)
                    f.readinto(arrays[key])
                f.finish()
                if kind == "labels":
                    w.array(key, arrays[key])
            _check_labels(spec, ", ".join(files), "labels",
                          [arrays["train_labels"], arrays["test_labels"]], len(spec.classes))
            counts = {s: np.bincount(arrays[f"{s}_labels"], minlength=len(spec.classes)).tolist()
                      for s in SPLITS}
            return w.finish({"name": spec.name, "format": spec.format,
                             "sources": {f: spec.files[f].sha256 for f in files},
                             "source_stats": {}, "counts": counts, "skipped": [],
                             "splits": list(SPLITS)})


def _limits(spec: DatasetSpec):
    from ..formats.limits import for_spec

    return for_spec(spec)


def parse(spec: DatasetSpec, files: dict[str, Path], progress, variant: str | None = None,
           wanted: tuple[str, ...] = ()):
    """Source files -> (arrays for the prepared cache, manifest facts)."""
    sources = {f: spec.files[f].sha256 for f in files}
    stats = {}
    extra: dict[str, Any] = {}
    limits = _limits(spec)
    if spec.format not in ("idx", "svhn") and len(files) != 1:
        raise FormatError(
            f"{spec.name}: a {spec.like}-like dataset is one archive, but its file set has "
            f"{len(files)} ({', '.join(files)}); list only one of them in the registry entry"
        )
    if spec.format == "idx":
        x_tr, y_tr, x_te, y_te = _read_idx_set(spec, files, limits)
        arrays = {"train_images": x_tr, "train_labels": y_tr,
                  "test_images": x_te, "test_labels": y_te}
    elif spec.format in ("cifar10", "cifar100"):
        from ..formats.cifar import read_cifar_tar

        (fname, path), = files.items()
        c = read_cifar_tar(path, coarse=spec.format == "cifar100", name=fname, limits=limits)
        arrays = {"train_images": c.x_train, "train_labels": c.y_train,
                  "test_images": c.x_test, "test_labels": c.y_test}
        if spec.format == "cifar100":
            arrays["train_coarse_labels"] = c.coarse_train
            arrays["test_coarse_labels"] = c.coarse_test
            _check_labels(spec, fname, "coarse labels", [c.coarse_train, c.coarse_test],
                          len(spec.coarse_classes))
        extra["archive_classes"] = c.classes
        extra["archive_coarse_classes"] = c.coarse_classes
    elif spec.format == "notmnist":
        (fname, path), = files.items()
        n, sha, stat = _read_notmnist(spec, fname, path, progress, limits)
        sources[fname] = spec.files[fname].sha256 or sha
        stats[fname] = stat
        arrays = {"train_images": n.x_train, "train_labels": n.y_train,
                  "test_images": n.x_test, "test_labels": n.y_test}
        extra["skipped"] = n.skipped
        extra["decoder"] = n.decoder
        extra["split_rule"] = "per class, lowest sha256('<letter>/<file>') (n+5)//10 to test"
    elif spec.format == "emnist":
        from ..formats.emnist import read_emnist_zip

        (fname, path), = files.items()
        v = spec.variants[variant]
        x_tr, y_tr, x_te, y_te = read_emnist_zip(
            path, variant=variant, members=spec.extra.get("members", "emnist-{variant}-{split}-"
                                                          "{kind}-ubyte.gz"),
            image_shape=tuple(spec.image_shape), label_offset=v.label_offset, name=fname)
        arrays = {"train_images": x_tr, "train_labels": y_tr,
                  "test_images": x_te, "test_labels": y_te}
    elif spec.format == "svhn":
        from ..formats.svhn import read_svhn_mat

        arrays = {}
        for s, fname in _split_files(spec, files, (*SPLITS, *wanted)).items():
            log.info("%s: reading %s", spec.name, fname)
            arrays[f"{s}_images"], arrays[f"{s}_labels"] = read_svhn_mat(files[fname], name=fname)
    elif spec.format == "stl10":
        (fname, path), = files.items()
        st = _read_stl10(spec, fname, path, progress, unlabeled="unlabeled" in wanted)
        arrays = {"train_images": st.x_train, "train_labels": st.y_train,
                  "test_images": st.x_test, "test_labels": st.y_test, "train_folds": st.folds}
        if st.x_unlabeled is not None:
            arrays["unlabeled_images"] = st.x_unlabeled
        extra["archive_classes"] = st.classes
    else:
        raise FormatError(f"{spec.name}: no loader for format {spec.format!r}")
    names = (*SPLITS, *wanted)
    for s in names:
        x, y = arrays[f"{s}_images"], arrays.get(f"{s}_labels")
        if x.dtype != np.uint8 or tuple(x.shape[1:]) != tuple(spec.image_shape):
            raise FormatError(
                f"{spec.name}: {s} images are {x.dtype} {x.shape[1:]}, expected uint8 "
                f"{tuple(spec.image_shape)} (the layout of {spec.like})"
            )
        limits.check_count(len(x), f"{', '.join(files)} ({s})")
        if y is not None and len(x) != len(y):
            raise FormatError(f"{spec.name}: {len(x)} {s} images but {len(y)} labels")
    labelled = [s for s in names if f"{s}_labels" in arrays]
    _check_labels(spec, ", ".join(files), "labels",
                  [arrays[f"{s}_labels"] for s in labelled], len(spec.classes))
    counts = {s: np.bincount(arrays[f"{s}_labels"], minlength=len(spec.classes)).tolist()
              for s in labelled}
    manifest = {"name": spec.name, "format": spec.format, "sources": sources,
                "source_stats": stats, "counts": counts, "skipped": [], "splits": list(names),
                **extra}
    if variant is not None:
        manifest["variant"] = variant
    if spec.format == "cifar100":
        manifest["coarse_counts"] = {
            s: np.bincount(arrays[f"{s}_coarse_labels"],
                           minlength=len(spec.coarse_classes)).tolist()
            for s in ("train", "test")
        }
    return arrays, manifest


def _check_labels(spec, where, what, label_arrays, n_classes) -> None:
    top = max((int(a.max()) for a in label_arrays if a.size), default=-1)
    if top >= n_classes:
        raise FormatError(
            f"{spec.name}: {where} holds {what} up to {top}, but the registry names only "
            f"{n_classes} classes; fix the entry's 'classes' or the files"
        )


def _split_files(spec: DatasetSpec, files: dict[str, Path], names) -> dict[str, str]:
    """Split name -> the one file that holds it (SVHN: one .mat per split), told by the extra
    splits' file lists, else by "train" or "test" in the name."""
    roles: dict[str, str] = {}
    for fname in files:
        role = next((n for n, sp in spec.extra_splits.items() if fname in sp.files), None)
        role = role or idx_role(fname)[0]
        if role is None or role in roles:
            raise FormatError(f"{spec.name}: cannot tell which split {fname!r} holds; its name "
                              f"must say train or test (files: {', '.join(files)})")
        roles[role] = fname
    missing = [n for n in names if n not in roles]
    if missing:
        raise FormatError(f"{spec.name}: no file for {', '.join(missing)} among {list(files)}")
    return {n: roles[n] for n in names}


def idx_role(fname: str) -> tuple[str | None, str | None]:
    """(split, "images" | "labels") an IDX file's name says it holds (None where it does not)."""
    n = fname.lower()
    split = "test" if ("t10k" in n or "test" in n) else "train" if "train" in n else None
    kind = ("labels" if ("label" in n or "idx1" in n)
            else "images" if ("image" in n or "idx3" in n) else None)
    return split, kind


def _read_idx_set(spec: DatasetSpec, files: dict[str, Path], limits):
    """keras' mnist.npz or the four IDX files, read into memory (what :func:`_build_idx`
    streams into the prepared folder instead)."""
    if len(files) == 1 and next(iter(files)).lower().endswith(".npz"):
        from ..formats.npz import read_mnist_npz

        (fname, path), = files.items()
        return read_mnist_npz(path, name=fname, limits=limits)
    from ..formats.idx import open_idx, read_idx

    out = []
    for (_, k), fname in _idx_roles(spec, files).items():
        if k == "images":
            with open_idx(files[fname], name=fname) as f:  # the header, before any inflating
                limits.check_shape(f.shape, f.label)
        a = read_idx(files[fname], name=fname)
        if a.dtype != np.uint8:
            raise FormatError(f"{fname}: IDX {k} of type {a.dtype}, expected unsigned bytes")
        if k == "labels" and a.ndim != 1:
            raise FormatError(f"{fname}: labels have shape {a.shape}, expected (N,)")
        out.append(a)
    return tuple(out)


def _idx_roles(spec: DatasetSpec, files: dict[str, Path]) -> dict[tuple[str, str], str]:
    """(split, "images" | "labels") -> file name, for the four IDX files of a set."""
    roles = {}
    for fname in files:
        role = idx_role(fname)
        if None in role or role in roles:
            raise FormatError(
                f"{spec.name}: cannot tell what {fname!r} holds; IDX file names must say "
                "train or test (or t10k) and images or labels (or idx3/idx1), like MNIST's "
                f"(files: {', '.join(files)})"
            )
        roles[role] = fname
    wanted = [(s, k) for s in ("train", "test") for k in ("images", "labels")]
    missing = [f"{s} {k}" for s, k in wanted if (s, k) not in roles]
    if missing:
        raise FormatError(f"{spec.name}: no file for {', '.join(missing)} among {list(files)}")
    return {role: roles[role] for role in wanted}


class _HashingReader(io.RawIOBase):
    """A read-only file wrapper that hashes what passes through and reports progress."""

    def __init__(self, f, on_read: Callable[[int], None] | None = None):
        self._f = f
        self.sha256 = hashlib.sha256()
        self._on_read = on_read

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._f.readinto(b)
        if n:
            self.sha256.update(memoryview(b)[:n])
            if self._on_read:
                self._on_read(n)
        return n


class _CountingReader(io.RawIOBase):
    """A read-only file wrapper that reports the bytes passing through (for a progress bar)."""

    def __init__(self, f, on_read: Callable[[int], None]):
        self._f, self._on_read = f, on_read

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._f.readinto(b)
        if n:
            self._on_read(n)
        return n


def _read_stl10(spec, fname, path, progress, unlabeled: bool):
    from ..common.progress import bar
    from ..formats.stl10 import read_stl10_tar

    size = os.path.getsize(path)
    with open(path, "rb") as raw, bar(size, f"{spec.name}: decoding", progress=progress,
                                      unit="B") as pbar:
        stream = io.BufferedReader(_CountingReader(raw, pbar.update), 1 << 20)
        return read_stl10_tar(stream, unlabeled=unlabeled, compressed_size=size, name=fname)


def _read_notmnist(spec, fname, path, progress, limits=None):
    from ..common.progress import bar
    from ..formats.notmnist import read_notmnist_tar

    st = os.stat(path)
    with open(path, "rb") as raw, bar(st.st_size, f"{spec.name}: decoding", progress=progress,
                                      unit="B") as pbar:
        reader = _HashingReader(raw, pbar.update)
        buffered = io.BufferedReader(reader, 1 << 20)
        n = read_notmnist_tar(buffered, classes=spec.classes,
                              image_shape=tuple(spec.image_shape), name=fname, limits=limits)
        while buffered.read(1 << 20):  # the tar stream may stop before the end: hash it all
            pass
    if n.skipped:
        log.warning("%s: skipped %d unreadable image(s): %s", spec.name, len(n.skipped),
                    ", ".join(n.skipped[:10]) + (" ..." if len(n.skipped) > 10 else ""))
    return n, reader.sha256.hexdigest(), [st.st_size, st.st_mtime_ns]
