"""A validation split carved out of a training set: stratified, seeded, the same everywhere.

The rule, for ``val`` (a fraction in (0, 1) or a count) of N samples: the validation set has
``K = round(val * N)`` samples (or ``val`` itself); each class gets ``K * n_c / N`` of them,
rounded down, and the samples still missing go one each to the classes with the largest
remainders (ties: lower label first). Within a class, the samples with the lowest keys go to
validation, where sample i's key is word i of a Philox stream keyed by ``seed`` (NumPy's bit
generators are stable across versions and machines, unlike its shuffles). Both index sets come
back sorted, so the two splits keep the original order.
"""

from __future__ import annotations

import numpy as np

from ..augment import params
from ..errors import OptionError
from .dataset import Dataset, Split

# rows.py holds what chunkorder needs too; splits was their home, callers find them here
from .rows import Rows as Rows
from .rows import read_rows as read_rows
from .rows import take

_KEY_STREAM = 0x5A11D  # the stream of the seed's Philox generator that ranks samples


def split_indices(labels, val: float | int = 0.1, *, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)``, sorted int64 arrays that partition ``range(len(labels))``,
    by the stratified rule in this module's docstring."""
    y = np.asarray(labels)
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise OptionError(f"labels have shape {y.shape} and dtype {y.dtype}: expected integer "
                          "class labels of shape (N,)")
    n = len(y)
    seed = params.check_seed(seed)
    k = _count(val, n)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    exact = counts * (k / n)
    share = np.floor(exact).astype(np.int64)
    rest = k - int(share.sum())
    if rest:
        # largest remainder first, the lower label on ties (a stable sort keeps label order)
        order = np.argsort(-(exact - share), kind="stable")
        share[order[:rest]] += 1
    keys = params.generator(seed, _KEY_STREAM, 0, 1).bit_generator.random_raw(n)
    val_idx = []
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        ranked = members[np.argsort(keys[members], kind="stable")]
        val_idx.append(ranked[:share[c]])
    chosen = np.sort(np.concatenate(val_idx)) if val_idx else np.zeros(0, np.int64)
    keep = np.ones(n, bool)
    keep[chosen] = False
    return np.flatnonzero(keep).astype(np.int64), chosen.astype(np.int64)


def check_val(val: object) -> None:
    """OptionError unless ``val`` is a fraction in (0, 1) or a count >= 1."""
    _count(val, None)


def _count(val: object, n: int | None) -> int:
    allowed = ("give a fraction 0 < val < 1 or a count 1 <= val < N of the N training samples"
               if n is None else
               f"give a fraction 0 < val < 1 or a count 1 <= val < {n} of the {n} training "
               "samples")
    if isinstance(val, (bool, np.bool_)):
        raise OptionError(f"val={val!r} is not allowed: {allowed}")
    if isinstance(val, (int, np.integer)):
        k = int(val)
        if n is None:
            if k >= 1:
                return k
            raise OptionError(f"val={val!r} is not allowed: {allowed}")
    elif isinstance(val, (float, np.floating)) and 0.0 < float(val) < 1.0:
        if n is None:
            return 1
        k = int(np.floor(float(val) * n + 0.5))
    else:
        raise OptionError(f"val={val!r} is not allowed: {allowed}")
    if not 1 <= k < n:
        raise OptionError(f"val={val!r} gives {k} validation samples of {n}: {allowed} "
                          "(both splits must keep at least one)")
    return k


def train_val_split(images, labels=None, val: float | int = 0.1, *, seed: int = 0,
                    masks=None) -> tuple[Split, Split]:
    """Split images and labels (or a :class:`Split`) into ``(train, val)`` Splits by
    :func:`split_indices`; each unpacks as ``(images, labels)``::

        (x_train, y_train), (x_val, y_val) = dlsets.train_val_split(x, y, val=0.1)

    NumPy arrays come back as NumPy arrays (copies); other array-likes (HDF5 datasets, memory
    maps of huge sets) as :class:`Rows` views that read on demand.
    """
    if isinstance(images, Split):
        if labels is not None or masks is not None:
            raise OptionError("give a Split alone, or images and labels (and masks), not both")
        images, labels, masks = images.images, images.labels, images.masks
    if labels is None:
        raise OptionError("train_val_split needs labels (it keeps the classes' proportions)")
    y = np.asarray(labels)
    if len(images) != len(y) or (masks is not None and len(masks) != len(y)):
        raise OptionError(f"{len(images)} images, {len(y)} labels"
                          f"{'' if masks is None else f', {len(masks)} masks'}: they must match")
    train_idx, val_idx = split_indices(y, val, seed=seed)
    return tuple(Split(take(images, idx), y[idx], None if masks is None else take(masks, idx))
                 for idx in (train_idx, val_idx))


def with_validation(ds: Dataset, val: float | int, *, seed: int = 0) -> Dataset:
    """``ds`` with ``val`` of its train split moved to ``ds.val`` (``ds.extra["val"]``) by
    :func:`split_indices`; ``ds.info["val"]`` records the rule, and the counts per class."""
    if "val" in ds.extra:
        raise OptionError(f"{ds.name} already has a validation split; val= would replace it")
    train, valid = train_val_split(ds.train, val=val, seed=seed)
    info = dict(ds.info)
    splits = dict(info.get("splits", {}))
    for name, split in (("train", train), ("val", valid)):
        counts = np.bincount(np.asarray(split.labels), minlength=len(ds.classes))
        splits[name] = {**splits.get(name, {}),
                        "images_shape": list(split.images.shape),
                        "labels_shape": list(split.labels.shape),
                        "class_counts": dict(zip(ds.classes, counts.tolist(), strict=False))}
    info["splits"] = splits
    info["val"] = {"val": val, "seed": seed, "samples": len(valid),
                   "rule": "stratified: per class, the lowest Philox(seed) keys "
                           "(dlsets.splits.split_indices)"}
    return Dataset(ds.name, train, ds.test, ds.classes, info, ds._close,
                   {**ds.extra, "val": valid})
