"""STL-10: the binary archive ``stl10_binary.tar.gz``, read as one stream, never unpacked.

Members (under ``stl10_binary/``): ``train_X.bin``, ``test_X.bin``, ``unlabeled_X.bin`` (images:
3 planes of 96x96 each, each plane column-major), ``train_y.bin``, ``test_y.bin`` (one byte per
image, 1..10), ``class_names.txt`` and ``fold_indices.txt`` (10 lines of 0-based train indices).

Python's ``tarfile`` in stream mode reads the members piece by piece: the unlabeled images are
2.7 GB, more than a reader that holds whole members (``dlsets.archive``) should keep in memory.
Every member is checked as :mod:`dlsets.formats.archive` does (no links, devices, absolute or ``..``
paths), and nothing is allocated beyond what the compressed archive could inflate to.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from ..errors import FormatError, UnsafeArchiveError
from .archive import duplicate, member_path

SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
DEFLATE_MAX_RATIO = 1032
TEXT_LIMIT = 1 << 24  # class names and fold indices: a few KB in the real archive
_BATCH = 1024  # images converted at a time (28 MB)


@dataclass
class Stl10Arrays:
    """Images (N, 96, 96, 3) uint8, labels (N,) uint8 in 0..9; ``folds`` (10, 1000) int64
    train indices; ``x_unlabeled`` only when asked for."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    folds: np.ndarray
    x_unlabeled: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)


def read_stl10_tar(
    source: str | os.PathLike | BinaryIO,
    *,
    unlabeled: bool = False,
    compressed_size: int | None = None,
    name: str | None = None,
) -> Stl10Arrays:
    """Read an STL-10 binary tar.gz; ``unlabeled=True`` also reads the 100,000 unlabeled images.

    Reading stops as soon as every member needed has been seen (a member given twice before
    then is a FormatError, as in :mod:`dlsets.formats.archive`). ``compressed_size`` (the
    archive's size; taken from the file when ``source`` is a path) bounds what a member may
    claim: deflate inflates at most 1032-fold.
    """
    label = name or (os.fspath(source) if isinstance(source, str | os.PathLike) else "archive")
    if isinstance(source, str | os.PathLike):
        compressed_size = os.path.getsize(source)
        with open(source, "rb") as f:
            return _read(f, unlabeled, compressed_size, label)
    return _read(source, unlabeled, compressed_size, label)


def _read(f, unlabeled: bool, compressed_size: int | None, label: str) -> Stl10Arrays:
    limit = None if compressed_size is None else compressed_size * DEFLATE_MAX_RATIO
    wanted = {"train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "fold_indices.txt"}
    if unlabeled:
        wanted.add("unlabeled_X.bin")
    got: dict[str, object] = {}
    seen: set[str] = set()  # no more than tarfile keeps itself
    try:
        with tarfile.open(fileobj=f, mode="r|gz", bufsize=1 << 20) as tf:
            for m in tf:
                path = member_path(m.name, label)
                if m.issym() or m.islnk():
                    raise UnsafeArchiveError(f"{label}: member {m.name!r} is a link; dataset "
                                             "archives hold plain files only, refusing it")
                if m.isdir():
                    continue
                if not m.isreg():
                    raise UnsafeArchiveError(f"{label}: member {m.name!r} is not a plain file "
                                             "(a device or FIFO); refusing it")
                base = path.rsplit("/", 1)[-1]
                if path in seen or base in got:  # also one name in two folders
                    raise FormatError(duplicate(label, path if path in seen else base))
                seen.add(path)
                if base not in wanted and base != "class_names.txt":
                    continue  # streamed past, never held
                where = f"{label}:{path}"
                if limit is not None and m.size > limit:
                    raise FormatError(f"{where}: claims {m.size:,} bytes, more than a "
                                      f"{compressed_size:,}-byte archive can hold")
                data = tf.extractfile(m)
                if base.endswith("_X.bin"):
                    got[base] = _images(data, m.size, where)
                elif base.endswith("_y.bin"):
                    got[base] = _labels(data, m.size, where)
                else:
                    if m.size > TEXT_LIMIT:
                        raise FormatError(f"{where}: {m.size:,} bytes, too big for a text file "
                                          "of this archive")
                    got[base] = _exact(data, m.size, where).decode("utf-8", "replace")
                if wanted <= set(got) and "class_names.txt" in got:
                    break
    except (tarfile.TarError, zlib.error, EOFError, OSError) as exc:
        raise FormatError(f"{label}: the archive is damaged or truncated ({exc}); delete it and "
                          "fetch it again") from None
    missing = sorted(wanted - set(got))
    if missing:
        raise FormatError(f"{label}: no member {', '.join(missing)} (is this stl10_binary.tar.gz?)")
    out = Stl10Arrays(
        got["train_X.bin"], got["train_y.bin"], got["test_X.bin"], got["test_y.bin"],
        _folds(got["fold_indices.txt"], len(got["train_X.bin"]), f"{label}:fold_indices.txt"),
        got.get("unlabeled_X.bin"),
        [s.strip() for s in str(got.get("class_names.txt", "")).splitlines() if s.strip()],
    )
    for split in ("train", "test"):
        x, y = getattr(out, f"x_{split}"), getattr(out, f"y_{split}")
        if len(x) != len(y):
            raise FormatError(f"{label}: {len(x)} {split} images but {len(y)} labels")
    return out


def _exact(f, size: int, where: str) -> bytes:
    data = f.read(size)
    if len(data) != size:
        raise FormatError(f"{where}: ends after {len(data):,} of {size:,} bytes (truncated)")
    return data


def _images(f, size: int, where: str) -> np.ndarray:
    if size % IMAGE_BYTES:
        raise FormatError(f"{where}: {size:,} bytes is not a whole number of {IMAGE_BYTES}-byte "
                          "96x96x3 images")
    n = size // IMAGE_BYTES
    out = np.empty((n, SIDE, SIDE, 3), dtype=np.uint8)
    buf = np.empty(_BATCH * IMAGE_BYTES, dtype=np.uint8)
    for start in range(0, n, _BATCH):
        k = min(_BATCH, n - start)
        view = memoryview(buf)[: k * IMAGE_BYTES]
        have = 0
        while have < len(view):
            got = f.readinto(view[have:])
            if not got:
                raise FormatError(f"{where}: ends inside image {start + have // IMAGE_BYTES}")
            have += got
        planes = buf[: k * IMAGE_BYTES].reshape(k, 3, SIDE, SIDE)  # (C, col, row) per image
        for c in range(3):  # a plane at a time: 2.5x faster than one 4-D transpose copy
            out[start:start + k, :, :, c] = planes[:, c].transpose(0, 2, 1)
    return out


def _labels(f, size: int, where: str) -> np.ndarray:
    y = np.frombuffer(_exact(f, size, where), dtype=np.uint8)
    if y.size and (y.min() < 1 or y.max() > 10):
        raise FormatError(f"{where}: labels run {y.min()}..{y.max()}, expected 1..10")
    return (y - 1).astype(np.uint8)


def _folds(text: str, n_train: int, where: str) -> np.ndarray:
    try:
        rows = [np.array(line.split(), dtype=np.int64) for line in text.splitlines()
                if line.strip()]
    except ValueError:
        raise FormatError(f"{where}: expected lines of whole numbers") from None
    if not rows or len({len(r) for r in rows}) != 1:
        raise FormatError(f"{where}: expected folds of equal length, got lengths "
                          f"{[len(r) for r in rows]}")
    folds = np.stack(rows)
    if folds.size and (folds.min() < 0 or folds.max() >= n_train):
        raise FormatError(f"{where}: indices outside 0..{n_train - 1} (the train images)")
    return folds
