"""What augmentation does, as TensorBoard image summaries, beside a class histogram.

Written with ``tensorboardX`` (the ``tensorboard`` extra: numpy, protobuf and Pillow, no
TensorFlow or PyTorch). Tags, under ``<tag>/`` (default ``dlsets/``):

- ``preview``: the :func:`dlsets.preview_grid` image (each row an original, then its copies);
- ``originals``: the originals side by side, one row;
- ``augmented``: copy k of every original, side by side, at step ``step + k`` (the step slider
  walks through the copies);
- ``class_histogram/<split>``: one bucket per class (bucket k holds the count of label k).

Images are uint8, greyscale ones as RGB with three equal channels (how TensorBoard stores them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .errors import MissingDependencyError, OptionError

SEPARATOR = 128


def _summary_writer():
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise MissingDependencyError(
            "writing TensorBoard summaries needs tensorboardX, which is not installed: "
            "pip install 'dlsets[tensorboard]'"
        ) from None
    return SummaryWriter


def strip(cells: np.ndarray, gap: int = 1) -> np.ndarray:
    """uint8 (n, H, W[, C]) -> one image (H, n*W + (n-1)*gap[, C]), grey between the cells."""
    n, h, w = cells.shape[:3]
    out = np.full((h, n * w + (n - 1) * gap, *cells.shape[3:]), SEPARATOR, np.uint8)
    for i in range(n):
        out[:, i * (w + gap):i * (w + gap) + w] = cells[i]
    return out


def _add_image(writer, tag: str, image: np.ndarray, step: int) -> None:
    writer.add_image(tag, image, global_step=step, dataformats="HW" if image.ndim == 2 else "HWC")


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
    from .augment.preview import grid_of, preview_cells
    from .augment.transforms import channels_last

    writer_class = _summary_writer()
    _check_logdir(Path(logdir))
    for name, value, low in (("n", n, 1), ("copies", copies, 1), ("step", step, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise OptionError(f"{name}={value!r} is not allowed: give an integer >= {low}")
    x = channels_last("images", np.asarray(images), channels)
    if n > len(x):
        raise OptionError(f"n={n} images asked for but only {len(x)} given")
    cells = preview_cells(x, augmenter, n=n, copies=copies, seed=seed)
    grid = grid_of(cells)  # exactly what preview_grid(x, augmenter, n=n, ...) returns
    if isinstance(labels, Mapping):
        histograms = dict(labels)
    else:
        histograms = {} if labels is None else {"train": labels}
    n_classes = len(classes) if classes is not None else None
    writer = writer_class(logdir=os.fspath(logdir))
    try:
        _add_image(writer, f"{tag}/preview", grid, step)
        _add_image(writer, f"{tag}/originals", strip(cells[:, 0]), step)
        for k in range(copies):
            _add_image(writer, f"{tag}/augmented", strip(cells[:, k + 1]), step + k)
        for split, y in histograms.items():
            counts = _class_counts(y, n_classes)
            writer.add_histogram_raw(
                f"{tag}/class_histogram/{split}", min=0, max=len(counts) - 1,
                num=int(counts.sum()), sum=float(np.dot(np.arange(len(counts)), counts)),
                sum_squares=float(np.dot(np.arange(len(counts)) ** 2, counts)),
                bucket_limits=[k + 0.5 for k in range(len(counts))],
                bucket_counts=counts.tolist(), global_step=step)
        path = Path(writer.file_writer.event_writer._ev_writer._file_name)
    finally:
        writer.close()
    return path


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
