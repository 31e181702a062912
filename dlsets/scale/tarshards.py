"""WebDataset tar shards: each sample is ``{key}.cls`` (its label as decimal text) and
``{key}.npy`` (its image as a .npy file), the key being the sample id in 10 digits, plus
``{key}.mask.npy`` (its segmentation mask) for sets with masks.

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

from ..errors import FormatError

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
    """Byte layout of one sample: a .cls member (header + one block), a .npy member, and with
    masks a ``.mask.npy`` member (WebDataset's sample key is the name up to the first dot, so
    ``{key}.mask.npy`` is the field ``mask.npy`` of the same sample; a .npy rather than a .png
    keeps every sample the same size, mappable, and any mask dtype exact)."""

    def __init__(self, image_shape: tuple[int, ...], dtype: np.dtype,
                 mask_shape: tuple[int, ...] | None = None, mask_dtype=None) -> None:
        self.image_shape = tuple(int(d) for d in image_shape)
        self.dtype = np.dtype(dtype)
        self.npy_head = npy_header(self.image_shape, self.dtype)
        self.image_bytes = int(np.prod(self.image_shape)) * self.dtype.itemsize
        self.npy_size = len(self.npy_head) + self.image_bytes
        self.label_offset = BLOCK  # the .cls payload
        self.npy_offset = 3 * BLOCK  # the .npy payload
        self.image_offset = self.npy_offset + len(self.npy_head)
        self.stride = self.npy_offset + _blocks(self.npy_size)
        self.mask_shape = None if mask_shape is None else tuple(int(d) for d in mask_shape)
        if self.mask_shape is not None:
            self.mask_dtype = np.dtype(mask_dtype)
            self.mask_head = npy_header(self.mask_shape, self.mask_dtype)
            self.mask_bytes = int(np.prod(self.mask_shape)) * self.mask_dtype.itemsize
            self.mask_size = len(self.mask_head) + self.mask_bytes
            self.mask_header_offset = self.stride
            self.mask_offset = self.stride + BLOCK + len(self.mask_head)
            self.stride += BLOCK + _blocks(self.mask_size)

    def members(self) -> tuple[tuple[int, str, int | None], ...]:
        """(offset in a sample, name suffix, payload size or None) of each member header."""
        out = ((0, "cls", None), (2 * BLOCK, "npy", self.npy_size))
        if self.mask_shape is not None:
            out += ((self.mask_header_offset, "mask.npy", self.mask_size),)
        return out

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

    def __init__(self, f: BinaryIO, image_shape: tuple[int, ...], dtype: np.dtype,
                 mask_shape: tuple[int, ...] | None = None, mask_dtype=None) -> None:
        self.f = f
        self.layout = lay = Layout(image_shape, dtype, mask_shape, mask_dtype)
        key = "0" * KEY_DIGITS
        # one .cls template per label length; the .npy template has a fixed size
        self._cls = np.stack([_header(f"{key}.cls", d) for d in range(1, _MAX_LABEL_DIGITS + 1)])
        self._npy = _header(f"{key}.npy", lay.npy_size)
        self._head = np.frombuffer(lay.npy_head, np.uint8)
        if lay.mask_shape is not None:
            self._mask = _header(f"{key}.mask.npy", lay.mask_size)
            self._mask_head = np.frombuffer(lay.mask_head, np.uint8)
        self.count = 0

    def write(self, first_id: int, images: np.ndarray, labels: np.ndarray,
              masks: np.ndarray | None = None) -> None:
        """Samples ``first_id .. first_id + len(images) - 1`` (with their masks if the layout
        has them)."""
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
        if lay.mask_shape is not None:
            masks = np.ascontiguousarray(masks, dtype=lay.mask_dtype)
            head = np.broadcast_to(self._mask, (n, BLOCK)).copy()
            head[:, :KEY_DIGITS] = key
            _checksum(head)
            at = lay.mask_header_offset
            buf[:, at:at + BLOCK] = head
            buf[:, at + BLOCK:lay.mask_offset] = self._mask_head
            buf[:, lay.mask_offset:lay.mask_offset + lay.mask_bytes] = masks.reshape(
                n, -1).view(np.uint8)
        self.f.write(buf.data)
        self.count += n

    def close(self) -> None:
        self.f.write(bytes(self.layout.file_size(self.count) - self.count * self.layout.stride))


def open_images(path: str | os.PathLike, count: int, first_id: int,
                image_shape: tuple[int, ...], dtype: np.dtype, mask_shape=None,
                mask_dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """The images of a shard written by :class:`TarShardWriter` as a read-only strided memory
    map (count, *image_shape), and its labels (count,) int64.

    Checks the file's size and the first and last samples' member names and sizes against the
    layout, so a file of another shape or layout is refused, not misread."""
    lay = Layout(image_shape, dtype, mask_shape, mask_dtype)
    raw = _open(path, count, first_id, lay)
    if count == 0:
        return np.zeros((0, *lay.image_shape), lay.dtype), np.zeros(0, np.int64)
    text = np.ndarray((count, _MAX_LABEL_DIGITS), np.uint8, buffer=raw,
                      offset=lay.label_offset, strides=(lay.stride, 1))
    return _strided(raw, count, lay.image_shape, lay.dtype, lay.image_offset, lay.stride), \
        parse_labels(np.array(text))


def open_masks(path: str | os.PathLike, count: int, first_id: int,
               image_shape: tuple[int, ...], dtype: np.dtype, mask_shape: tuple[int, ...],
               mask_dtype) -> np.ndarray:
    """The masks of a shard with masks, as :func:`open_images` maps its images."""
    lay = Layout(image_shape, dtype, mask_shape, mask_dtype)
    raw = _open(path, count, first_id, lay)
    if count == 0:
        return np.zeros((0, *lay.mask_shape), lay.mask_dtype)
    return _strided(raw, count, lay.mask_shape, lay.mask_dtype, lay.mask_offset, lay.stride)


def _open(path, count: int, first_id: int, lay: Layout):
    size = os.path.getsize(path)
    if size != lay.file_size(count):
        raise FormatError(f"{path}: {size} bytes, but {count} samples of {lay.image_shape} "
                          f"{lay.dtype} take {lay.file_size(count)}: not this shard, or damaged")
    if count == 0:
        return None
    raw = np.memmap(path, np.uint8, mode="r")
    for i in {0, count - 1}:
        at = i * lay.stride
        for off, ext, want in lay.members():
            info = tarfile.TarInfo.frombuf(bytes(raw[at + off:at + off + BLOCK]), "utf-8",
                                           "surrogateescape")
            name = f"{first_id + i:0{KEY_DIGITS}d}.{ext}"
            if info.name != name or (want is not None and info.size != want):
                raise FormatError(f"{path}: member {info.name!r} ({info.size} bytes) where "
                                  f"{name!r} was expected: not a dlsets shard, or damaged")
    return raw


def _strided(raw, count: int, shape: tuple[int, ...], dtype: np.dtype, offset: int,
             stride: int) -> np.ndarray:
    step = dtype.itemsize * np.cumprod((1, *shape[::-1]))[-2::-1]
    return np.ndarray((count, *shape), dtype, buffer=raw, offset=offset,
                      strides=(stride, *map(int, step)))


def parse_labels(text: np.ndarray) -> np.ndarray:
    """(n, k) NUL-padded ASCII digits -> (n,) int64."""
    digits = text != 0
    value = np.zeros(len(text), np.int64)
    for c in range(text.shape[1]):
        on = digits[:, c]
        value[on] = value[on] * 10 + (text[on, c].astype(np.int64) - 48)
    return value
