"""Load any dataset as NumPy arrays (or HDF5 datasets) in one uniform layout.

``load(name)`` returns a :class:`~dlsets.data.dataset.Dataset`; ``load_mnist()`` and friends return
keras' ``((x_train, y_train), (x_test, y_test))`` tuples. Images are uint8, channels-last:
(N, 28, 28) greyscale, (N, 32, 32, 3) CIFAR; labels (N,) uint8 everywhere.

``load`` checks its options and dispatches through the table of sources
(:mod:`dlsets.sources.table`): an HDF5 file dlsets wrote, a folder of images, a Kaggle dataset
or a registry dataset (:mod:`dlsets.sources.builtin`: its first load parses the downloaded
files once into ``prepared_dir(name)``, later loads memory-map those arrays).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..data.dataset import Dataset
from ..errors import OptionError
from . import registry, table
from .builtin_prepare import prepared_info, verify_prepared  # noqa: F401  (importable from here)
from .load_options import (  # noqa: F401  (importable from here, as before the split)
    CHANNELS,
    DTYPES,
    FORMATS,
    LABEL_MODES,
    NOTMNIST_VARIANTS,
    check_option,
    convert,
)

PathLike = str | os.PathLike
_check = check_option


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
    ``val_seed``, the same on every machine (rule: :mod:`dlsets.data.splits`). Both are then
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
    return table.source_for(name, "load").load(
        name, dtype=dtype, channels=channels, cache_dir=cache_dir, download=download,
        format=format, label_mode=label_mode, progress=progress, variant=variant, extra=extra,
        val=val, val_seed=val_seed)


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
