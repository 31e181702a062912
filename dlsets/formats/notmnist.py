"""notMNIST: PNG files in one folder per letter, read straight out of the tar.gz stream.

Split rule (notMNIST has no official train/test split): within each letter folder, every
member is ranked by the SHA-256 of its path below the top folder (``"A/<file>.png"``), and the
first ``(n + 5) // 10`` (one in ten, rounded) go to test, the rest to train. The rule is applied
to all members, readable or not, before unreadable images are dropped, so a decoder that
rejects one more file does not move any other file across the split. Each split is ordered by
the same hash, which mixes the letters deterministically. Only paths and hashes are involved,
so every machine makes the same split from the same archive.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from ..errors import FormatError
from ..store import space
from . import archive
from .limits import Limits

TEST_DIVISOR = 10
BATCH = 4096
BATCH_BYTES = 16 << 20  # PNG bytes per decoding batch at most
MAX_PNG = 1 << 20  # a 28x28 notMNIST PNG is under 2 KB; anything near this is not one
MAX_OTHER = MAX_PNG  # members that are not PNGs are skipped, but bounded too
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class NotMnistArrays:
    """Decoded images (N, H, W) uint8 and labels (N,) uint8 per split, plus skipped members."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    skipped: list[str] = field(default_factory=list)
    decoder: str = ""


def split_key(relpath: str) -> str:
    """The hash a member is ranked by: SHA-256 hex of its path below the top folder."""
    return hashlib.sha256(relpath.encode("utf-8")).hexdigest()


def test_count(n: int) -> int:
    """How many of a class's ``n`` members go to test: one in ten, rounded half up."""
    return (n + TEST_DIVISOR // 2) // TEST_DIVISOR


def assign_split(keys: Sequence[str], labels: np.ndarray) -> np.ndarray:
    """Boolean mask, True for test: per label, the ``test_count`` members with the lowest keys."""
    keys_arr = np.asarray(keys)
    is_test = np.zeros(len(keys_arr), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        order = idx[np.argsort(keys_arr[idx], kind="stable")]
        is_test[order[: test_count(len(idx))]] = True
    return is_test


def _decoder() -> tuple[Callable[[bytes], np.ndarray | None], str]:
    try:
        import cv2
    except ImportError:  # pillow is a hard dependency; OpenCV only makes this faster
        cv2 = None
    if cv2 is not None:
        flag = cv2.IMREAD_GRAYSCALE

        def decode(data: bytes):
            if not data:
                return None
            try:
                # imdecode releases the GIL, so threads decode in parallel.
                return cv2.imdecode(np.frombuffer(data, np.uint8), flag)
            except cv2.error:
                return None

        return decode, f"opencv {cv2.__version__}"
    import io

    import PIL
    from PIL import Image

    def decode_pil(data: bytes):
        try:
            with Image.open(io.BytesIO(data)) as im:
                return np.asarray(im.convert("L"))
        except Exception:  # PIL raises many types for broken files; any of them means unreadable
            return None

    return decode_pil, f"pillow {PIL.__version__}"


def png_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a PNG's IHDR chunk, None when ``data`` does not start like a PNG."""
    if len(data) < 24 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return height, width


def decode_batch(datas: Sequence[bytes], shape: tuple[int, int], decode=None):
    """Decode PNG bytes into (n, H, W) uint8; returns (images, ok mask).

    A file whose PNG header does not say ``shape`` is not decoded at all (a 1 KB PNG may
    claim 30,000 x 30,000 pixels, and a decoder would allocate them)."""
    if decode is None:
        decode = _decoder()[0]
    out = np.zeros((len(datas), *shape), dtype=np.uint8)
    ok = np.zeros(len(datas), dtype=bool)
    for i, d in enumerate(datas):
        if png_size(d) != tuple(shape):
            continue
        img = decode(d)
        if img is not None and img.shape == shape:
            out[i] = img
            ok[i] = True
    return out, ok


def read_notmnist_tar(
    source: str | os.PathLike | BinaryIO,
    *,
    classes: Sequence[str],
    image_shape: tuple[int, int] = (28, 28),
    workers: int = 2,
    on_batch: Callable[[int], None] | None = None,
    name: str | None = None,
    limits: Limits | None = None,
) -> NotMnistArrays:
    """Decode every ``<top>/<letter>/*.png`` of a notMNIST tar.gz and split it (see module doc).

    Members are read in order from the stream (no extraction); batches are decoded by
    ``workers`` threads. Unreadable images (empty, truncated, not a PNG of ``image_shape``) are
    skipped and listed by archive path in ``skipped``. ``on_batch(n)`` is called as members are
    read. ``name`` labels the archive in errors; ``limits`` bounds the images (train and test
    together at most twice ``max_images``), each member (1 MB) and the archive's total.
    """
    label = name or (os.fspath(source) if isinstance(source, str | os.PathLike)
                     else str(getattr(source, "name", "archive")))
    limits = limits or Limits(tuple(image_shape), layout="a notMNIST archive")
    max_members = 2 * limits.max_images
    index = {c: i for i, c in enumerate(classes)}
    decode, decoder_name = _decoder()
    shape = tuple(image_shape)
    paths: list[str] = []
    keys: list[str] = []
    labels: list[int] = []
    futures = []
    batch: list[bytes] = []
    batch_bytes = 0
    workers = max(1, workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:

        def submit(batch):
            # Reading outpaces decoding: wait for old batches so that undecoded PNG bytes
            # (a quarter of a gigabyte for notMNIST-large) never pile up in the queue.
            if len(futures) > 2 * workers:
                futures[-2 * workers - 1].result()
            futures.append(pool.submit(decode_batch, batch, shape, decode))
            if on_batch:
                on_batch(len(batch))

        def is_png(path: str) -> bool:
            return path.lower().endswith(".png")

        for path, data in archive.iter_files(
                source, name=label, want=is_png,
                max_member=max(MAX_PNG, MAX_OTHER),
                max_total=max_members * (4096 + 1024) + (64 << 20)):
            parts = path.rsplit("/", 2)
            if len(parts) < 2 or parts[-2] not in index:
                raise FormatError(
                    f"{label}: member {path!r} is not in a class folder "
                    f"({', '.join(classes)}); is this a notMNIST archive?"
                )
            if len(paths) >= max_members:
                raise FormatError(
                    f"{label}: holds more than {max_members:,} PNG images, but {limits.layout} "
                    f"has at most {limits.max_images:,} per split (train and test together: "
                    f"{max_members:,}); the archive is damaged or hostile (if it really is that "
                    "large, raise 'max_images' in its registry entry)")
            paths.append(path)
            keys.append(split_key(f"{parts[-2]}/{parts[-1]}"))
            labels.append(index[parts[-2]])
            batch.append(data)
            batch_bytes += len(data)
            if len(batch) >= BATCH or batch_bytes >= BATCH_BYTES:
                submit(batch)
                batch, batch_bytes = [], 0
        if batch:
            submit(batch)
        results = [f.result() for f in futures]
    if not paths:
        raise FormatError(f"{label}: no PNG images found in letter folders")
    # the decoded batches, joined, then copied out into the two splits
    space.need_memory(2 * len(paths) * int(np.prod(shape)), f"reading {label}")
    images = np.concatenate([r[0] for r in results])
    ok = np.concatenate([r[1] for r in results])
    # Free the per-batch arrays before the splits are copied out: one copy fewer at the peak.
    results.clear()
    futures.clear()
    y = np.asarray(labels, dtype=np.uint8)
    is_test = assign_split(keys, y)
    order = np.argsort(np.asarray(keys), kind="stable")
    train_idx = order[~is_test[order] & ok[order]]
    test_idx = order[is_test[order] & ok[order]]
    skipped = [paths[i] for i in np.flatnonzero(~ok)]
    return NotMnistArrays(
        images[train_idx], y[train_idx], images[test_idx], y[test_idx],
        skipped=skipped, decoder=decoder_name,
    )
