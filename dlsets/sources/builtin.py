"""The registry's datasets (built-in and user entries) as a source, last in the table: loaded
from their prepared copy (NumPy memory maps or an HDF5 variant), fetched, verified, removed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..data.dataset import SPLITS, Dataset, Split
from ..errors import OptionError
from ..store import cache, prepared
from . import registry
from .builtin_prepare import (
    _extra_splits,
    _for_variant,
    _prepared_arrays,
    _prepared_lock,
    _record_hdf5_sha,
    _variant,
)
from .load_options import Converted, class_names, convert, dataset_info, labels_key, with_validation
from .table import Source, register

log = logging.getLogger("dlsets")


def load_registry(name, *, dtype="uint8", channels=None, cache_dir=None, download=True,
                  format="numpy", label_mode="fine", progress=None, variant=None, extra=False,
                  val=None, val_seed=0) -> Dataset:
    """Registry dataset ``name`` as :func:`dlsets.load` returns it (options checked there)."""
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
    info = dataset_info(spec, manifest, label_mode, folder, names)
    prefix = "coarse_" if label_mode == "coarse" else ""
    classes = class_names(spec, manifest, label_mode == "coarse")
    if format == "hdf5":
        ds = _hdf5_dataset(spec, arrays, manifest, folder, info, classes, dtype, channels,
                           prefix, wanted, cache.prepared_lock_path(spec.name, cache_dir))
        return ds if val is None else with_validation(ds, val, val_seed)
    splits = {}
    for s in names:
        x = convert(arrays[f"{s}_images"], dtype, channels)
        key = labels_key(s, prefix)
        splits[s] = Split(x, np.asarray(arrays[key]) if key in arrays else None)
        info["splits"][s]["images_shape"] = list(x.shape)
    info["dtype"] = dtype
    info["channels"] = channels
    if "train_folds" in arrays:
        info["folds"] = np.array(arrays["train_folds"])
    ds = Dataset(spec.name, splits.pop("train"), splits.pop("test"), tuple(classes), info,
                 extra=splits)
    return ds if val is None else with_validation(ds, val, val_seed)


def need_hdf5_room(name: str, count: int, out, what: str, hint: str = "") -> None:
    """Before loading anything: a SpaceError (``what``, ``hint``) when the disk under ``out``
    lacks room for an HDF5 file of ``count`` samples of registry dataset ``name`` (the size
    follows from its layout)."""
    from ..formats.h5 import hdf5_bytes
    from ..store import space

    space.need_disk(Path(out).absolute().parent,
                    hdf5_bytes(count, registry.get(name).image_shape), what, hint)


def _hdf5_dataset(spec, arrays, manifest, folder, info, classes, dtype, channels, prefix,
                  wanted, lock: Path):
    import h5py

    from ..outputs.export import write_hdf5

    names = (*SPLITS, *wanted)
    layout = f"{dtype}-{channels or 'default'}-{prefix or 'fine_'}labels" + "".join(
        f"+{s}" for s in wanted)
    path = folder / prepared.HDF5_DIR / f"{layout}.h5"
    sources = json.dumps(dict(manifest["sources"]), sort_keys=True)
    keys = {s: labels_key(s, prefix) for s in names}
    f = _open_hdf5(path, sources, arrays, keys)
    if f is None:
        with _prepared_lock(spec, lock):
            f = _open_hdf5(path, sources, arrays, keys)
            if f is None:
                # Under the lock, temp files of this variant are leftovers of a killed writer.
                for leftover in path.parent.glob(f".{path.name}.*.tmp"):
                    leftover.unlink(missing_ok=True)
                splits = {s: (Converted(arrays[f"{s}_images"], dtype, channels),
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


class RegistrySource(Source):
    """The registry's datasets: every name no other source claims (an unknown one fails with
    the registry's "unknown dataset" and its suggestions)."""

    order = 1000
    kind = "registry"

    def claims(self, name) -> bool:
        return True

    load = staticmethod(load_registry)

    # imported on use: a load from the cache needs none of them (nor requests, nor filelock)
    @staticmethod
    def fetch(*args, **kwargs):
        from . import builtin_fetch

        return builtin_fetch.fetch(*args, **kwargs)

    @staticmethod
    def cached(*args, **kwargs):
        from . import builtin_fetch

        return builtin_fetch.cached(*args, **kwargs)

    @staticmethod
    def status(*args, **kwargs):
        from . import builtin_fetch

        return builtin_fetch.status(*args, **kwargs)

    @staticmethod
    def verify(*args, **kwargs):
        from . import builtin_verify

        return builtin_verify.verify(*args, **kwargs)

    @staticmethod
    def place(name, *, cache_dir=None):
        registry.get(name)  # an unknown name fails with the registry's suggestions
        return cache.dataset_dir(name, cache_dir)

    @staticmethod
    def remove(*args, **kwargs):
        from . import builtin_verify

        return builtin_verify.remove(*args, **kwargs)


register(RegistrySource())
