"""Grow a labelled image set to exactly N samples: originals first, then augmented copies.

The plan (which original each copy comes from) is a pure function of (labels, target, seed);
copy j is augmented as sample ``offset + j`` of the augmenter's stream, so :func:`expand` and
:func:`expand_to_hdf5` write the same samples whatever their chunk sizes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import OptionError
from . import params
from .transforms import channels_last

log = logging.getLogger("dlsets")

DEFAULT_CHUNK = 4096  # samples per chunk at most by default...
CHUNK_BYTES = 1 << 25  # ...and at most this many bytes of images (large images: fewer)


def _check_xy(x: object, y: object, channels: str | None = "last"
              ) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim not in (3, 4):
        raise OptionError(f"x has shape {x.shape}: expected images (N, H, W) or (N, H, W, C)"
                          f"{' or (N, C, H, W)' if channels == 'first' else ''}")
    channels_last("x", x, channels)  # the layout is valid, and not ambiguous for None
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise OptionError(f"y has shape {y.shape} and dtype {y.dtype}: expected integer class "
                          "labels of shape (N,)")
    if len(x) != len(y):
        raise OptionError(f"x has {len(x)} images but y has {len(y)} labels")
    return x, y


def _chunk(x: np.ndarray, chunk_size: int | None) -> int:
    """Samples per chunk: ``chunk_size``, or by default as many as fit DEFAULT_CHUNK and
    CHUNK_BYTES (4096 MNIST or CIFAR images, 222 images of 224 x 224 x 3 uint8)."""
    if chunk_size is not None:
        return _count("chunk_size", chunk_size, 1)
    sample = max(1, int(np.prod(x.shape[1:])) * x.dtype.itemsize)
    return max(1, min(DEFAULT_CHUNK, CHUNK_BYTES // sample))


def _count(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise OptionError(f"{name}={value!r} is not allowed: give an integer >= {low}")
    return int(value)


def plan(
    y: np.ndarray, target: int, *, balance: bool = True, keep_originals: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """Indices (M,) int64 of the originals that the M augmented copies start from.

    M = target - len(y) with keep_originals, else target. With ``balance`` the copies go to the
    classes so that final class counts differ by at most one where the originals allow it
    (classes already above the level get none); copies of a class cycle through its members
    in a seeded order. The result is shuffled (seeded) so that any chunk mixes classes.
    """
    y = np.asarray(y)
    n = len(y)
    target = _count("target", target, 1)
    seed = params.check_seed(seed)
    if keep_originals and target < n:
        raise OptionError(f"target={target} is smaller than the {n} originals kept: give "
                          f"target >= {n}, or keep_originals=False, or take_subset() first")
    m = target - n if keep_originals else target
    if m == 0:
        return np.zeros(0, np.int64)
    if n == 0:
        raise OptionError(f"cannot make {m} augmented copies of an empty dataset")
    rng = np.random.default_rng([seed, 0xE7A9D])
    if not balance:
        order = rng.permutation(n)
        return order[np.arange(m) % n].astype(np.int64)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    base = counts if keep_originals else np.zeros_like(counts)
    # water-filling: the highest level L that m copies can lift every class to
    lo, hi = 0, int(base.max()) + m
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if np.maximum(0, mid - base).sum() <= m:
            lo = mid
        else:
            hi = mid - 1
    alloc = np.maximum(0, lo - base)
    rest = m - int(alloc.sum())
    if rest:
        at_level = np.flatnonzero(base + alloc == lo)
        alloc[rng.permutation(at_level)[:rest]] += 1
    src = []
    for k in range(len(classes)):
        members = rng.permutation(np.flatnonzero(inverse == k))
        src.append(members[np.arange(alloc[k]) % len(members)])
    out = np.concatenate(src).astype(np.int64)
    return out[rng.permutation(len(out))]


def _resolve(augmenter: object, seed: int, needed: int):
    if needed == 0 and augmenter is None:
        return None
    if augmenter is None:
        raise OptionError(f"{needed} augmented copies are needed but augmenter=None: give a "
                          "dlsets Augmenter (e.g. Augmenter(rotate=15, shift=0.1)) or an "
                          "albumentations pipeline")
    from .albu import as_batch_augmenter

    return as_batch_augmenter(augmenter, seed)


def _produce(
    x: np.ndarray, y: np.ndarray, src: np.ndarray, keep_originals: bool, augmenter,
    chunk_size: int, write: Callable[[int, np.ndarray, np.ndarray], None],
    advance: Callable[[int], None] = lambda k: None, channels: str | None = None,
) -> None:
    """Hand (position, images, labels) chunks of the expanded set to ``write``, in order."""
    pos = 0
    if keep_originals:
        for s in range(0, len(x), chunk_size):
            e = min(len(x), s + chunk_size)
            write(s, x[s:e], y[s:e])
            advance(e - s)
        pos = len(x)
    for s in range(0, len(src), chunk_size):
        idx = src[s:s + chunk_size]
        # explicit sample indices: the same samples whatever the chunking, and the
        # augmenter's own counter is left alone
        batch = augmenter(x[idx], start=pos + s, channels=channels or "last")
        write(pos + s, batch, y[idx])
        advance(len(idx))


def expand(
    x: np.ndarray,
    y: np.ndarray,
    target: int,
    *,
    augmenter: object = None,
    balance: bool = True,
    keep_originals: bool = True,
    seed: int = 0,
    channels: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return exactly ``target`` samples: the originals first (when kept), then augmented copies.

    x is (N, H, W[, C]) and y (N,) integer labels; the result has x's and y's dtypes and shape
    (target, H, W[, C]) and (target,). ``channels="first"`` takes and returns (N, C, H, W);
    ``None`` means channels-last but refuses an x that looks channels-first (see
    :class:`Augmenter`). ``augmenter`` is a dlsets Augmenter (its own seed drives the geometry;
    copy j is its sample len(x) + j whatever its ``position``, which is left alone) or an
    albumentations pipeline (run per image, seeded from (seed, index)).
    ``seed`` drives the choice of originals to copy. Deterministic.
    """
    x, y = _check_xy(x, y, channels)
    src = plan(y, target, balance=balance, keep_originals=keep_originals, seed=seed)
    aug = _resolve(augmenter, seed, len(src))
    out_x = np.empty((target, *x.shape[1:]), x.dtype)
    out_y = np.empty(target, y.dtype)

    def write(pos: int, images: np.ndarray, labels: np.ndarray) -> None:
        out_x[pos:pos + len(images)] = images
        out_y[pos:pos + len(labels)] = labels

    _produce(x, y, src, keep_originals, aug, _chunk(x, None), write, channels=channels)
    return out_x, out_y


def expand_to_hdf5(
    x: np.ndarray,
    y: np.ndarray,
    target: int,
    out: str | os.PathLike,
    *,
    augmenter: object = None,
    balance: bool = True,
    keep_originals: bool = True,
    seed: int = 0,
    chunk_size: int | None = None,
    classes: Sequence[str] | None = None,
    progress: bool | None = None,
    compression: str | None = None,
    channels: str | None = None,
) -> Path:
    """Write the samples :func:`expand` returns to ``out`` as ``/train/images``, ``/train/labels``.

    Images are written in the layout given: ``channels="first"`` takes and stores (N, C, H, W),
    and the file's ``channels`` attribute says which ("first" or "last").

    Streams ``chunk_size`` samples at a time (default: up to 4096, at most 32 MB of images), so
    memory stays bounded whatever ``target``; the chunk size never changes the samples. Shows a
    progress bar, and writes to a temporary file that replaces ``out`` only when complete.
    Labels are stored as uint8 (the dlsets layout); ``classes`` names them (default "0", "1"...).
    Returns the path written.
    """
    from ..h5 import atomic_hdf5, create_split, write_attrs
    from ..progress import bar

    x, y = _check_xy(x, y, channels)
    chunk_size = _chunk(x, chunk_size)
    if compression not in (None, "gzip", "lzf"):
        raise OptionError(f"compression={compression!r} is not allowed: give None, 'gzip' or "
                          "'lzf'")
    if len(y) and (int(y.min()) < 0 or int(y.max()) > 255):
        raise OptionError(f"labels range {int(y.min())}..{int(y.max())} does not fit the "
                          "layout's uint8 labels (0..255)")
    n_classes = int(y.max()) + 1 if len(y) else 0
    names = [str(k) for k in range(n_classes)] if classes is None else [str(c) for c in classes]
    if len(names) < n_classes:
        raise OptionError(f"classes has {len(names)} names but labels go up to {n_classes - 1}")
    src = plan(y, target, balance=balance, keep_originals=keep_originals, seed=seed)
    aug = _resolve(augmenter, seed, len(src))
    path = Path(out)
    log.info("expanding %d samples to %d in %s", len(x), target, path)
    with atomic_hdf5(path) as f:
        images, labels = create_split(f, "train", target, x.shape[1:], dtype=x.dtype,
                                      compression=compression)

        def write(pos: int, chunk: np.ndarray, lab: np.ndarray) -> None:
            images[pos:pos + len(chunk)] = chunk
            labels[pos:pos + len(lab)] = lab

        with bar(target, "augment", progress=progress, unit="img") as pbar:
            _produce(x, y, src, keep_originals, aug, chunk_size, write, pbar.update,
                     channels=channels)
        write_attrs(f, names, originals=len(x) if keep_originals else 0, seed=seed,
                    augmenter=repr(aug), channels=channels or "last")
    return path


def take_subset(x: np.ndarray, y: np.ndarray, k: int, *, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic stratified subset of ``k`` samples, in their original order.

    Each class gets a share of k proportional to its size (largest remainders, ties broken by
    the seed); members are drawn at random (seeded). Returns (x[idx], y[idx]).
    """
    x, y = _check_xy(x, y)
    k = _count("k", k, 1)
    seed = params.check_seed(seed)
    if k > len(y):
        raise OptionError(f"k={k} is more than the {len(y)} samples available")
    rng = np.random.default_rng([seed, 0x5B5E7])
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    exact = counts * (k / len(y))
    share = np.floor(exact).astype(np.int64)
    rest = k - int(share.sum())
    if rest:
        # largest remainder first; a seeded random key breaks ties
        order = np.lexsort((rng.random(len(classes)), -(exact - share)))
        share[order[:rest]] += 1
    idx = np.concatenate([
        rng.choice(np.flatnonzero(inverse == c), size=share[c], replace=False)
        for c in range(len(classes))
    ])
    idx.sort()
    return x[idx], y[idx]
