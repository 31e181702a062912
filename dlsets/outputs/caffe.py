"""Input for Caffe's ``HDF5Data`` layer: ``.h5`` files plus a list file per split.

Each ``<split>_<k>.h5`` holds ``data`` (n, C, H, W) float32, scaled into ``value_range``,
``label`` (n,) float32 (absent for an unlabelled split) and, for segmentation data, ``mask``
(n, 1, H, W) float32 class numbers (a second top, as pixel-wise losses want); ``<split>.txt``
lists the files' absolute paths, one a line, for the layer's ``source:``. Caffe reads a whole
file into memory and fails on a dataset of more than 2^31-1 elements, so a split is spread over
files of at most ``max_file_bytes`` (default 512 MiB, a sixteenth of that limit). Files are
contiguous and uncompressed, which every HDF5 build Caffe links against reads.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import OptionError
from ..formats.h5 import names_attr
from ..store import cache

if TYPE_CHECKING:
    from ..data.dataset import Dataset

log = logging.getLogger("dlsets")

MAX_ELEMENTS = 2**31 - 1  # Caffe's limit on one blob (and so on one HDF5 dataset)
DEFAULT_MAX_FILE_BYTES = 512 << 20
HDF5_OVERHEAD = 16 << 10  # room left for HDF5's own headers (about 6 KB for these files)
KIND = "caffe"
_BLOCK_BYTES = 64 << 20  # float32 converted at a time


def _check_range(value_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise OptionError(f"value_range={value_range!r} is not valid: give (low, high), e.g. "
                          "(0, 1) or (-1, 1)") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo == hi:
        raise OptionError(f"value_range=({lo}, {hi}) is not valid: give two different finite "
                          "numbers, e.g. (0, 1)")
    # the data is float32: both ends, and the span the pixels are scaled by, must fit it
    top = float(np.finfo(np.float32).max)
    if max(abs(lo), abs(hi)) > top or abs(hi - lo) > top:
        raise OptionError(f"value_range=({lo:g}, {hi:g}) is not valid: Caffe's data is float32, "
                          f"whose values stop at {top:.3g}; give a smaller range, e.g. (0, 1)")
    return lo, hi


def _nchw_shape(shape: Sequence[int], channels: str | None) -> tuple[int, int, int]:
    """Per-sample (C, H, W) for images of per-sample ``shape`` in the given layout."""
    shape = tuple(shape)
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3:
        return shape if channels == "first" else (shape[2], shape[0], shape[1])
    raise OptionError(f"images of shape (N, {', '.join(map(str, shape))}) cannot be written for "
                      "Caffe: expected (N, H, W), (N, H, W, C) or, with channels='first', "
                      "(N, C, H, W)")


def _per_file(sample: tuple[int, int, int], max_file_bytes: int, extra: int = 0) -> int:
    """Samples per file: the file (data, labels, ``extra`` mask elements a sample, HDF5's
    headers) within ``max_file_bytes``, ``data`` within Caffe's element limit."""
    if isinstance(max_file_bytes, bool) or not isinstance(max_file_bytes, (int, np.integer)):
        raise OptionError(f"max_file_bytes={max_file_bytes!r} is not valid: give a number of "
                          "bytes")
    elements = int(np.prod(sample))
    per_sample = 4 * (elements + extra) + 4  # float32 pixels, mask and label
    n = min((int(max_file_bytes) - HDF5_OVERHEAD) // per_sample, MAX_ELEMENTS // elements)
    if n < 1:
        need = HDF5_OVERHEAD + per_sample
        raise OptionError(f"max_file_bytes={max_file_bytes:,} is smaller than one sample and "
                          f"the file's headers ({need:,} bytes): give at least that")
    return n


def _check_out(out: str | os.PathLike) -> Path:
    """``out`` as a Path; OptionError when its absolute path could not be one line of a list
    file (a line break in it would split the line Caffe reads)."""
    out = Path(out)
    cache.check_outside(out, f"writing Caffe files into {out}")
    if any(c in str(out.resolve()) for c in "\n\r"):
        raise OptionError(f"out={str(out)!r}: Caffe's list files name one .h5 file a line, and "
                          "this path holds a line break; give a folder whose path has none")
    return out


def _mask_shape(shape: Sequence[int], sample: tuple[int, int, int]) -> tuple[int, int, int]:
    """(1, H, W) for masks of per-sample ``shape`` (H, W) that go with images ``sample``."""
    shape = tuple(shape)
    if len(shape) != 2 or shape != sample[1:]:
        raise OptionError(f"masks of shape (N, {', '.join(map(str, shape))}) cannot go with "
                          f"images (N, {', '.join(map(str, sample))}) for Caffe: give (N, H, W) "
                          "class maps of the images' height and width")
    return (1, *shape)


class CaffeSplitWriter:
    """Writes one split's samples, in order, into ``<split>_<k>.h5`` files under ``folder``.

    ``write(images, labels, masks)`` takes the next chunk (uint8 scaled from [0, 255], floats
    from [0, 1]; masks, with ``mask_shape`` (H, W), as they are); ``close()`` writes
    ``<split>.txt`` naming the files as they will be found under ``final`` (the folder the
    caller renames ``folder`` to) and returns the file paths.
    """

    def __init__(self, folder: Path, final: Path, split: str, total: int,
                 image_shape: Sequence[int], *, labelled: bool = True,
                 channels: str | None = None, value_range=(0.0, 1.0),
                 max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, attrs: Mapping[str, Any] = (),
                 mask_shape: Sequence[int] | None = None):
        self.folder, self.final, self.split = Path(folder), Path(final), split
        self.sample = _nchw_shape(image_shape, channels)
        self.channels, self.labelled = channels, labelled
        self.lo, self.hi = _check_range(value_range)
        self.mask = None if mask_shape is None else _mask_shape(mask_shape, self.sample)
        per = _per_file(self.sample, max_file_bytes,
                        0 if self.mask is None else int(np.prod(self.mask)))
        self.counts = [min(per, total - s) for s in range(0, total, per)] or [0]
        width = max(3, len(str(len(self.counts) - 1)))
        self.names = [f"{split}_{k:0{width}d}.h5" for k in range(len(self.counts))]
        self.attrs = dict(attrs)
        self._k = -1  # file being written
        self._pos = 0  # samples written into it
        self._file = None
        self.written = 0

    def _open_next(self) -> None:
        import h5py

        self._close_file()
        self._k += 1
        self._pos = 0
        n = self.counts[self._k]
        f = h5py.File(self.folder / self.names[self._k], "w")
        f.create_dataset("data", shape=(n, *self.sample), dtype="<f4")
        if self.labelled:
            f.create_dataset("label", shape=(n,), dtype="<f4")
        if self.mask is not None:
            f.create_dataset("mask", shape=(n, *self.mask), dtype="<f4")
        for key, value in self.attrs.items():
            f.attrs[key] = names_attr([value])[0] if isinstance(value, str) else value
        self._file = f

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _scaled(self, images) -> np.ndarray:
        a = np.asarray(images)
        if a.ndim == 3:
            a = a[:, None]
        elif self.channels != "first":
            a = a.transpose(0, 3, 1, 2)
        top = 255.0 if a.dtype == np.uint8 else 1.0
        out = a.astype(np.float32)
        out *= np.float32((self.hi - self.lo) / top)
        out += np.float32(self.lo)
        return out

    def write(self, images, labels=None, masks=None) -> None:
        n = len(images)
        if self.labelled and (labels is None or len(labels) != n):
            raise OptionError(f"{self.split}: {n} images need {n} labels")
        if (self.mask is not None) != (masks is not None) or (masks is not None
                                                              and len(masks) != n):
            raise OptionError(f"{self.split}: {n} images need "
                              + (f"{n} masks" if self.mask is not None else "no masks"))
        if self.written + n > sum(self.counts):
            raise OptionError(f"{self.split}: more samples than the {sum(self.counts)} announced")
        step = max(1, _BLOCK_BYTES // (4 * int(np.prod(self.sample))))
        s = 0
        while s < n:
            if self._file is None or self._pos == self.counts[self._k]:
                self._open_next()
            take = min(n - s, self.counts[self._k] - self._pos, step)
            self._file["data"][self._pos:self._pos + take] = self._scaled(images[s:s + take])
            if self.labelled:
                self._file["label"][self._pos:self._pos + take] = np.asarray(
                    labels[s:s + take], dtype=np.float32)
            if self.mask is not None:
                self._file["mask"][self._pos:self._pos + take] = np.asarray(
                    masks[s:s + take], dtype=np.float32)[:, None]
            self._pos += take
            s += take
        self.written += n

    def close(self) -> list[Path]:
        """Finish the files, write the list file; returns the .h5 paths under ``final``."""
        if self.written != sum(self.counts):
            raise OptionError(f"{self.split}: {self.written} samples written of "
                              f"{sum(self.counts)} announced")
        if self._file is None and self.counts == [0]:
            self._open_next()  # an empty split is one empty file
        self._close_file()
        paths = [self.final.resolve() / name for name in self.names]
        # The path's own bytes: a folder named in Latin-1 is found by Caffe as it is.
        (self.folder / f"{self.split}.txt").write_bytes(b"".join(os.fsencode(p) + b"\n"
                                                                 for p in paths))
        return paths


def write_caffe(
    out: str | os.PathLike,
    splits: Mapping[str, tuple[Any, ...]],
    *,
    classes: Sequence[str] = (),
    value_range=(0.0, 1.0),
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    channels: str | None = None,
    progress: bool | None = None,
) -> Path:
    """Write ``{split: (images, labels or None)}`` (or ``(images, labels, masks)``, masks
    (N, H, W) class maps) for Caffe into the folder ``out``; returns it.

    ``out`` must be new, empty, or an earlier Caffe export (it is replaced whole, atomically);
    images are (N, H, W[, C]) or, with ``channels="first"``, (N, C, H, W).
    """
    from ..common.progress import bar
    from ..store.atomic import replacing_dir

    lo_hi = _check_range(value_range)
    out = _check_out(out)
    attrs = {"classes": ",".join(map(str, classes)), "value_range": list(lo_hi)}
    total = sum(len(x) for x, *_ in splits.values())
    with replacing_dir(out, kind=KIND) as tmp, bar(total, "caffe", progress=progress,
                                                   unit="img") as pbar:
        for split, (images, labels, *more) in splits.items():
            masks = more[0] if more else None
            w = CaffeSplitWriter(tmp, out, split, len(images), images.shape[1:],
                                 labelled=labels is not None, channels=channels,
                                 value_range=lo_hi, max_file_bytes=max_file_bytes, attrs=attrs,
                                 mask_shape=None if masks is None else masks.shape[1:])
            step = max(1, _BLOCK_BYTES // max(1, int(np.prod(images.shape[1:]))))
            for s in range(0, len(images), step):
                w.write(images[s:s + step], None if labels is None else labels[s:s + step],
                        None if masks is None else masks[s:s + step])
                pbar.update(min(step, len(images) - s))
            files = w.close()
            log.info("caffe: %s in %d file(s)", split, len(files))
    return out


def to_caffe(ds: Dataset, out: str | os.PathLike, *, value_range=(0.0, 1.0),
             max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, progress: bool | None = None) -> Path:
    """Every split of ``ds`` (train, test and any extra) for Caffe's HDF5Data layer in the
    folder ``out``: ``<split>.txt`` list files and ``<split>_<k>.h5`` files; see the module.
    Segmentation masks go into each file's ``mask``."""
    channels = ds.info.get("channels")
    return write_caffe(out, {s: (ds[s].images, ds[s].labels, ds[s].masks)
                             for s in ds.split_names},
                       classes=ds.classes, value_range=value_range,
                       max_file_bytes=max_file_bytes, channels=channels, progress=progress)


def expand_to_caffe(
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
    channels: str | None = None,
    value_range=(0.0, 1.0),
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    masks: np.ndarray | None = None,
) -> Path:
    """The samples :func:`dlsets.expand` returns, streamed chunk by chunk into a Caffe export
    in the folder ``out`` (``train.txt`` and ``train_<k>.h5``), in bounded memory; the same
    samples as :func:`dlsets.expand_to_hdf5` writes, whatever the chunk and file sizes.
    ``masks`` (N, H, W) move with their images into each file's ``mask``."""
    from ..augment.expand import (
        check_masks,
        check_xy,
        chunk_rows,
        copy_augmenter,
        plan,
        produce_chunks,
    )
    from ..common.progress import bar
    from ..store.atomic import replacing_dir

    x, y = check_xy(x, y, channels)
    m = check_masks(masks, x, channels)
    lo_hi = _check_range(value_range)
    out = _check_out(out)
    chunk_size = chunk_rows(x, chunk_size)
    src = plan(y, target, balance=balance, keep_originals=keep_originals, seed=seed)
    aug = copy_augmenter(augmenter, seed, len(src))
    names = [str(c) for c in classes] if classes is not None else []
    attrs = {"classes": ",".join(names), "value_range": list(lo_hi), "seed": seed,
             "originals": len(x) if keep_originals else 0, "augmenter": repr(aug)}
    with replacing_dir(out, kind=KIND) as tmp:
        w = CaffeSplitWriter(tmp, out, "train", target, x.shape[1:], channels=channels,
                             value_range=lo_hi, max_file_bytes=max_file_bytes, attrs=attrs,
                             mask_shape=None if m is None else m.shape[1:])
        with bar(target, "augment", progress=progress, unit="img") as pbar:
            produce_chunks(x, y, src, keep_originals, aug, chunk_size,
                           lambda pos, chunk, lab, mk=None: w.write(chunk, lab, mk),
                           pbar.update, channels=channels, masks=m)
        w.close()
    return out
