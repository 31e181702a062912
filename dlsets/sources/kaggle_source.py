"""Kaggle datasets as a source: ``kaggle:OWNER/DATASET[/versions/N]`` or a registry entry with
a ``kaggle`` key (the work is in :mod:`dlsets.sources.kaggle`, imported when first needed)."""

from __future__ import annotations

from ..errors import OptionError, RegistryError
from . import registry
from .table import Source, register


def is_kaggle(name) -> bool:
    """Whether ``name`` is a ``kaggle:`` name or a registry entry with a ``kaggle`` key."""
    if not isinstance(name, str):
        return False
    if name.startswith("kaggle:"):
        return True
    try:  # an unknown name is the registry source's to report
        return registry.get(name).format == "kaggle"
    except RegistryError:
        return False


def is_entry(name) -> bool:
    """Whether ``name`` is a registry entry of a Kaggle dataset (not a ``kaggle:`` name)."""
    return is_kaggle(name) and not name.startswith("kaggle:")


class KaggleSource(Source):
    """Kaggle datasets: load, fetch (the archive) and remove; their verify is
    :func:`dlsets.sources.kaggle.verify` (it reports lines, not files)."""

    order = 30
    kind = "kaggle"

    def claims(self, name) -> bool:
        return is_kaggle(name)

    def load(self, name, *, dtype="uint8", channels=None, cache_dir=None, download=True,
             format="numpy", label_mode="fine", progress=None, variant=None, extra=False,
             val=None, val_seed=0):
        from . import kaggle  # Kaggle datasets: see dlsets.kaggle (image folders or `like`)
        from .load_options import with_validation

        kw = dict(dtype=dtype, channels=channels, cache_dir=cache_dir, download=download,
                  progress=progress)
        if format != "numpy":
            raise OptionError(f"format={format!r}: Kaggle datasets load as NumPy arrays; "
                              "write HDF5 with ds.to_hdf5(path)")
        if name.startswith("kaggle:"):
            ds = kaggle.load_kaggle(name, **kw)
        else:
            ds = kaggle.load_entry(name, label_mode=label_mode, **kw)
        return ds if val is None else with_validation(ds, val, val_seed)

    def fetch(self, name, *, cache_dir=None, progress=None, deadline=None, **_options):
        from .kaggle_fetch import _fetch

        store, fname, _, _ = _fetch(name, cache_dir, progress, deadline=deadline)
        return {fname: store.files / fname}

    def place(self, name, *, cache_dir=None):
        from .kaggle_fetch import dataset_dir

        return dataset_dir(name, cache_dir)

    def remove(self, name, *, cache_dir=None, wait):
        from .kaggle_fetch import remove

        return remove(name, cache_dir=cache_dir, wait=wait)


register(KaggleSource())
