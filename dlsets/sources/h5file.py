"""An HDF5 file that dlsets wrote (``augment --out``, ``expand_to_hdf5``, ``to_hdf5``,
``export``), read back as a :class:`~dlsets.Dataset` of read-only h5py datasets: rows are read
on demand, so a file bigger than memory feeds a training loop (see ``dlsets/fastread.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.dataset import SPLITS, Dataset, Split
from ..errors import DlsetsError, FormatError
from .table import Source, register

SUFFIXES = (".h5", ".hdf5")


def is_file(name: object) -> bool:
    """Whether ``name`` is an existing file with an HDF5 suffix."""
    return (isinstance(name, (str, os.PathLike)) and Path(name).suffix.lower() in SUFFIXES
            and Path(name).is_file())


def _names(value) -> tuple[str, ...]:
    return tuple(v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v)
                 for v in np.atleast_1d(value))


def load_file(path: str | os.PathLike) -> Dataset:
    """The splits of a dlsets HDF5 file (``/<split>/images``, ``labels``, ``masks``) as a
    Dataset of read-only h5py datasets; a split the file lacks (an expansion has only train)
    is empty. Close it with ``ds.close()`` or ``with``."""
    import h5py

    from ..formats.h5 import check_filters, check_stored_here

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FormatError(f"{path} cannot be opened as HDF5 ({exc})") from None
    try:
        found = {}
        for s, group in f.items():
            if isinstance(group, h5py.Group) and isinstance(group.get("images"), h5py.Dataset):
                for part in ("images", "labels", "masks"):
                    if isinstance(group.get(part), h5py.Dataset):
                        check_stored_here(f, group[part], path)
                        check_filters(group[part], path)
                _check_split(path, s, group)
                found[s] = Split(group["images"], group.get("labels"), group.get("masks"))
        if not found:
            raise FormatError(f"{path} holds no /<split>/images dataset: not a file dlsets "
                              "wrote (augment --out, expand_to_hdf5, to_hdf5, export)")
        shape = next(iter(found.values())).images.shape
        dtype = next(iter(found.values())).images.dtype
        for s in SPLITS:  # an empty split where the file has none
            found.setdefault(s, Split(np.empty((0, *shape[1:]), dtype), np.empty(0, np.uint8)))
        classes = _names(f.attrs["classes"]) if "classes" in f.attrs else ()
    except BaseException:
        f.close()
        raise
    extra = {s: v for s, v in found.items() if s not in SPLITS}
    info = {"name": path.stem, "format": "hdf5", "hdf5": str(path),
            "splits": {s: {"images_shape": list(v.images.shape)} for s, v in found.items()}}
    return Dataset(path.stem, found["train"], found["test"], classes, info, _close=f.close,
                   extra=extra)


VERIFY_BLOCK_BYTES = 64 << 20  # read this much of a dataset at a time when verifying


def verify_file(path: str | os.PathLike) -> list[str]:
    """Read an HDF5 file dlsets wrote in full (every chunk decoded, every check of
    :func:`load_file`): what is wrong, one line each; [] when all of it reads."""
    from ..errors import MissingDependencyError

    try:
        ds = load_file(path)
    except MissingDependencyError:
        raise
    except DlsetsError as exc:
        return [str(exc)]
    problems = []
    with ds:
        for name in ds.split_names:
            split = ds[name]
            for part in (split.images, split.labels, split.masks):
                if not hasattr(part, "id"):  # none, or an empty split the file lacks
                    continue
                row = int(np.prod(part.shape[1:], dtype=np.int64)) * part.dtype.itemsize
                step = max(1, VERIFY_BLOCK_BYTES // max(1, row))
                for a in range(0, part.shape[0], step):
                    try:
                        part[a:a + step]
                    except OSError as exc:
                        last = min(part.shape[0], a + step) - 1
                        problems.append(f"{path}: {part.name} rows {a}..{last} cannot be read "
                                        f"({exc}): the file is damaged; write it again")
                        break
    return problems


# deflate, the strongest filter h5py offers, shrinks data at most about 1032 times: a dataset
# that declares more than that over what it stores is sparse, not data dlsets wrote
_MAX_RATIO = 1032


def _check_split(path: Path, split: str, group) -> None:
    """A split is what dlsets writes: N numeric images (3 or 4 dimensions) whose declared size
    its stored bytes can hold, N integer labels, N integer masks; else FormatError."""
    images, labels, masks = group["images"], group.get("labels"), group.get("masks")

    def bad(what: str) -> FormatError:
        return FormatError(f"{path}: /{split}/{what}; not a file dlsets wrote (augment --out, "
                           "expand_to_hdf5, to_hdf5, export)")

    shape = images.shape
    if len(shape) not in (3, 4) or images.dtype.kind not in "uif":
        raise bad(f"images is {images.dtype} {shape}, not (N, H, W), (N, H, W, C) or (N, C, H, W) "
                  "numbers")
    declared = int(np.prod(shape, dtype=np.float64)) * images.dtype.itemsize
    stored = images.id.get_storage_size()
    if declared > _MAX_RATIO * stored + (1 << 20):
        raise bad(f"images declares {declared:,} bytes but the file stores {stored:,} of them")
    if labels is not None and (not hasattr(labels, "shape") or labels.shape != shape[:1]
                               or labels.dtype.kind not in "ui"):
        raise bad(f"labels is {getattr(labels, 'dtype', '?')} {getattr(labels, 'shape', '?')}, "
                  f"not {shape[0]} integers")
    if masks is not None and (not hasattr(masks, "shape") or len(masks.shape) not in (3, 4)
                              or masks.shape[0] != shape[0] or masks.dtype.kind not in "ui"):
        raise bad(f"masks is {getattr(masks, 'dtype', '?')} {getattr(masks, 'shape', '?')}, "
                  f"not {shape[0]} integer class maps")


class H5FileSource(Source):
    """An HDF5 file dlsets wrote, loaded back as it is (first in the table: a path)."""

    order = 10
    kind = "hdf5-file"

    def claims(self, name) -> bool:
        return is_file(name)

    def load(self, name, *, val=None, val_seed=0, **_options) -> Dataset:
        from .load_options import with_validation

        ds = load_file(name)
        return ds if val is None else with_validation(ds, val, val_seed)


register(H5FileSource())
