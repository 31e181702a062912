"""What the loaders return: a ``Dataset`` of two ``Split``s plus class names and facts."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OptionError

SPLITS = ("train", "test")


@dataclass(frozen=True, eq=False)  # eq on arrays would be elementwise, not a bool
class Split:
    """One split: ``images`` (N, ...) and ``labels`` (N,) uint8, or None for an unlabelled
    split (STL-10's unlabeled); ``masks`` (N, H, W) integer class maps for segmentation data,
    else None.

    Arrays are NumPy (images: copy-on-write memory maps for the uint8 layout) or, with
    ``format="hdf5"``, read-only h5py datasets. ``x, y = split`` unpacks images and labels.
    """

    images: Any
    labels: Any
    masks: Any = None

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.images, self.labels))

    def __repr__(self) -> str:
        def desc(a) -> str:
            return "None" if a is None else f"{getattr(a, 'dtype', '?')} {tuple(a.shape)}"

        masks = "" if self.masks is None else f", masks={desc(self.masks)}"
        return f"Split(images={desc(self.images)}, labels={desc(self.labels)}{masks})"

    def _repr_html_(self) -> str:
        from ..common.display import split_html

        classes = () if self.labels is None else tuple(
            str(c) for c in range(int(np.max(self.labels[:20_000]) + 1) if len(self) else 0))
        return split_html(self, classes)


@dataclass(eq=False)
class Dataset:
    """A loaded dataset: ``train`` and ``test`` splits, ``classes`` (names, index = label) and
    ``info`` (name, source files and their sha256, counts per class per split, skipped files).

    Datasets with more splits (a validation split, STL-10's unlabeled images, ...) hold them in
    ``extra``; they are reached like the others: ``ds["val"]`` or ``ds.val``.
    """

    name: str
    train: Split
    test: Split
    classes: tuple[str, ...]
    info: dict = field(default_factory=dict)
    _close: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    extra: dict[str, Split] = field(default_factory=dict)

    @property
    def split_names(self) -> tuple[str, ...]:
        """``("train", "test")`` followed by the names in ``extra``."""
        return (*SPLITS, *self.extra)

    def __getitem__(self, split: str) -> Split:
        if split == "train":
            return self.train
        if split == "test":
            return self.test
        if isinstance(split, str) and split in self.extra:
            return self.extra[split]
        raise OptionError(f"no split {split!r}; use one of {list(self.split_names)}")

    def __getattr__(self, name: str) -> Split:
        # only called for names not found normally: the extra splits, as attributes
        extra = self.__dict__.get("extra") or {}
        if name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def stats(self):
        """Per-channel ``(mean, std)`` of the train images in [0, 1] units, for
        ``normalize=ds.stats`` in the feeding adapters: the published values for the built-in
        datasets (registry), else measured on ``ds.train.images`` once (a :class:`Stats`)."""
        from .stats import from_registry, measure

        found = self.__dict__.get("_stats")
        if found is None:
            found = from_registry(_published_stats().get(self.name))
            if found is None:
                found = measure(self.train.images)
            self.__dict__["_stats"] = found
        return found

    def as_tuples(self) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
        """``((x_train, y_train), (x_test, y_test))``, as ``keras.datasets.X.load_data()``."""
        return (self.train.images, self.train.labels), (self.test.images, self.test.labels)

    def to_hdf5(self, path: str | os.PathLike, compression: str | None = None, *,
                overwrite: bool = False) -> Path:
        """Write ``/train/images`` ... ``/test/labels`` with ``classes`` and ``sources``
        attributes; ``compression`` is None (contiguous: the fastest to read), "gzip", "lzf" or
        "lz4" (the ``lz4`` extra: the fastest to decode). An existing file that dlsets did not
        write is refused unless ``overwrite``."""
        from ..outputs.export import to_hdf5

        return to_hdf5(self, path, compression=compression, overwrite=overwrite)

    def to_npz(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write an npz with ``x_train``, ``y_train``, ``x_test``, ``y_test``; an existing
        file that dlsets did not write is refused unless ``overwrite``."""
        from ..outputs.export import to_npz

        return to_npz(self, path, overwrite=overwrite)

    def to_caffe(self, folder: str | os.PathLike, *, value_range=(0.0, 1.0),
                 max_file_bytes: int | None = None) -> Path:
        """Write every split for Caffe's HDF5Data layer into ``folder``: ``<split>.txt`` list
        files of ``<split>_<k>.h5`` files holding ``data`` (N, C, H, W) float32 scaled into
        ``value_range`` and ``label`` (N,) float32, each file at most ``max_file_bytes``
        (default 512 MiB). See :mod:`dlsets.outputs.caffe`."""
        from ..outputs.caffe import DEFAULT_MAX_FILE_BYTES, to_caffe

        return to_caffe(self, folder, value_range=value_range,
                        max_file_bytes=DEFAULT_MAX_FILE_BYTES if max_file_bytes is None
                        else max_file_bytes)

    def to_convnetjs(self, folder: str | os.PathLike, *, prefix: str | None = None,
                     batch_size: int | None = None) -> Path:
        """Write train and test as ConvNetJS sprite sheets into ``folder``:
        ``<prefix>_batch_<i>.png`` (one image a row) and ``<prefix>_labels.js`` / ``.json``.
        See :mod:`dlsets.outputs.convnetjs`."""
        from ..outputs.convnetjs import to_convnetjs

        return to_convnetjs(self, folder, prefix=prefix, batch_size=batch_size)

    def close(self) -> None:
        """Close the HDF5 file behind ``format="hdf5"`` datasets (no-op otherwise)."""
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _repr_html_(self) -> str:
        from ..common.display import dataset_html

        return dataset_html(self)

    def __repr__(self) -> str:
        def desc(s: Split) -> str:
            return f"{getattr(s.images, 'dtype', '?')} {tuple(s.images.shape)}"

        more = "".join(f", {k}={desc(v)}" for k, v in self.extra.items())
        return (f"Dataset({self.name!r}, train={desc(self.train)}, test={desc(self.test)}{more}, "
                f"{len(self.classes)} classes)")


@functools.lru_cache(maxsize=1)
def _published_stats() -> dict[str, dict]:
    """Built-in dataset name -> its published ``stats`` entry, read from the package's
    ``registry.json`` (the file the registry reads its built-ins from): data/ sits below the
    sources and does not import the registry. User entries never have published stats."""
    text = resources.files("dlsets").joinpath("registry.json").read_text(encoding="utf-8")
    return {name: e["stats"] for name, e in json.loads(text).items() if e.get("stats")}
