"""WebDataset tar shards: each sample is ``{key}.cls`` (its label as decimal text) and
``{key}.npy`` (its image as a .npy file), the key being the sample id in 10 digits.

The members are POSIX ustar entries exactly as Python's ``tarfile`` writes them (mode 0444,
mtime 0, no owner names), so ``tarfile``, GNU tar, the ``webdataset`` package and
``ray.data.read_webdataset`` read them. They are not written through ``tarfile``: it spends
about 45 us per member (the ``webdataset`` package's TarWriter, built on it, more), about 20
times what augmenting a 28x28 image costs. Every header here comes from one ``tarfile``
template per member size; only the name digits and the checksum differ per sample, filled in
for a whole chunk at once with NumPy. Since every image has the same size, every sample
occupies the same number of bytes, so a reader can map the images of a shard as one strided
array (:func:`open_images`).
"""

from __future__ import annotations

import io
import os
import tarfile
from typing import BinaryIO

import numpy as np

from .errors import FormatError

BLOCK = 512
RECORD = 20 * BLOCK  # tarfile pads the archive to a whole record
KEY_DIGITS = 10
MODE = 0o444
_MAX_LABEL_DIGITS = 10  # .cls payloads up to 10 digits: labels < 10**10
_CHKSUM = slice(148, 156)


def _blocks(n: int) -> int:
    return -(-n // BLOCK) * BLOCK


def _header(name: str, size: int) -> np.ndarray:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, MODE, 0
    return np.frombuffer(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape"),
                         np.uint8).copy()


def npy_header(image_shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The .npy header of one image (the same for every image of a shard)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(image_shape)})
    return buf.getvalue()


class Layout:
    """Byte layout of one sample: a .cls member (header + one block) then a .npy member."""

    def __init__(self, image_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.image_shape = tuple(int(d) for d in image_shape)
        self.dtype = np.dtype(dtype)
        self.npy_head = npy_header(self.image_shape, self.dtype)
        self.image_bytes = int(np.prod(self.image_shape)) * self.dtype.itemsize
        self.npy_size = len(self.npy_head) + self.image_bytes
        self.label_offset = BLOCK  # the .cls payload
        self.npy_offset = 3 * BLOCK  # the .npy payload
        self.image_offset = self.npy_offset + len(self.npy_head)
        self.stride = self.npy_offset + _blocks(self.npy_size)

    def file_size(self, count: int) -> int:
        end = count * self.stride + 2 * BLOCK
        return -(-end // RECORD) * RECORD


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """(n, width) ASCII digits of non-negative ints, zero-padded on the left."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] // powers) % 10 + 48).astype(np.uint8)


def _checksum(headers: np.ndarray) -> None:
    """Fill in the ustar checksum of each (n, 512) header, as tarfile does: the byte sum with
    the field read as spaces, in six octal digits, a NUL, and the field's last space kept."""
    headers[:, _CHKSUM] = 32
    total = headers.sum(axis=1, dtype=np.int64)
    powers = 8 ** np.arange(5, -1, -1, dtype=np.int64)
    headers[:, 148:154] = ((total[:, None] // powers) % 8 + 48).astype(np.uint8)
    headers[:, 154] = 0


class TarShardWriter:
    """Append samples to an open binary file as WebDataset members; ``close()`` ends the
    archive (two zero blocks, padded to a 10 KiB record, as tarfile does)."""

    def __init__(self, f: BinaryIO, image_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.f = f
        self.layout = Layout(image_shape, dtype)
        key = "0" * KEY_DIGITS
        # one .cls template per label length; the .npy template has a fixed size
        self._cls = np.stack([_header(f"{key}.cls", d) for d in range(1, _MAX_LABEL_DIGITS + 1)])
        self._npy = _header(f"{key}.npy", self.layout.npy_size)
        self._head = np.frombuffer(self.layout.npy_head, np.uint8)
        self.count = 0

    def write(self, first_id: int, images: np.ndarray, labels: np.ndarray) -> None:
        """Samples ``first_id .. first_id + len(images) - 1``."""
        lay = self.layout
        n = len(images)
        if n == 0:
            return
        images = np.ascontiguousarray(images, dtype=lay.dtype)
        labels = np.asarray(labels).astype(np.int64)
        if labels.min() < 0 or labels.max() >= 10 ** _MAX_LABEL_DIGITS:
            raise FormatError(f"labels {labels.min()}..{labels.max()} cannot be .cls members: "
                              f"give labels in 0..{10 ** _MAX_LABEL_DIGITS - 1}")
        ids = np.arange(first_id, first_id + n, dtype=np.int64)
        key = _digits(ids, KEY_DIGITS)
        length = np.ones(n, np.int64)
        for d in range(1, _MAX_LABEL_DIGITS):
            length += labels >= 10 ** d
        buf = np.zeros((n, lay.stride), np.uint8)
        cls = self._cls[length - 1]
        cls[:, :KEY_DIGITS] = key
        _checksum(cls)
        buf[:, :BLOCK] = cls
        text = _digits(labels, _MAX_LABEL_DIGITS)
        # left-align each label's digits: row r keeps its last length[r] digits
        cols = np.arange(_MAX_LABEL_DIGITS)
        shifted = np.take_along_axis(text, (cols + (_MAX_LABEL_DIGITS - length)[:, None])
                                     % _MAX_LABEL_DIGITS, axis=1)
        shifted[cols >= length[:, None]] = 0
        buf[:, BLOCK:BLOCK + _MAX_LABEL_DIGITS] = shifted
        npy = np.broadcast_to(self._npy, (n, BLOCK)).copy()
        npy[:, :KEY_DIGITS] = key
        _checksum(npy)
        buf[:, 2 * BLOCK:3 * BLOCK] = npy
        buf[:, lay.npy_offset:lay.image_offset] = self._head
        buf[:, lay.image_offset:lay.image_offset + lay.image_bytes] = images.reshape(n, -1).view(
            np.uint8)
        self.f.write(buf.data)
        self.count += n

    def close(self) -> None:
        self.f.write(bytes(self.layout.file_size(self.count) - self.count * self.layout.stride))


def open_images(path: str | os.PathLike, count: int, first_id: int,
                image_shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The images of a shard written by :class:`TarShardWriter` as a read-only strided memory
    map (count, *image_shape), and its labels (count,) int64.

    Checks the file's size and the first and last samples' member names and sizes against the
    layout, so a file of another shape or layout is refused, not misread.
    """
    lay = Layout(image_shape, dtype)
    size = os.path.getsize(path)
    if size != lay.file_size(count):
        raise FormatError(f"{path}: {size} bytes, but {count} samples of {lay.image_shape} "
                          f"{lay.dtype} take {lay.file_size(count)}: not this shard, or damaged")
    if count == 0:
        return np.zeros((0, *lay.image_shape), lay.dtype), np.zeros(0, np.int64)
    raw = np.memmap(path, np.uint8, mode="r")
    for i in {0, count - 1}:
        at = i * lay.stride
        for off, ext, want in ((0, "cls", None), (2 * BLOCK, "npy", lay.npy_size)):
            info = tarfile.TarInfo.frombuf(bytes(raw[at + off:at + off + BLOCK]), "utf-8",
                                           "surrogateescape")
            name = f"{first_id + i:0{KEY_DIGITS}d}.{ext}"
            if info.name != name or (want is not None and info.size != want):
                raise FormatError(f"{path}: member {info.name!r} ({info.size} bytes) where "
                                  f"{name!r} was expected: not a dlsets shard, or damaged")
    step = lay.dtype.itemsize * np.cumprod((1, *lay.image_shape[::-1]))[-2::-1]
    images = np.ndarray((count, *lay.image_shape), lay.dtype, buffer=raw,
                        offset=lay.image_offset, strides=(lay.stride, *map(int, step)))
    text = np.ndarray((count, _MAX_LABEL_DIGITS), np.uint8, buffer=raw,
                      offset=lay.label_offset, strides=(lay.stride, 1))
    return images, parse_labels(np.array(text))


def parse_labels(text: np.ndarray) -> np.ndarray:
    """(n, k) NUL-padded ASCII digits -> (n,) int64."""
    digits = text != 0
    value = np.zeros(len(text), np.int64)
    for c in range(text.shape[1]):
        on = digits[:, c]
        value[on] = value[on] * 10 + (text[on, c].astype(np.int64) - 48)
    return value
