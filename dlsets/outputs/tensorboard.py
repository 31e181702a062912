"""What augmentation does, as TensorBoard image summaries, beside a class histogram.

Written with ``tensorboardX`` (the ``tensorboard`` extra: numpy, protobuf and Pillow, no
TensorFlow or PyTorch). Tags, under ``<tag>/`` (default ``dlsets/``):

- ``preview``: the :func:`dlsets.preview_grid` image (each row an original, then its copies);
- ``originals``: the originals side by side, one row;
- ``augmented``: copy k of every original, side by side, at step ``step + k`` (the step slider
  walks through the copies);
- ``class_histogram/<split>``: one bucket per class (bucket k holds the count of label k).

Images are uint8, greyscale ones as RGB with three equal channels (how TensorBoard stores them).

The events are encoded first and written here, in this thread, to a temporary file renamed into
place (not through tensorboardX's writer thread, whose failure on a full disk leaves its queue,
and so the caller, waiting for good): their size is known, checked against the free disk, and a
write that still fails is a SpaceError or WriteError with nothing left behind.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError, OptionError
from ..store import cache, space

SEPARATOR = 128


def _tensorboardx():
    """tensorboardX's summary makers, Event proto and record checksum."""
    try:
        from tensorboardX import summary
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.record_writer import masked_crc32c
    except ImportError:
        raise MissingDependencyError(
            "writing TensorBoard summaries needs tensorboardX, which is not installed: "
            "pip install 'dlsets[tensorboard]'"
        ) from None
    return summary, Event, masked_crc32c


def strip(cells: np.ndarray, gap: int = 1) -> np.ndarray:
    """uint8 (n, H, W[, C]) -> one image (H, n*W + (n-1)*gap[, C]), grey between the cells."""
    n, h, w = cells.shape[:3]
    out = np.full((h, n * w + (n - 1) * gap, *cells.shape[3:]), SEPARATOR, np.uint8)
    for i in range(n):
        out[:, i * (w + gap):i * (w + gap) + w] = cells[i]
    return out


def _record(data: bytes, crc) -> bytes:
    """One TFRecord: length, its checksum, the data, its checksum."""
    header = struct.pack("<Q", len(data))
    return (header + struct.pack("<I", crc(header)) + data + struct.pack("<I", crc(data)))


def _events_path(logdir: Path) -> Path:
    """A new event file name in ``logdir``, as TensorBoard looks for them."""
    stem = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
    path, k = logdir / stem, 1
    while os.path.lexists(path):
        path, k = logdir / f"{stem}.{k}", k + 1
    return path


def write_tensorboard(
    logdir: str | os.PathLike,
    images: np.ndarray,
    augmenter: object,
    *,
    labels: np.ndarray | Mapping[str, np.ndarray] | None = None,
    classes: Sequence[str] | None = None,
    n: int = 8,
    copies: int = 7,
    seed: int = 0,
    channels: str | None = None,
    step: int = 0,
    tag: str = "dlsets",
) -> Path:
    """Write the first ``n`` ``images`` and ``copies`` augmentations of each (see the module
    for the tags), and a class histogram of ``labels`` (one array, or ``{split: labels}``),
    into an event file in ``logdir``; returns the event file's path.

    ``images`` are (N, H, W[, C]), or (N, C, H, W) with ``channels="first"``; ``augmenter`` is
    a dlsets Augmenter or an albumentations pipeline, as for :func:`dlsets.preview_grid`.
    Point TensorBoard at ``logdir`` (``tensorboard --logdir LOGDIR``) to look at them.
    """
    from ..augment.preview import grid_of, preview_cells
    from ..augment.transforms import channels_last

    summary, event, crc = _tensorboardx()
    logdir = Path(logdir)
    _check_logdir(logdir)
    cache.check_outside(logdir, f"writing TensorBoard events into {logdir}")
    for name, value, low in (("n", n, 1), ("copies", copies, 1), ("step", step, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise OptionError(f"{name}={value!r} is not allowed: give an integer >= {low}")
    x = channels_last("images", np.asarray(images), channels)
    if n > len(x):
        raise OptionError(f"n={n} images asked for but only {len(x)} given")
    check_room(n, copies, x.shape[1:])
    cells = preview_cells(x, augmenter, n=n, copies=copies, seed=seed)
    grid = grid_of(cells)  # exactly what preview_grid(x, augmenter, n=n, ...) returns
    if isinstance(labels, Mapping):
        histograms = dict(labels)
    else:
        histograms = {} if labels is None else {"train": labels}
    n_classes = len(classes) if classes is not None else None
    now = time.time()
    records = [_record(event(wall_time=now, file_version="brain.Event:2").SerializeToString(),
                       crc)]

    def add(value, at: int) -> None:
        records.append(_record(event(wall_time=now, step=at, summary=value).SerializeToString(),
                               crc))

    def add_image(name: str, image: np.ndarray, at: int) -> None:
        add(summary.image(f"{tag}/{name}", image, dataformats="HW" if image.ndim == 2 else "HWC"),
            at)

    add_image("preview", grid, step)
    add_image("originals", strip(cells[:, 0]), step)
    for k in range(copies):
        add_image("augmented", strip(cells[:, k + 1]), step + k)
    for split, y in histograms.items():
        counts = _class_counts(y, n_classes)
        add(summary.histogram_raw(
            f"{tag}/class_histogram/{split}", min=0, max=len(counts) - 1,
            num=int(counts.sum()), sum=float(np.dot(np.arange(len(counts)), counts)),
            sum_squares=float(np.dot(np.arange(len(counts)) ** 2, counts)),
            bucket_limits=[k + 0.5 for k in range(len(counts))],
            bucket_counts=counts.tolist()), step)
    path = _events_path(logdir)
    needed = sum(map(len, records))
    with space.output(path, needed, f"writing TensorBoard events into {logdir}") as tmp:
        with open(tmp, "wb") as f:
            for r in records:
                f.write(r)
    return path


def check_room(n: int, copies: int, image_shape, *, names: dict | None = None) -> None:
    """OptionError/SpaceError before any work when the summaries cannot be made: the preview
    image too large for a PNG, or the cells, the grid, the strips and their encoded PNGs more
    than the memory available. ``names``: as :func:`dlsets.augment.preview.check_grid`'s."""
    from ..augment.preview import check_grid, fewer, grid_size

    check_grid(n, copies, image_shape, names=names)  # the PNG's limits; cells and grid
    cells = n * (copies + 1) * int(np.prod(image_shape))
    grid = grid_size(n, copies, image_shape)[2]
    # the strips, as RGB, and every image encoded (PNG is at most about the raw pixels)
    space.need_memory(3 * cells + 6 * (cells + grid) + 4 * grid,
                      f"TensorBoard summaries of {n} images and {copies:,} copies of each",
                      fewer(names, scale=False))


def _check_logdir(logdir: Path) -> None:
    """OptionError for a logdir that cannot become a folder: a file, or a dangling link."""
    if logdir.is_symlink() and not logdir.exists():
        raise OptionError(f"logdir={str(logdir)!r} is a link to {os.readlink(logdir)}, which "
                          "does not exist: create that folder, or give another logdir")
    if os.path.lexists(logdir) and not logdir.is_dir():
        raise OptionError(f"logdir={str(logdir)!r} is a file, not a folder: give a folder for "
                          "the event files")


def _class_counts(y, n_classes: int | None) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
        raise OptionError(f"labels of shape {y.shape} and dtype {y.dtype}: expected (N,) class "
                          "numbers >= 0")
    counts = np.bincount(y, minlength=n_classes or 0)
    if n_classes is not None and len(counts) > n_classes:
        raise OptionError(f"labels go up to {len(counts) - 1} but classes names {n_classes}")
    return counts
