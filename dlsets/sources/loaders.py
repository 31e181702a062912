"""Load any registry dataset as NumPy arrays (or HDF5 datasets) in one uniform layout.

``load(name)`` returns a :class:`~dlsets.dataset.Dataset`; ``load_mnist()`` and friends return
keras' ``((x_train, y_train), (x_test, y_test))`` tuples. Images are uint8, channels-last:
(N, 28, 28) greyscale, (N, 32, 32, 3) CIFAR; labels (N,) uint8 everywhere.

The first load parses the downloaded files once into ``prepared_dir(name)`` (see
:mod:`dlsets.prepared`); later loads memory-map those arrays. A prepared copy made from other
source files, or damaged, is rebuilt, never returned.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import SPLITS, Dataset, Split
from ..errors import FormatError, OfflineError, OptionError
from ..store import cache, prepared
from . import registry
from .registry import DatasetSpec

log = logging.getLogger("dlsets")

PathLike = str | os.PathLike
DTYPES = ("uint8", "float32")
CHANNELS = (None, "last", "first")
FORMATS = ("numpy", "hdf5")
LABEL_MODES = ("fine", "coarse")
NOTMNIST_VARIANTS = ("small", "large")
# Arrays a format's prepared copy holds beyond each split's images and labels.
_FORMAT_ARRAYS = {"cifar100": ("train_coarse_labels", "test_coarse_labels"),
                  "stl10": ("train_folds",)}


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
    variant: str | None = None,
    extra: bool | str | Sequence[str] = False,
    val: float | int | None = None,
    val_seed: int = 0,
) -> Dataset:
    """Load dataset ``name`` (built-in or user registry entry) into a :class:`Dataset`; a path
    to a folder of images is loaded by :func:`dlsets.load_folder` (its defaults; ``val=`` too),
    an HDF5 file dlsets wrote (``augment --out``) as its read-only h5py datasets.

    Images: uint8 (N, H, W) greyscale or (N, H, W, 3) colour by default; ``dtype="float32"``
    scales them to [0, 1]; ``channels="last"`` always gives NHWC ((N, 28, 28, 1) for greyscale),
    ``"first"`` always NCHW. Labels: (N,) uint8; ``label_mode="coarse"`` (CIFAR-100 only) gives
    the 20 superclasses and their names in ``classes``. uint8 images in the default layout are
    copy-on-write memory maps of the prepared copy, labels in-memory copies (hashed on every
    load): both writable, and writes never reach the cache. ``format="hdf5"`` returns read-only
    h5py datasets (close with ``ds.close()`` or ``with``). With ``download=False`` nothing is
    downloaded: missing files raise OfflineError saying which and how to get them.

    ``variant`` picks one of the datasets packed in the same files (EMNIST: ``"byclass"``,
    ``"balanced"``, ...; each has its own classes and prepared copy). ``extra`` adds the
    dataset's optional splits (True: all of them; or their names): SVHN's ``"extra"``, STL-10's
    ``"unlabeled"`` (labels None). They are reached as ``ds["extra"]``, listed in
    ``ds.split_names``, and their files are fetched only when asked for.
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
        from ..augment.params import check_seed
        from ..data.splits import check_val

        check_val(val)
        check_seed(val_seed)
    from . import h5file

    if h5file.is_file(name):  # a file dlsets wrote: read back as it is
        ds = h5file.load_file(name)
        return ds if val is None else _with_validation(ds, val, val_seed)
    if _is_folder(name):
        from .folders import load_folder  # a folder of images, as on the command line

        if format != "numpy" or label_mode != "fine" or variant is not None or extra:
            raise OptionError(f"{name} is a folder of images: format=, label_mode=, variant= "
                              "and extra= apply to registry datasets; see dlsets.load_folder "
                              "for a folder's options (size=, color=, resize=, test=, ...)")
        return load_folder(name, dtype=dtype, channels=channels, cache_dir=cache_dir,
                           progress=progress, download=download, val=val, val_seed=val_seed)
    if name.startswith("kaggle:") or registry.get(name).format == "kaggle":
        from . import kaggle  # Kaggle datasets: see dlsets.kaggle (image folders or `like`)

        kw = dict(dtype=dtype, channels=channels, cache_dir=cache_dir, download=download,
                  progress=progress)
        if format != "numpy":
            raise OptionError(f"format={format!r}: Kaggle datasets load as NumPy arrays; "
                              "write HDF5 with ds.to_hdf5(path)")
        if name.startswith("kaggle:"):
            ds = kaggle.load_kaggle(name, **kw)
        else:
            ds = kaggle.load_entry(name, label_mode=label_mode, **kw)
        return ds if val is None else _with_validation(ds, val, val_seed)
    spec = registry.get(name)
    if label_mode == "coarse" and spec.format != "cifar100":
        raise OptionError(
            f"label_mode='coarse' exists for CIFAR-100-like datasets only; {name} has "
            f"{spec.format} labels, use label_mode='fine'"
        )
    variant = _variant(spec, variant)
    wanted = _extra_splits(spec, extra)
    spec = _for_variant(spec, variant)
    arrays, manifest = _prepared_arrays(spec, cache_dir, download, progress, variant, wanted)
    folder = cache.prepared_dir(spec.name, cache_dir, variant)
    names = (*SPLITS, *wanted)
    info = _info(spec, manifest, label_mode, folder, names)
    prefix = "coarse_" if label_mode == "coarse" else ""
    classes = _class_names(spec, manifest, label_mode == "coarse")
    if format == "hdf5":
        ds = _hdf5_dataset(spec, arrays, manifest, folder, info, classes, dtype, channels,
                           prefix, wanted, cache.prepared_lock_path(spec.name, cache_dir))
        return ds if val is None else _with_validation(ds, val, val_seed)
    splits = {}
    for s in names:
        x = _convert(arrays[f"{s}_images"], dtype, channels)
        key = _labels_key(s, prefix)
        splits[s] = Split(x, np.asarray(arrays[key]) if key in arrays else None)
        info["splits"][s]["images_shape"] = list(x.shape)
    info["dtype"] = dtype
    info["channels"] = channels
    if "train_folds" in arrays:
        info["folds"] = np.array(arrays["train_folds"])
    ds = Dataset(spec.name, splits.pop("train"), splits.pop("test"), tuple(classes), info,
                 extra=splits)
    return ds if val is None else _with_validation(ds, val, val_seed)


def _is_folder(name) -> bool:
    """Whether ``name`` means a folder of images rather than a registry name: a path (a
    separator, or a leading "." or "~"), or a bare word that is no registry name but a
    folder."""
    if isinstance(name, os.PathLike):
        return True
    if not isinstance(name, str) or name.startswith("kaggle:"):
        return False
    if "/" in name or os.sep in name or name.startswith((".", "~")):
        return True
    return name not in registry.names() and Path(name).is_dir()


def _with_validation(ds: Dataset, val, seed) -> Dataset:
    from ..data.splits import with_validation

    try:
        return with_validation(ds, val, seed=seed)
    except BaseException:
        ds.close()
        raise


def _labels_key(split: str, prefix: str = "") -> str:
    """The prepared array of ``split``'s labels (coarse ones exist for train and test only)."""
    return f"{split}_{prefix if split in SPLITS else ''}labels"


def _variant(spec: DatasetSpec, variant: str | None) -> str | None:
    """The variant to load: ``variant`` checked, or the dataset's default (None: it has none)."""
    if not spec.variants:
        if variant is not None:
            raise OptionError(f"{spec.name} has no variants; leave variant={variant!r} out")
        return None
    if variant is None:
        return spec.default_variant or next(iter(spec.variants))
    if variant not in spec.variants:
        raise OptionError(f"{spec.name} has no variant {variant!r}; use one of "
                          f"{list(spec.variants)}")
    return variant


def _for_variant(spec: DatasetSpec, variant: str | None) -> DatasetSpec:
    return replace(spec, classes=spec.variants[variant].classes) if variant else spec


def _extra_splits(spec: DatasetSpec, extra) -> tuple[str, ...]:
    """Names of the optional splits asked for by ``extra`` (False, True, a name or names)."""
    have = tuple(spec.extra_splits)
    if extra is None or extra is False:
        return ()
    if extra is True:
        return have
    names = [extra] if isinstance(extra, str) else list(extra)
    for n in names:
        if n not in have:
            raise OptionError(
                f"{spec.name} has no extra split {n!r}; "
                + (f"use one of {list(have)}" if have else "it has train and test only")
            )
    return tuple(n for n in have if n in names)


def prepared_info(name: str, *, cache_dir: PathLike | None = None,
                  variant: str | None = None) -> dict | None:
    """Facts about the prepared copy of ``name`` (shapes, class counts, source sha256,
    skipped files), or None when there is none (or it is stale); never loads or downloads.
    For a dataset with variants, of ``variant`` (default: the default one)."""
    spec = registry.get(name)
    variant = _variant(spec, variant)
    spec = _for_variant(spec, variant)
    folder = cache.prepared_dir(name, cache_dir, variant)
    manifest = prepared.read_manifest(folder)
    if (manifest is None or _layout_problem(spec, manifest)
            or _stale(spec, manifest, cache_dir, variant) or prepared.problem(folder, manifest)):
        return None
    return _info(spec, manifest, "fine", folder, tuple(manifest.get("splits", SPLITS)))


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


def load_emnist(split: str = "balanced", *, dtype: str = "uint8", channels: str | None = None,
                cache_dir: PathLike | None = None, download: bool = True,
                format: str = "numpy", progress: bool | None = None):
    """One EMNIST split as ``((x_train, y_train), (x_test, y_test))``: x (N, 28, 28) uint8,
    upright (the files store the glyphs transposed), y (N,) uint8.

    ``split`` is EMNIST's word for its six variants: "byclass" (62 classes), "bymerge" and
    "balanced" (47), "letters" (26, labels 0..25 = a..z; the files count from 1), "digits",
    "mnist" (10). All six come from one 562 MB archive, downloaded once; each is prepared
    on its first load. Class names: ``dlsets.load("emnist", variant=split).classes``.
    """
    _check("split", split, tuple(registry.get("emnist").variants))
    return _tuples("emnist", variant=split, dtype=dtype, channels=channels, cache_dir=cache_dir,
                   download=download, format=format, progress=progress)


def load_svhn(extra: bool = False, *, dtype: str = "uint8", channels: str | None = None,
              cache_dir: PathLike | None = None, download: bool = True, format: str = "numpy",
              progress: bool | None = None):
    """SVHN cropped digits as ``((x_train, y_train), (x_test, y_test))``: x (N, 32, 32, 3)
    uint8 like CIFAR, y (N,) uint8 in 0..9 (the files' label 10 is the digit 0).

    ``extra=True`` appends the 531,131 'extra' images to the training set (as the SVHN papers
    train), fetching the 1.3 GB extra_32x32.mat on first use; the result is a new array of
    604,388 images. To keep them apart use ``dlsets.load("svhn", extra=True)["extra"]``.
    Needs scipy for the MATLAB files: ``pip install 'dlsets[scipy]'``.
    """
    if extra and format == "hdf5":
        raise OptionError("load_svhn(extra=True) concatenates arrays in memory; with "
                          "format='hdf5' use dlsets.load('svhn', extra=True, format='hdf5') and "
                          "read ds['extra'] beside ds.train")
    ds = load("svhn", dtype=dtype, channels=channels, cache_dir=cache_dir, download=download,
              format=format, progress=progress, extra=bool(extra))
    if not extra:
        return ds.as_tuples()
    more = ds["extra"]
    x = np.concatenate([ds.train.images, more.images])
    y = np.concatenate([ds.train.labels, more.labels])
    return (x, y), (ds.test.images, ds.test.labels)


def load_stl10(*, unlabeled: bool = False, fold: int | None = None, dtype: str = "uint8",
               channels: str | None = None, cache_dir: PathLike | None = None,
               download: bool = True, format: str = "numpy", progress: bool | None = None):
    """STL-10 as ``((x_train, y_train), (x_test, y_test))``: x (5000|8000, 96, 96, 3) uint8,
    y (N,) uint8 in 0..9 (the files count from 1).

    ``fold=k`` (0..9) keeps only the 1,000 training images of predefined fold k, as the
    STL-10 protocol trains (``dlsets.load("stl10").info["folds"]`` holds all ten).
    ``unlabeled=True`` returns a third item, the 100,000 unlabelled images
    ``x_unlabeled`` (N, 96, 96, 3): ``(train, test, x_unlabeled)``; they are prepared (2.8 GB
    on disk) only the first time they are asked for.
    """
    if fold is not None:
        if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < 10:
            raise OptionError(f"fold={fold!r} is not valid; use None or one of {list(range(10))}")
        if format == "hdf5":
            raise OptionError("fold= selects images in memory; with format='hdf5' index "
                              "ds.train with ds.info['folds'][k] yourself")
    ds = load("stl10", dtype=dtype, channels=channels, cache_dir=cache_dir, download=download,
              format=format, progress=progress, extra=("unlabeled",) if unlabeled else ())
    (x_tr, y_tr), test = ds.as_tuples()
    if fold is not None:
        idx = ds.info["folds"][int(fold)]
        x_tr, y_tr = x_tr[idx], y_tr[idx]
    if unlabeled:
        return (x_tr, y_tr), test, ds["unlabeled"].images
    return (x_tr, y_tr), test


# --- prepared arrays: find, check, build ---------------------------------------------------


def _prepared_arrays(spec: DatasetSpec, cache_dir, download: bool, progress,
                     variant: str | None = None, wanted: tuple[str, ...] = ()):
    folder = cache.prepared_dir(spec.name, cache_dir, variant)
    got = _usable(spec, folder, cache_dir, variant=variant, wanted=wanted)
    if got is not None:
        return got
    # One process builds; the others wait here and then find the finished copy.
    with _prepared_lock(spec, cache.prepared_lock_path(spec.name, cache_dir)):
        # Quiet: whatever is wrong was logged by the check above (once, not twice); this one
        # only looks whether another process rebuilt the copy while we waited for the lock.
        got = _usable(spec, folder, cache_dir, quiet=True, variant=variant, wanted=wanted)
        if got is not None:
            return got
        files = _source_files(spec, cache_dir, download, progress, wanted)
        manifest = _build(spec, files, folder, progress, variant, wanted)
        log.info("%s: prepared arrays written to %s", spec.name, folder)
        opened = prepared.open_arrays(folder, manifest)
        if opened is None:
            raise FormatError(
                f"{spec.name}: the prepared arrays in {folder} could not be read back right "
                "after writing them; check the disk (space, permissions) and try again"
            )
        return opened, manifest


def _usable(spec: DatasetSpec, folder: Path, cache_dir, quiet: bool = False,
            variant: str | None = None, wanted: tuple[str, ...] = ()):
    manifest = prepared.read_manifest(folder)
    if manifest is None:
        if (folder / prepared.MANIFEST).exists():
            log.log(logging.DEBUG if quiet else logging.WARNING,
                    "%s: prepared arrays in %s are damaged (%s); rebuilding them", spec.name,
                    folder, prepared.manifest_problem(folder))
        return None
    why = _layout_problem(spec, manifest)
    if why:
        log.log(logging.DEBUG if quiet else logging.WARNING,
                "%s: prepared arrays in %s are damaged (%s); rebuilding them", spec.name,
                folder, why)
        return None
    why = _stale(spec, manifest, cache_dir, variant)
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
    expected = {*_FORMAT_ARRAYS.get(spec.format, ())}
    for s in (*SPLITS, *wanted):
        expected.add(f"{s}_images")
        if s in SPLITS or spec.extra_splits[s].labelled:
            expected.add(f"{s}_labels")
    missing = expected - set(arrays)
    if missing:
        # An extra split asked for the first time is no damage: rebuilt with it, said at info.
        first_time = all(m.split("_", 1)[0] in wanted for m in missing)
        level = logging.DEBUG if quiet else logging.INFO if first_time else logging.WARNING
        log.log(level, "%s: prepared arrays lack %s; rebuilding", spec.name, sorted(missing))
        return None
    return arrays, manifest


@contextlib.contextmanager
def _prepared_lock(spec: DatasetSpec, lock: Path):
    """``lock`` (the dataset's prepared.lock, for all its variants), held; a cache that cannot
    be written (read-only, full) is a WriteError / SpaceError that says what to do."""
    from ..store import space
    from ..store.locks import holding

    try:
        held = holding(lock)
        held.__enter__()
    except OSError as exc:
        if space.write_error(exc, lock, None, "") is exc:
            raise
        kind = space.SpaceError if exc.errno in space.FULL else space.WriteError
        raise kind(
            f"{spec.name}: cannot prepare its arrays in {lock.parent} ({exc.strerror or exc}); "
            "a cache that cannot be written can serve arrays prepared earlier, not make new "
            "ones: free some space there, or use another cache folder (DLSETS_CACHE, "
            "--cache-dir, cache_dir=)"
        ) from None
    try:
        yield
    finally:
        held.__exit__(None, None, None)


def _layout_problem(spec: DatasetSpec, manifest: dict) -> str | None:
    """What in a (well-formed) manifest does not fit ``spec``'s layout: the arrays it must
    have, images of the layout's shape in uint8, one uint8 label per image of a labelled
    split, class counts that add up (None when all fit). A load, ``info``, ``list`` and
    ``verify`` all ask this."""
    arrays = manifest["arrays"]
    if manifest.get("name") != spec.name:
        return f"the manifest is for {manifest.get('name')!r}"
    splits = manifest.get("splits", list(SPLITS))
    if not set(SPLITS) <= set(splits) or not set(splits) <= {*SPLITS, *spec.extra_splits}:
        return f"the manifest lists splits {splits}"
    expected = {*_FORMAT_ARRAYS.get(spec.format, ())}
    for s in splits:
        expected.add(f"{s}_images")
        if s in SPLITS or spec.extra_splits[s].labelled:
            expected.add(f"{s}_labels")
    missing = expected - set(arrays)
    if missing:
        return f"the manifest lacks arrays {sorted(missing)}"
    for split in splits:
        images = arrays[f"{split}_images"]
        shape = images["shape"]
        if images["dtype"] != "|u1" or shape[1:] != list(spec.image_shape):
            return (f"{split}_images is {images['dtype']} {shape}, expected |u1 "
                    f"(N, {', '.join(map(str, spec.image_shape))})")
        prefixes = [("", spec.classes, "counts")] if f"{split}_labels" in expected else []
        if spec.format == "cifar100" and split in SPLITS:
            prefixes.append(("coarse_", spec.coarse_classes, "coarse_counts"))
        for prefix, classes, counts_key in prefixes:
            labels = arrays[f"{split}_{prefix}labels"]
            if labels["dtype"] != "|u1" or labels["shape"] != shape[:1]:
                return (f"{split}_{prefix}labels is {labels['dtype']} {labels['shape']}, "
                        f"expected |u1 [{shape[0]}]")
            counts = manifest.get(counts_key, {}).get(split)
            if counts is not None and (len(counts) != len(classes) or sum(counts) != shape[0]):
                return (f"its {counts_key} for {split} ({len(counts)} classes, {sum(counts)} "
                        f"images) do not fit {len(classes)} classes and {shape[0]} images")
    return None


def verify_prepared(name: str, *, cache_dir: PathLike | None = None,
                    repair: bool = True) -> str | None:
    """Hash every prepared array of ``name`` and its HDF5 variants in full against the
    sha256 recorded when they were written (a load hashes only the labels).

    Returns None when all match (or nothing is prepared), else what is wrong. With ``repair``
    a damaged prepared folder is deleted, or only the damaged HDF5 variant, so the next load
    rebuilds it from the downloaded files; the message says so. Never loads or downloads.
    """
    spec = registry.get(name)
    folders = ([cache.prepared_dir(spec.name, cache_dir, v) for v in spec.variants]
               if spec.variants else [cache.prepared_dir(spec.name, cache_dir)])
    folders = [f for f in folders if f.exists()]
    if not folders:
        return None
    # Under the builders' lock: a copy being written is not mistaken for a damaged one.
    with _prepared_lock(spec, cache.prepared_lock_path(spec.name, cache_dir)):
        problems = [p for f in folders if (p := _verify_folder(spec, f, repair)) is not None]
    return "\n".join(problems) or None


def _verify_folder(spec: DatasetSpec, folder: Path, repair: bool) -> str | None:
    """What is wrong in one prepared folder (hashed in full), after deleting it or its
    damaged HDF5 variants when ``repair``; None when nothing. The caller holds the lock."""
    manifest = prepared.read_manifest(folder)
    # What makes a load rebuild the copy makes verify call it damaged: the two agree.
    if manifest is None:
        why = prepared.manifest_problem(folder)
    else:
        variant = manifest.get("variant")
        layout = (_for_variant(spec, variant) if variant in spec.variants
                  else spec if not spec.variants else None)
        why = ("made for no variant of this dataset" if layout is None
               else _layout_problem(layout, manifest) or prepared.verify(folder, manifest))
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


def _stale(spec: DatasetSpec, manifest: dict, cache_dir, variant: str | None = None
           ) -> str | None:
    """Why ``manifest`` was not made from the files ``spec`` names now (None if it was)."""
    if manifest.get("format") != spec.format:
        return f"made from {manifest.get('format')} files, the registry now says {spec.format}"
    if manifest.get("variant") != variant:
        return f"made for variant {manifest.get('variant')!r}, not {variant!r}"
    sources = manifest.get("sources", {})
    core = set(sources) - spec.optional_files()  # an extra split's files come on top of a set
    if core not in [set(s) for s in spec.file_sets] or not set(sources) <= set(spec.files):
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


def _source_files(spec: DatasetSpec, cache_dir, download: bool, progress,
                  wanted: tuple[str, ...] = ()) -> dict[str, Path]:
    """A complete file set, plus the files of the extra splits in ``wanted``."""
    from ..store import elsewhere
    from .acquire import cached, fetch

    more = tuple(f for s in wanted for f in spec.extra_splits[s].files)
    if download:
        files = fetch(spec.name, cache_dir=cache_dir, progress=progress)
        if more:
            files.update(fetch(spec.name, files=more, cache_dir=cache_dir, progress=progress))
        return files
    have = cached(spec.name, cache_dir=cache_dir)
    for fs in spec.file_sets:
        if all(f in have for f in (*fs, *more)):
            return {f: have[f] for f in (*fs, *more)}
    options = " or ".join(" + ".join((*fs, *more)) for fs in spec.file_sets)
    missing = sorted({f for fs in spec.file_sets for f in (*fs, *more) if f not in have})
    where = cache.files_dir(spec.name, cache_dir)
    raise OfflineError(
        f"{spec.name}: not prepared yet and its files are not in the cache ({where}); "
        f"download=False forbids fetching them. Needed: {options} (missing: "
        f"{', '.join(missing)}). Run `dlsets fetch {spec.name}` (or `dlsets fetch {spec.name} "
        "--from DIR` with the files already downloaded), or call load with download=True."
        + elsewhere.hint(spec.name, cache_dir)
    )


def _build(spec: DatasetSpec, files: dict[str, Path], folder: Path, progress,
           variant: str | None = None, wanted: tuple[str, ...] = ()) -> dict:
    """Parse the source files into the prepared folder; returns the manifest written."""
    npz = len(files) == 1 and next(iter(files)).lower().endswith(".npz")
    if spec.format == "idx" and not npz:
        return _build_idx(spec, files, folder)
    arrays, manifest = _parse(spec, files, progress, variant, wanted)
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


def _parse(spec: DatasetSpec, files: dict[str, Path], progress, variant: str | None = None,
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
        role = role or _idx_role(fname)[0]
        if role is None or role in roles:
            raise FormatError(f"{spec.name}: cannot tell which split {fname!r} holds; its name "
                              f"must say train or test (files: {', '.join(files)})")
        roles[role] = fname
    missing = [n for n in names if n not in roles]
    if missing:
        raise FormatError(f"{spec.name}: no file for {', '.join(missing)} among {list(files)}")
    return {n: roles[n] for n in names}


def _idx_role(fname: str) -> tuple[str | None, str | None]:
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


def _info(spec: DatasetSpec, manifest: dict, label_mode: str, folder: Path,
          split_names: Sequence[str] = SPLITS) -> dict:
    coarse = label_mode == "coarse"
    names = _class_names(spec, manifest, coarse)
    counts = manifest.get("coarse_counts" if coarse else "counts", {})
    if coarse:  # the extra splits have fine labels only
        counts = {**manifest.get("counts", {}), **counts}
    arrays = manifest["arrays"]
    prefix = "coarse_" if coarse else ""
    splits = {}
    for s in split_names:
        labels = arrays.get(_labels_key(s, prefix))
        splits[s] = {
            "images_shape": list(arrays[f"{s}_images"]["shape"]),
            # None: an unlabelled split (STL-10's unlabeled)
            "labels_shape": list(labels["shape"]) if labels else None,
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
    for key in ("decoder", "split_rule", "variant"):
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
        from ..store import space

        space.need_memory(4 * x.size, f"a float32 copy of {x.shape} images",
                          "load uint8 and convert batch by batch, or use format='hdf5'")
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


def _hdf5_dataset(spec, arrays, manifest, folder, info, classes, dtype, channels, prefix,
                  wanted, lock: Path):
    import h5py

    from ..outputs.export import write_hdf5

    names = (*SPLITS, *wanted)
    layout = f"{dtype}-{channels or 'default'}-{prefix or 'fine_'}labels" + "".join(
        f"+{s}" for s in wanted)
    path = folder / prepared.HDF5_DIR / f"{layout}.h5"
    sources = json.dumps(dict(manifest["sources"]), sort_keys=True)
    keys = {s: _labels_key(s, prefix) for s in names}
    f = _open_hdf5(path, sources, arrays, keys)
    if f is None:
        with _prepared_lock(spec, lock):
            f = _open_hdf5(path, sources, arrays, keys)
            if f is None:
                # Under the lock, temp files of this variant are leftovers of a killed writer.
                for leftover in path.parent.glob(f".{path.name}.*.tmp"):
                    leftover.unlink(missing_ok=True)
                splits = {s: (_Converted(arrays[f"{s}_images"], dtype, channels),
                              arrays.get(keys[s])) for s in names}
                write_hdf5(path, splits, classes, manifest["sources"], dataset=spec.name)
                _record_hdf5_sha(path)
                f = h5py.File(path, "r")
    split = {s: Split(f[s]["images"], f[s]["labels"] if "labels" in f[s] else None)
             for s in names}
    for s in names:
        info["splits"][s]["images_shape"] = list(split[s].images.shape)
    info["dtype"] = dtype
    info["channels"] = channels
    info["hdf5"] = str(path)
    if "train_folds" in arrays:
        info["folds"] = np.array(arrays["train_folds"])
    return Dataset(spec.name, split.pop("train"), split.pop("test"), tuple(classes), info,
                   f.close, extra=split)


def _hdf5_sha_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.sha256")


def _record_hdf5_sha(path: Path) -> None:
    """Store the sha256 of a freshly written HDF5 variant beside it, for verify_prepared."""
    from ..store import space

    with space.output(_hdf5_sha_path(path), 100, f"writing the checksum of {path.name}") as tmp:
        tmp.write_text(prepared.file_sha256(path) + "\n", encoding="ascii")


def _hdf5_problem(path: Path) -> str | None:
    """What is wrong with a prepared HDF5 variant (hashed in full), None when nothing."""
    try:
        from ..store.regular import read_bounded

        recorded = read_bounded(_hdf5_sha_path(path), 1024).decode("ascii").strip()
    except (OSError, ValueError):
        return "no sha256 was recorded when it was written"
    try:
        sha = prepared.file_sha256(path)
    except OSError as exc:
        return f"cannot be read ({exc})"
    return None if sha == recorded else f"sha256 {sha}, recorded {recorded}"


def _open_hdf5(path: Path, sources: str, arrays, label_keys: dict[str, str]):
    """The prepared HDF5 file opened read-only, or None when missing or not matching.
    ``label_keys``: split -> its labels array (absent from ``arrays`` when unlabelled)."""
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
            and (f[f"{s}/labels"].shape[0] == len(arrays[key]) if key in arrays
                 else "labels" not in f[s])
            for s, key in label_keys.items()
        )
    except (KeyError, OSError):
        ok = False
    if not ok:
        f.close()
        log.warning("%s does not match the prepared arrays; rebuilding it", path)
        return None
    return f
