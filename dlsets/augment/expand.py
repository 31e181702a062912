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
from ..store import cache, space, stamps
from . import params
from .transforms import channels_last

log = logging.getLogger("dlsets")

DEFAULT_CHUNK = 4096  # samples per chunk at most by default...
CHUNK_BYTES = 1 << 25  # ...and at most this many bytes of images (large images: fewer)


def check_xy(x: object, y: object, channels: str | None = "last"
             ) -> tuple[np.ndarray, np.ndarray]:
    """Images x (N, H, W[, C]) and integer labels y (N,) as arrays; OptionError if not."""
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


def check_masks(masks: object, x: np.ndarray, channels: str | None) -> np.ndarray | None:
    """Masks (N, H, W) (or (N, H, W, C) / (N, C, H, W) like x) that go with images x."""
    if masks is None:
        return None
    m = np.asarray(masks)
    if m.ndim not in (3, 4) or len(m) != len(x):
        raise OptionError(f"masks have shape {m.shape}: expected ({len(x)}, H, W), one class map "
                          "per image")
    lead = channels_last("x", x, channels).shape[1:3]
    got = channels_last("masks", m, channels or "last").shape[1:3] if m.ndim == 4 else m.shape[1:]
    if tuple(got) != tuple(lead):
        raise OptionError(f"masks have shape {m.shape} but the images {x.shape}: each mask must "
                          "have its image's height and width")
    return m


def chunk_rows(x: np.ndarray, chunk_size: int | None) -> int:
    """Samples per chunk: ``chunk_size``, or by default as many as fit DEFAULT_CHUNK and
    CHUNK_BYTES (4096 MNIST or CIFAR images, 222 images of 224 x 224 x 3 uint8)."""
    if chunk_size is not None:
        return check_count("chunk_size", chunk_size, 1)
    sample = max(1, int(np.prod(x.shape[1:])) * x.dtype.itemsize)
    return max(1, min(DEFAULT_CHUNK, CHUNK_BYTES // sample))


def check_count(name: str, value: object, low: int) -> int:
    """Option ``name`` as an int, or OptionError if it is not an integer >= ``low``."""
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
    ``copy_sources`` gives the same indices for any range of copies without computing all M.
    """
    src = copy_sources(y, target, balance=balance, keep_originals=keep_originals, seed=seed)
    space.need_memory(8 * len(src), f"planning {len(src):,} augmented copies",
                      "ask for a smaller target")
    out = np.empty(len(src), np.int64)
    for s in range(0, len(src), _PLAN_BLOCK):  # bounded temporaries for huge targets
        out[s:s + _PLAN_BLOCK] = src[s:s + _PLAN_BLOCK]
    return out


_PLAN_BLOCK = 1 << 20


def copy_sources(
    y: np.ndarray, target: int, *, balance: bool = True, keep_originals: bool = True,
    seed: int = 0,
) -> CopySources:
    """:func:`plan`, lazily: ``src[a:b]`` (or ``src[index_array]``) are the originals of copies
    a..b-1, computed on demand in O(b - a) time and memory; ``len(src)`` is M."""
    return CopySources(y, target, balance=balance, keep_originals=keep_originals, seed=seed)


class CopySources:
    """Which original each augmented copy starts from, addressable by copy index.

    Balanced: per-class blocks of copies (each cycling through its class's members in a seeded
    order) laid end to end, then shuffled by a seeded permutation of 0..M-1 that is computed
    per index (a Feistel network with cycle walking), so a shard of copies costs only its own
    size whatever M is. Unbalanced: copy j is ``order[j % n]`` for a seeded order of the
    originals.
    """

    def __init__(self, y: np.ndarray, target: int, *, balance: bool = True,
                 keep_originals: bool = True, seed: int = 0) -> None:
        y = np.asarray(y)
        n = len(y)
        target = check_count("target", target, 1)
        seed = params.check_seed(seed)
        if keep_originals and target < n:
            raise OptionError(f"target={target} is smaller than the {n} originals kept: give "
                              f"target >= {n}, or keep_originals=False, or take_subset() first")
        m = target - n if keep_originals else target
        if m and n == 0:
            raise OptionError(f"cannot make {m} augmented copies of an empty dataset")
        self._m = m
        self._order = None
        if m == 0:
            return
        rng = np.random.default_rng([seed, 0xE7A9D])
        if not balance:
            self._order = rng.permutation(n).astype(np.int64)
            return
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
        members = [rng.permutation(np.flatnonzero(inverse == k)) for k in range(len(classes))]
        self._members = np.concatenate(members).astype(np.int64)
        sizes = np.array([len(a) for a in members], np.int64)
        self._member_start = np.cumsum(sizes) - sizes
        self._member_count = sizes
        self._alloc = alloc.astype(np.int64)
        self._ends = np.cumsum(self._alloc)
        self._keys = rng.integers(0, 1 << 63, size=_ROUNDS, dtype=np.int64).astype(np.uint64)

    def __len__(self) -> int:
        return self._m

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(self._m)
            j = np.arange(start, stop, step, dtype=np.int64)
        else:
            j = np.asarray(key, dtype=np.int64)
            if j.ndim == 0:  # one copy: as an array (uint64 scalar maths warns on overflow)
                return self[j.reshape(1)][0]
            if j.size and (j.min() < 0 or j.max() >= self._m):
                raise IndexError(f"copy index out of range 0..{self._m - 1}")
        if self._order is not None:
            return self._order[j % len(self._order)]
        if j.size == 0:
            return np.zeros(j.shape, np.int64)
        q = _permute(j, self._m, self._keys)
        k = np.searchsorted(self._ends, q, side="right")
        r = q - (self._ends[k] - self._alloc[k])
        return self._members[self._member_start[k] + r % self._member_count[k]]


_ROUNDS = 4
_M1, _M2, _M3 = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9),
                 np.uint64(0x94D049BB133111EB))


def _mix(v: np.ndarray, key: np.uint64) -> np.ndarray:
    """splitmix64's finaliser of v + key: the Feistel round function."""
    z = (v + key) * _M1
    z ^= z >> np.uint64(30)
    z *= _M2
    z ^= z >> np.uint64(27)
    z *= _M3
    z ^= z >> np.uint64(31)
    return z


def _permute(j: np.ndarray, m: int, keys: np.ndarray) -> np.ndarray:
    """A keyed permutation of 0..m-1 evaluated at ``j``: an unbalanced Feistel network on the
    smallest power of two >= m (< 2m values), re-applied to values >= m (cycle walking), so
    every result lies in 0..m-1 and distinct inputs give distinct outputs."""
    bits = max(2, (m - 1).bit_length())
    high, low = bits // 2, bits - bits // 2

    def encrypt(v: np.ndarray) -> np.ndarray:
        a, b = v >> np.uint64(low), v & np.uint64((1 << low) - 1)
        wa, wb = high, low
        for key in keys:  # (a, b) -> (b, a ^ F(b)); the widths swap every round
            a, b = b, a ^ (_mix(b, key) & np.uint64((1 << wa) - 1))
            wa, wb = wb, wa
        return (a << np.uint64(wb)) | b

    out = encrypt(j.astype(np.uint64))
    todo = np.flatnonzero(out >= m)
    while todo.size:
        out[todo] = encrypt(out[todo])
        todo = todo[out[todo] >= m]
    return out.astype(np.int64)


def copy_augmenter(augmenter: object, seed: int, needed: int):
    """The batch augmenter that makes ``needed`` copies (None when none are needed and none is
    given); OptionError when copies are needed and ``augmenter`` is None."""
    if needed == 0 and augmenter is None:
        return None
    if augmenter is None:
        raise OptionError(f"{needed} augmented copies are needed but augmenter=None: give a "
                          "dlsets Augmenter (e.g. Augmenter(rotate=15, shift=0.1)) or an "
                          "albumentations pipeline")
    from .albu import as_batch_augmenter

    return as_batch_augmenter(augmenter, seed)


def produce_chunks(
    x: np.ndarray, y: np.ndarray, src, keep_originals: bool, augmenter,
    chunk_size: int, write: Callable[..., None],
    advance: Callable[[int], None] = lambda k: None, channels: str | None = None,
    rows: tuple[int, int] | None = None, masks: np.ndarray | None = None,
) -> None:
    """Hand (position, images, labels) chunks of the expanded set to ``write``, in order;
    with ``masks``, (position, images, labels, masks), the masks moved with their images.
    ``rows=(lo, hi)`` produces only output rows lo..hi-1 (a shard), positions still absolute.
    ``src`` is the plan, an array or :class:`CopySources`."""
    pos = len(x) if keep_originals else 0
    lo, hi = (0, pos + len(src)) if rows is None else rows
    for s in range(lo, min(hi, pos), chunk_size):
        e = min(hi, pos, s + chunk_size)
        if masks is None:
            write(s, x[s:e], y[s:e])
        else:
            write(s, x[s:e], y[s:e], masks[s:e])
        advance(e - s)
    for s in range(max(lo, pos) - pos, hi - pos, chunk_size):
        idx = src[s:min(hi - pos, s + chunk_size)]
        # explicit sample indices: the same samples whatever the chunking, and the
        # augmenter's own counter is left alone
        if masks is None:
            batch = augmenter(x[idx], start=pos + s, channels=channels or "last")
            write(pos + s, batch, y[idx])
        else:
            batch, mbatch = augmenter(x[idx], masks=masks[idx], start=pos + s,
                                      channels=channels or "last")
            write(pos + s, batch, y[idx], mbatch)
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
    masks: np.ndarray | None = None,
):
    """Return exactly ``target`` samples: the originals first (when kept), then augmented copies.

    x is (N, H, W[, C]) and y (N,) integer labels; the result has x's and y's dtypes and shape
    (target, H, W[, C]) and (target,). ``channels="first"`` takes and returns (N, C, H, W);
    ``None`` means channels-last but refuses an x that looks channels-first (see
    :class:`Augmenter`). ``augmenter`` is a dlsets Augmenter (its own seed drives the geometry;
    copy j is its sample len(x) + j whatever its ``position``, which is left alone) or an
    albumentations pipeline (run per image, seeded from (seed, index)).
    ``seed`` drives the choice of originals to copy. Deterministic.
    With ``masks`` (N, H, W) segmentation maps, each copy's mask gets its image's geometry
    (nearest neighbour) and ``(x, y, masks)`` is returned.
    """
    x, y = check_xy(x, y, channels)
    m = check_masks(masks, x, channels)
    target = check_count("target", target, 1)
    per_sample = x[:1].nbytes + y.dtype.itemsize + (0 if m is None else m[:1].nbytes)
    space.need_memory(target * per_sample, f"expanding to {target:,} samples in memory",
                      "ask for a smaller target, or stream them to a file with expand_to_hdf5")
    src = copy_sources(y, target, balance=balance, keep_originals=keep_originals,
                       seed=seed)
    aug = copy_augmenter(augmenter, seed, len(src))
    out_x = np.empty((target, *x.shape[1:]), x.dtype)
    out_y = np.empty(target, y.dtype)
    out_m = None if m is None else np.empty((target, *m.shape[1:]), m.dtype)

    def write(pos: int, images: np.ndarray, labels: np.ndarray, mk=None) -> None:
        out_x[pos:pos + len(images)] = images
        out_y[pos:pos + len(labels)] = labels
        if mk is not None:
            out_m[pos:pos + len(mk)] = mk

    produce_chunks(x, y, src, keep_originals, aug, chunk_rows(x, None), write,
                   channels=channels, masks=m)
    return (out_x, out_y) if m is None else (out_x, out_y, out_m)


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
    masks: np.ndarray | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the samples :func:`expand` returns to ``out`` as ``/train/images``, ``/train/labels``
    (and ``/train/masks`` when ``masks`` are given: they move with their images).

    Images are written in the layout given: ``channels="first"`` takes and stores (N, C, H, W),
    and the file's ``channels`` attribute says which ("first" or "last").

    Streams ``chunk_size`` samples at a time (default: up to 4096, at most 32 MB of images), so
    memory stays bounded whatever ``target``; the chunk size never changes the samples. Shows a
    progress bar, and writes to a temporary file that replaces ``out`` only when complete.
    Labels are stored as uint8 (the dlsets layout); ``classes`` names them (default "0", "1"...).
    An existing ``out`` that dlsets did not write is refused unless ``overwrite``.
    ``compression``: None (contiguous: an epoch reads at RAM speed), "gzip", "lzf" or "lz4"
    (``pip install 'dlsets[lz4]'``: as small as lzf on images that compress, 3-4x faster to
    read). Returns the path written.
    """
    from ..common.progress import bar
    from ..formats.h5 import (
        atomic_hdf5,
        check_compression,
        check_writes,
        create_masks,
        create_split,
        hdf5_bytes,
        write_attrs,
    )

    x, y = check_xy(x, y, channels)
    m = check_masks(masks, x, channels)
    chunk_size = chunk_rows(x, chunk_size)
    check_compression(compression)
    target = check_count("target", target, 1)
    seed = params.check_seed(seed)
    path = Path(out)
    what = f"writing {target:,} samples to {path.name}"
    needed = hdf5_bytes(target, x.shape[1:], x.dtype.itemsize)
    if m is not None:
        needed += hdf5_bytes(target, m.shape[1:], m.dtype.itemsize)
    # Before any work: not in the cache, the file's folder and its room (the size is known).
    cache.check_outside(path, what)
    space.check_output(path, what)
    stamps.check_replace(path, overwrite, what)
    space.need_disk(path.absolute().parent, needed, what)
    if len(y) and (int(y.min()) < 0 or int(y.max()) > 255):
        raise OptionError(f"labels range {int(y.min())}..{int(y.max())} does not fit the "
                          "layout's uint8 labels (0..255)")
    names = class_names(y, classes)
    src = copy_sources(y, target, balance=balance, keep_originals=keep_originals,
                       seed=seed)
    aug = copy_augmenter(augmenter, seed, len(src))
    log.info("expanding %d samples to %d in %s", len(x), target, path)
    with atomic_hdf5(path, needed, what, overwrite=overwrite) as f:
        images, labels = create_split(f, "train", target, x.shape[1:], dtype=x.dtype,
                                      compression=compression)
        mset = None if m is None else create_masks(f, "train", target, m.shape[1:],
                                                   dtype=m.dtype, compression=compression)

        def write(pos: int, chunk: np.ndarray, lab: np.ndarray, mk=None) -> None:
            images[pos:pos + len(chunk)] = chunk
            labels[pos:pos + len(lab)] = lab
            if mk is not None:
                mset[pos:pos + len(mk)] = mk
            check_writes(f)  # a full disk stops the work here, not at the end

        with bar(target, "augment", progress=progress, unit="img") as pbar:
            produce_chunks(x, y, src, keep_originals, aug, chunk_size, write, pbar.update,
                           channels=channels, masks=m)
        # uint64: HDF5 stores Python ints as int64, too small for seeds from 2**63
        write_attrs(f, names, originals=len(x) if keep_originals else 0, seed=np.uint64(seed),
                    augmenter=repr(aug), channels=channels or "last")
    return path


def class_names(y: np.ndarray, classes: Sequence[str] | None) -> list[str]:
    """The names of labels ``y`` (N,): ``classes`` as strings, or "0", "1", ... by default;
    OptionError when they name fewer classes than the labels reach."""
    n_classes = int(y.max()) + 1 if len(y) else 0
    names = [str(k) for k in range(n_classes)] if classes is None else [str(c) for c in classes]
    if len(names) < n_classes:
        raise OptionError(f"classes has {len(names)} names but labels go up to {n_classes - 1}")
    return names


def take_subset(x: np.ndarray, y: np.ndarray, k: int, *, seed: int = 0,
                masks: np.ndarray | None = None):
    """A deterministic stratified subset of ``k`` samples, in their original order.

    Each class gets a share of k proportional to its size (largest remainders, ties broken by
    the seed); members are drawn at random (seeded). Returns (x[idx], y[idx]), and
    masks[idx] third when ``masks`` are given.
    """
    x, y = check_xy(x, y)
    k = check_count("k", k, 1)
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
    if masks is not None:
        return x[idx], y[idx], np.asarray(masks)[idx]
    return x[idx], y[idx]
