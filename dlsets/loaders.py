"""Load any registry dataset as NumPy arrays (or HDF5 datasets) in one uniform layout.

``load(name)`` returns a :class:`~dlsets.dataset.Dataset`; ``load_mnist()`` and friends return
keras' ``((x_train, y_train), (x_test, y_test))`` tuples. Images are uint8, channels-last:
(N, 28, 28) greyscale, (N, 32, 32, 3) CIFAR; labels (N,) uint8 everywhere.

The first load parses the downloaded files once into ``prepared_dir(name)`` (see
:mod:`dlsets.prepared`); later loads memory-map those arrays. A prepared copy made from other
source files, or damaged, is rebuilt, never returned.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import cache, prepared, registry
from .dataset import Dataset, Split
from .errors import FormatError, OfflineError, OptionError
from .registry import DatasetSpec

log = logging.getLogger("dlsets")

PathLike = str | os.PathLike
DTYPES = ("uint8", "float32")
CHANNELS = (None, "last", "first")
FORMATS = ("numpy", "hdf5")
LABEL_MODES = ("fine", "coarse")
NOTMNIST_VARIANTS = ("small", "large")


def _check(option: str, value: Any, valid: tuple) -> None:
    if value not in valid:
        raise OptionError(f"{option}={value!r} is not valid; use one of {list(valid)}")


def load(
    name: str,
    *,
    dtype: str = "uint8",
    channels: str | None = None,
    cache_dir: PathLike | None = None,
    download: bool = True,
    format: str = "numpy",
    label_mode: str = "fine",
    progress: bool | None = None,
    val: float | int | None = None,
    val_seed: int = 0,
) -> Dataset:
    """Load dataset ``name`` (built-in or user registry entry) into a :class:`Dataset`.

    Images: uint8 (N, H, W) greyscale or (N, H, W, 3) colour by default; ``dtype="float32"``
    scales them to [0, 1]; ``channels="last"`` always gives NHWC ((N, 28, 28, 1) for greyscale),
    ``"first"`` always NCHW. Labels: (N,) uint8; ``label_mode="coarse"`` (CIFAR-100 only) gives
    the 20 superclasses and their names in ``classes``. uint8 images in the default layout are
    copy-on-write memory maps of the prepared copy, labels in-memory copies (hashed on every
    load): both writable, and writes never reach the cache. ``format="hdf5"`` returns read-only
    h5py datasets (close with ``ds.close()`` or ``with``). With ``download=False`` nothing is
    downloaded: missing files raise OfflineError saying which and how to get them.

    ``val`` (a fraction such as 0.1, or a count) moves that much of the train split to a
    validation split, ``ds.val`` (``ds["val"]``): stratified by class and chosen by
    ``val_seed``, the same on every machine (rule: :mod:`dlsets.splits`). Both are then
    in-memory arrays, or read-on-demand views of the HDF5 file with ``format="hdf5"``.
    """
    _check("dtype", dtype, DTYPES)
    _check("channels", channels, CHANNELS)
    _check("format", format, FORMATS)
    _check("label_mode", label_mode, LABEL_MODES)
    if val is not None:
        from .augment.params import check_seed
        from .splits import check_val

        check_val(val)
        check_seed(val_seed)
    spec = registry.get(name)
    if label_mode == "coarse" and spec.format != "cifar100":
        raise OptionError(
            f"label_mode='coarse' exists for CIFAR-100-like datasets only; {name} has "
            f"{spec.format} labels, use label_mode='fine'"
        )
    arrays, manifest = _prepared_arrays(spec, cache_dir, download, progress)
    folder = cache.prepared_dir(spec.name, cache_dir)
    info = _info(spec, manifest, label_mode, folder)
    prefix = "coarse_" if label_mode == "coarse" else ""
    classes = _class_names(spec, manifest, label_mode == "coarse")
    if format == "hdf5":
        ds = _hdf5_dataset(spec, arrays, manifest, folder, info, classes, dtype, channels,
                           prefix)
        return ds if val is None else _with_validation(ds, val, val_seed)
    splits = {}
    for s in ("train", "test"):
        x = _convert(arrays[f"{s}_images"], dtype, channels)
        y = np.asarray(arrays[f"{s}_{prefix}labels"])
        splits[s] = Split(x, y)
        info["splits"][s]["images_shape"] = list(x.shape)
    info["dtype"] = dtype
    ds = Dataset(spec.name, splits["train"], splits["test"], tuple(classes), info)
    return ds if val is None else _with_validation(ds, val, val_seed)


def _with_validation(ds: Dataset, val, seed) -> Dataset:
    from .splits import with_validation

    try:
        return with_validation(ds, val, seed=seed)
    except BaseException:
        ds.close()
        raise


def prepared_info(name: str, *, cache_dir: PathLike | None = None) -> dict | None:
    """Facts about the prepared copy of ``name`` (shapes, class counts, source sha256,
    skipped files), or None when there is none (or it is stale); never loads or downloads."""
    spec = registry.get(name)
    folder = cache.prepared_dir(name, cache_dir)
    manifest = prepared.read_manifest(folder)
    if manifest is None or _stale(spec, manifest, cache_dir) or prepared.problem(folder, manifest):
        return None
    return _info(spec, manifest, "fine", folder)


# --- keras-style loaders -------------------------------------------------------------------


def _tuples(name: str, **kw):
    return load(name, **kw).as_tuples()


def load_mnist(*, dtype: str = "uint8", channels: str | None = None,
               cache_dir: PathLike | None = None, download: bool = True, format: str = "numpy",
               progress: bool | None = None):
    """MNIST digits as ``((x_train, y_train), (x_test, y_test))``: x (60000|10000, 28, 28)
    uint8, y (N,) uint8 in 0..9; drop-in for ``keras.datasets.mnist.load_data()``."""
    return _tuples("mnist", dtype=dtype, channels=channels, cache_dir=cache_dir,
                   download=download, format=format, progress=progress)


def load_fashion_mnist(*, dtype: str = "uint8", channels: str | None = None,
                       cache_dir: PathLike | None = None, download: bool = True,
                       format: str = "numpy", progress: bool | None = None):
    """Fashion-MNIST as ``((x_train, y_train), (x_test, y_test))``: x (N, 28, 28) uint8,
    y (N,) uint8; drop-in for ``keras.datasets.fashion_mnist.load_data()``."""
    return _tuples("fashion-mnist", dtype=dtype, channels=channels, cache_dir=cache_dir,
                   download=download, format=format, progress=progress)


def load_kmnist(*, dtype: str = "uint8", channels: str | None = None,
                cache_dir: PathLike | None = None, download: bool = True,
                format: str = "numpy", progress: bool | None = None):
    """Kuzushiji-MNIST as ``((x_train, y_train), (x_test, y_test))``: x (N, 28, 28) uint8,
    y (N,) uint8."""
    return _tuples("kmnist", dtype=dtype, channels=channels, cache_dir=cache_dir,
                   download=download, format=format, progress=progress)


def load_notmnist(variant: str = "small", *, dtype: str = "uint8", channels: str | None = None,
                  cache_dir: PathLike | None = None, download: bool = True,
                  format: str = "numpy", progress: bool | None = None):
    """notMNIST letters A-J as ``((x_train, y_train), (x_test, y_test))``: x (N, 28, 28) uint8,
    y (N,) uint8 (0 = "A" ... 9 = "J"). Only the archive of ``variant`` is downloaded.

    There is no official split; dlsets makes one that is deterministic, stratified and the
    same on every machine: within each letter folder, files are ranked by the SHA-256 of their
    path below the top folder ("A/<file>.png") and the lowest-ranked one in ten (rounded half
    up, ``(n + 5) // 10`` of a letter's n files) goes to test, the rest to train. The rule sees
    every file, readable or not, before unreadable images are dropped (they are listed in
    ``dlsets.load(...).info["skipped"]``), so what a decoder rejects moves no other file across
    the split. Each split is ordered by the same hash, which mixes the letters.
    """
    _check("variant", variant, NOTMNIST_VARIANTS)
    return _tuples(f"notmnist-{variant}", dtype=dtype, channels=channels, cache_dir=cache_dir,
                   download=download, format=format, progress=progress)


def load_cifar10(*, dtype: str = "uint8", channels: str | None = None,
                 cache_dir: PathLike | None = None, download: bool = True,
                 format: str = "numpy", progress: bool | None = None):
    """CIFAR-10 as ``((x_train, y_train), (x_test, y_test))``: x (50000|10000, 32, 32, 3) uint8,
    y (N,) uint8 (keras gives (N, 1); use ``y[:, None]`` for that shape)."""
    return _tuples("cifar10", dtype=dtype, channels=channels, cache_dir=cache_dir,
                   download=download, format=format, progress=progress)


def load_cifar100(label_mode: str = "fine", *, dtype: str = "uint8",
                  channels: str | None = None, cache_dir: PathLike | None = None,
                  download: bool = True, format: str = "numpy", progress: bool | None = None):
    """CIFAR-100 as ``((x_train, y_train), (x_test, y_test))``: x (N, 32, 32, 3) uint8,
    y (N,) uint8, 100 fine classes or, with ``label_mode="coarse"``, 20 superclasses."""
    return _tuples("cifar100", dtype=dtype, channels=channels, cache_dir=cache_dir,
                   download=download, format=format, label_mode=label_mode, progress=progress)


# --- prepared arrays: find, check, build ---------------------------------------------------


def _prepared_arrays(spec: DatasetSpec, cache_dir, download: bool, progress):
    folder = cache.prepared_dir(spec.name, cache_dir)
    got = _usable(spec, folder, cache_dir)
    if got is not None:
        return got
    from filelock import FileLock

    folder.parent.mkdir(parents=True, exist_ok=True)
    # One process builds; the others wait here and then find the finished copy.
    with FileLock(str(folder.parent / "prepared.lock")):
        # Quiet: whatever is wrong was logged by the check above (once, not twice); this one
        # only looks whether another process rebuilt the copy while we waited for the lock.
        got = _usable(spec, folder, cache_dir, quiet=True)
        if got is not None:
            return got
        files = _source_files(spec, cache_dir, download, progress)
        arrays, manifest = _parse(spec, files, progress)
        manifest = prepared.write(folder, arrays, manifest)
        log.info("%s: prepared arrays written to %s", spec.name, folder)
        opened = prepared.open_arrays(folder, manifest)
        if opened is None:
            raise FormatError(
                f"{spec.name}: the prepared arrays in {folder} could not be read back right "
                "after writing them; check the disk (space, permissions) and try again"
            )
        return opened, manifest


def _usable(spec: DatasetSpec, folder: Path, cache_dir, quiet: bool = False):
    manifest = prepared.read_manifest(folder)
    if manifest is None:
        return None
    why = _stale(spec, manifest, cache_dir)
    if why:
        log.log(logging.DEBUG if quiet else logging.INFO,
                "%s: prepared arrays are stale (%s); rebuilding them", spec.name, why)
        return None
    arrays = prepared.open_arrays(folder, manifest, quiet=quiet)
    if arrays is None:
        return None
    if prepared.read_manifest(folder) != manifest:
        # Another process rebuilt the folder between our reading the manifest and mapping the
        # arrays: what we mapped may belong to its manifest, not ours. Retry under the lock.
        log.info("%s: prepared arrays changed while being opened; reopening", spec.name)
        return None
    expected = {"train_images", "train_labels", "test_images", "test_labels"}
    if spec.format == "cifar100":
        expected |= {"train_coarse_labels", "test_coarse_labels"}
    if not expected <= set(arrays):
        log.log(logging.DEBUG if quiet else logging.WARNING,
                "%s: prepared arrays lack %s; rebuilding", spec.name, expected - set(arrays))
        return None
    return arrays, manifest


def verify_prepared(name: str, *, cache_dir: PathLike | None = None,
                    repair: bool = True) -> str | None:
    """Hash every prepared array of ``name`` and its HDF5 variants in full against the
    sha256 recorded when they were written (a load hashes only the labels).

    Returns None when all match (or nothing is prepared), else what is wrong. With ``repair``
    a damaged prepared folder is deleted, or only the damaged HDF5 variant, so the next load
    rebuilds it from the downloaded files; the message says so. Never loads or downloads.
    """
    from filelock import FileLock

    spec = registry.get(name)
    folder = cache.prepared_dir(spec.name, cache_dir)
    if not folder.exists():
        return None
    # Under the builders' lock: a copy being written is not mistaken for a damaged one.
    with FileLock(str(folder.parent / "prepared.lock")):
        manifest = prepared.read_manifest(folder)
        why = (prepared.verify(folder, manifest) if manifest is not None
               else prepared.manifest_problem(folder))
        if why is not None:
            if repair:
                (folder / prepared.MANIFEST).unlink(missing_ok=True)  # unfinished from now on
                shutil.rmtree(folder, ignore_errors=True)
            done = "deleted it; the next load rebuilds it" if repair else "not repaired"
            return f"{spec.name}: prepared copy in {folder}: {why}; {done}"
        problems = []
        for path in sorted((folder / prepared.HDF5_DIR).glob("*.h5")):
            why = _hdf5_problem(path)
            if why is not None:
                if repair:
                    path.unlink(missing_ok=True)
                    _hdf5_sha_path(path).unlink(missing_ok=True)
                problems.append(f"{path.name}: {why}")
    if not problems:
        return None
    done = "deleted; the next load with format='hdf5' rebuilds them" if repair else "not repaired"
    return (f"{spec.name}: HDF5 variants in {folder / prepared.HDF5_DIR}: "
            f"{'; '.join(problems)}; {done}")


def _stale(spec: DatasetSpec, manifest: dict, cache_dir) -> str | None:
    """Why ``manifest`` was not made from the files ``spec`` names now (None if it was)."""
    if manifest.get("format") != spec.format:
        return f"made from {manifest.get('format')} files, the registry now says {spec.format}"
    sources = manifest.get("sources", {})
    if set(sources) not in [set(s) for s in spec.file_sets]:
        return f"made from {sorted(sources)}, which is not one of the registry's file sets"
    stats = manifest.get("source_stats", {})
    for fname, sha in sources.items():
        expected = spec.files[fname].sha256
        if expected and expected != sha:
            return f"{fname} had sha256 {sha}, the registry now says {expected}"
        if not expected and fname in stats:
            # No registry checksum to compare with: a changed file in the cache is the signal.
            try:
                st = (cache.files_dir(spec.name, cache_dir) / fname).stat()
            except OSError:
                continue
            if [st.st_size, st.st_mtime_ns] != stats[fname]:
                return f"{fname} in the cache changed since the arrays were made from it"
    return None


def _source_files(spec: DatasetSpec, cache_dir, download: bool, progress) -> dict[str, Path]:
    from .acquire import cached, fetch

    if download:
        return fetch(spec.name, cache_dir=cache_dir, progress=progress)
    have = cached(spec.name, cache_dir=cache_dir)
    for fs in spec.file_sets:
        if all(f in have for f in fs):
            return {f: have[f] for f in fs}
    options = " or ".join(" + ".join(fs) for fs in spec.file_sets)
    missing = sorted({f for fs in spec.file_sets for f in fs if f not in have})
    where = cache.files_dir(spec.name, cache_dir)
    raise OfflineError(
        f"{spec.name}: not prepared yet and its files are not in the cache ({where}); "
        f"download=False forbids fetching them. Needed: {options} (missing: "
        f"{', '.join(missing)}). Run `dlsets fetch {spec.name}` (or `dlsets fetch {spec.name} "
        "--from DIR` with the files already downloaded), or call load with download=True."
    )


def _parse(spec: DatasetSpec, files: dict[str, Path], progress):
    """Source files -> (arrays for the prepared cache, manifest facts)."""
    sources = {f: spec.files[f].sha256 for f in files}
    stats = {}
    extra: dict[str, Any] = {}
    if spec.format != "idx" and len(files) != 1:
        raise FormatError(
            f"{spec.name}: a {spec.like}-like dataset is one archive, but its file set has "
            f"{len(files)} ({', '.join(files)}); list only one of them in the registry entry"
        )
    if spec.format == "idx":
        x_tr, y_tr, x_te, y_te = _read_idx_set(spec, files)
        arrays = {"train_images": x_tr, "train_labels": y_tr,
                  "test_images": x_te, "test_labels": y_te}
    elif spec.format in ("cifar10", "cifar100"):
        from .readers.cifar import read_cifar_tar

        (fname, path), = files.items()
        c = read_cifar_tar(path, coarse=spec.format == "cifar100", name=fname)
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
        n, sha, stat = _read_notmnist(spec, fname, path, progress)
        sources[fname] = spec.files[fname].sha256 or sha
        stats[fname] = stat
        arrays = {"train_images": n.x_train, "train_labels": n.y_train,
                  "test_images": n.x_test, "test_labels": n.y_test}
        extra["skipped"] = n.skipped
        extra["decoder"] = n.decoder
        extra["split_rule"] = "per class, lowest sha256('<letter>/<file>') (n+5)//10 to test"
    else:
        raise FormatError(f"{spec.name}: no loader for format {spec.format!r}")
    for s in ("train", "test"):
        x, y = arrays[f"{s}_images"], arrays[f"{s}_labels"]
        if x.dtype != np.uint8 or tuple(x.shape[1:]) != tuple(spec.image_shape):
            raise FormatError(
                f"{spec.name}: {s} images are {x.dtype} {x.shape[1:]}, expected uint8 "
                f"{tuple(spec.image_shape)} (the layout of {spec.like})"
            )
        if len(x) != len(y):
            raise FormatError(f"{spec.name}: {len(x)} {s} images but {len(y)} labels")
    _check_labels(spec, ", ".join(files), "labels",
                  [arrays["train_labels"], arrays["test_labels"]], len(spec.classes))
    counts = {s: np.bincount(arrays[f"{s}_labels"], minlength=len(spec.classes)).tolist()
              for s in ("train", "test")}
    manifest = {"name": spec.name, "format": spec.format, "sources": sources,
                "source_stats": stats, "counts": counts, "skipped": [], **extra}
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


def _idx_role(fname: str) -> tuple[str | None, str | None]:
    n = fname.lower()
    split = "test" if ("t10k" in n or "test" in n) else "train" if "train" in n else None
    kind = ("labels" if ("label" in n or "idx1" in n)
            else "images" if ("image" in n or "idx3" in n) else None)
    return split, kind


def _read_idx_set(spec: DatasetSpec, files: dict[str, Path]):
    if len(files) == 1 and next(iter(files)).lower().endswith(".npz"):
        from .readers.npz import read_mnist_npz

        (fname, path), = files.items()
        return read_mnist_npz(path, name=fname)
    from .readers.idx import read_idx

    roles = {}
    for fname in files:
        role = _idx_role(fname)
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
    out = []
    for s, k in wanted:
        fname = roles[(s, k)]
        a = read_idx(files[fname], name=fname)
        if a.dtype != np.uint8:
            raise FormatError(f"{fname}: IDX {k} of type {a.dtype}, expected unsigned bytes")
        if k == "labels" and a.ndim != 1:
            raise FormatError(f"{fname}: labels have shape {a.shape}, expected (N,)")
        out.append(a)
    return tuple(out)


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


def _read_notmnist(spec, fname, path, progress):
    from .progress import bar
    from .readers.notmnist import read_notmnist_tar

    st = os.stat(path)
    with open(path, "rb") as raw, bar(st.st_size, f"{spec.name}: decoding", progress=progress,
                                      unit="B") as pbar:
        reader = _HashingReader(raw, pbar.update)
        buffered = io.BufferedReader(reader, 1 << 20)
        n = read_notmnist_tar(buffered, classes=spec.classes,
                              image_shape=tuple(spec.image_shape), name=fname)
        while buffered.read(1 << 20):  # the tar stream may stop before the end: hash it all
            pass
    if n.skipped:
        log.warning("%s: skipped %d unreadable image(s): %s", spec.name, len(n.skipped),
                    ", ".join(n.skipped[:10]) + (" ..." if len(n.skipped) > 10 else ""))
    return n, reader.sha256.hexdigest(), [st.st_size, st.st_mtime_ns]


# --- what the caller gets ------------------------------------------------------------------


def _class_names(spec: DatasetSpec, manifest: dict, coarse: bool) -> tuple[str, ...]:
    """Names from the archive's own meta files when it has them (CIFAR), unless a user entry
    names its classes itself; else the registry's."""
    names = tuple(spec.coarse_classes if coarse else spec.classes)
    found = tuple(manifest.get("archive_coarse_classes" if coarse else "archive_classes") or ())
    named_by_user = (not spec.builtin and not coarse
                     and names != tuple(registry.get(spec.like).classes))
    if len(found) == len(names) and not named_by_user:
        return found
    return names


def _info(spec: DatasetSpec, manifest: dict, label_mode: str, folder: Path) -> dict:
    coarse = label_mode == "coarse"
    names = _class_names(spec, manifest, coarse)
    counts = manifest.get("coarse_counts" if coarse else "counts", {})
    arrays = manifest["arrays"]
    prefix = "coarse_" if coarse else ""
    splits = {}
    for s in ("train", "test"):
        splits[s] = {
            "images_shape": list(arrays[f"{s}_images"]["shape"]),
            "labels_shape": list(arrays[f"{s}_{prefix}labels"]["shape"]),
            "class_counts": dict(zip(names, counts.get(s, []), strict=False)),
        }
    skipped = list(manifest.get("skipped", []))
    info = {
        "name": spec.name,
        "format": spec.format,
        "label_mode": label_mode,
        "sources": dict(manifest["sources"]),
        "splits": splits,
        "skipped": skipped,
        "skipped_count": len(skipped),
        "prepared_dir": str(folder),
    }
    for key in ("decoder", "split_rule"):
        if key in manifest:
            info[key] = manifest[key]
    return info


def _convert(x: np.ndarray, dtype: str, channels: str | None) -> np.ndarray:
    """Stored uint8 NHW / NHWC -> the requested layout and dtype (a view when possible)."""
    x = np.asarray(x)  # a plain ndarray over the (copy-on-write) memory map
    if x.ndim == 3 and channels is not None:
        x = x[:, None] if channels == "first" else x[..., None]
    elif x.ndim == 4 and channels == "first":
        x = x.transpose(0, 3, 1, 2)
    if dtype == "float32":
        out = x.astype(np.float32, order="C")
        out /= 255.0
        return out
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


class _Converted:
    """Lazily converted rows of a stored array, so HDF5 variants are written block by block."""

    def __init__(self, x: np.ndarray, dtype: str, channels: str | None):
        self._x, self._dtype, self._channels = x, dtype, channels
        probe = _convert(x[:1], dtype, channels)
        self.shape = (len(x), *probe.shape[1:])
        self.dtype = probe.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        return _convert(self._x[key], self._dtype, self._channels)


def _hdf5_dataset(spec, arrays, manifest, folder, info, classes, dtype, channels, prefix):
    import h5py

    from .export import write_hdf5

    variant = f"{dtype}-{channels or 'default'}-{prefix or 'fine_'}labels"
    path = folder / prepared.HDF5_DIR / f"{variant}.h5"
    sources = json.dumps(dict(manifest["sources"]), sort_keys=True)
    f = _open_hdf5(path, sources, arrays)
    if f is None:
        from filelock import FileLock

        with FileLock(str(folder.parent / "prepared.lock")):
            f = _open_hdf5(path, sources, arrays)
            if f is None:
                # Under the lock, temp files of this variant are leftovers of a killed writer.
                for leftover in path.parent.glob(f".{path.name}.*.tmp"):
                    leftover.unlink(missing_ok=True)
                splits = {s: (_Converted(arrays[f"{s}_images"], dtype, channels),
                              arrays[f"{s}_{prefix}labels"]) for s in ("train", "test")}
                write_hdf5(path, splits, classes, manifest["sources"], dataset=spec.name)
                _record_hdf5_sha(path)
                f = h5py.File(path, "r")
    split = {s: Split(f[s]["images"], f[s]["labels"]) for s in ("train", "test")}
    for s in ("train", "test"):
        info["splits"][s]["images_shape"] = list(split[s].images.shape)
    info["dtype"] = dtype
    info["hdf5"] = str(path)
    return Dataset(spec.name, split["train"], split["test"], tuple(classes), info, f.close)


def _hdf5_sha_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.sha256")


def _record_hdf5_sha(path: Path) -> None:
    """Store the sha256 of a freshly written HDF5 variant beside it, for verify_prepared."""
    from .atomic import replacing

    with replacing(_hdf5_sha_path(path)) as tmp:
        tmp.write_text(prepared.file_sha256(path) + "\n", encoding="ascii")


def _hdf5_problem(path: Path) -> str | None:
    """What is wrong with a prepared HDF5 variant (hashed in full), None when nothing."""
    try:
        recorded = _hdf5_sha_path(path).read_text(encoding="ascii").strip()
    except (OSError, ValueError):
        return "no sha256 was recorded when it was written"
    try:
        sha = prepared.file_sha256(path)
    except OSError as exc:
        return f"cannot be read ({exc})"
    return None if sha == recorded else f"sha256 {sha}, recorded {recorded}"


def _open_hdf5(path: Path, sources: str, arrays):
    """The prepared HDF5 file opened read-only, or None when missing or not matching."""
    import h5py

    if not path.is_file():
        return None
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        log.warning("%s cannot be opened (%s); rebuilding it", path, exc)
        return None
    try:
        ok = f.attrs.get("sources") == sources and all(
            f[f"{s}/images"].shape[0] == len(arrays[f"{s}_images"])
            and f[f"{s}/labels"].shape[0] == len(arrays[f"{s}_labels"])
            for s in ("train", "test")
        )
    except (KeyError, OSError):
        ok = False
    if not ok:
        f.close()
        log.warning("%s does not match the prepared arrays; rebuilding it", path)
        return None
    return f
