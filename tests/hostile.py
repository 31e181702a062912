"""Small hostile files: valid formats whose content claims (and really inflates to) far more
than a dataset of their layout holds. Built from repeated gzip members, so that a file that
inflates to gigabytes takes megabytes here and milliseconds to make."""

from __future__ import annotations

import functools
import gzip
import io
import pickle
import struct
import tarfile
import zlib

import numpy as np

from tests import formats

ZEROS_MEMBER_BYTES = 64 << 20  # what one zeros member inflates to


@functools.lru_cache(maxsize=1)
def zeros_member() -> bytes:
    """One gzip member holding 64 MiB of zero bytes (about 64 KB)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    return b"".join([*(c.compress(block) for _ in range(ZEROS_MEMBER_BYTES >> 20)), c.flush()])


def zeros_members(nbytes: int) -> bytes:
    """gzip members inflating to ``nbytes`` zero bytes (a multiple of 512)."""
    whole, rest = divmod(nbytes, ZEROS_MEMBER_BYTES)
    return zeros_member() * whole + (gzip.compress(bytes(rest), 9, mtime=0) if rest else b"")


def idx_gz_claiming(count: int, image_shape=(28, 28)) -> bytes:
    """A gzip'd uint8 IDX file whose header declares ``count`` images and whose data really
    inflates to that many (all zeros): 8,000,000 MNIST images are 6.3 GB, about 6 MB here."""
    header = struct.pack(">BBBB", 0, 0, 0x08, 1 + len(image_shape))
    header += struct.pack(f">{1 + len(image_shape)}I", count, *image_shape)
    return gzip.compress(header, mtime=0) + zeros_members(count * int(np.prod(image_shape)))


class TrailingMembers(io.RawIOBase):
    """A valid gzip'd file followed by ``copies`` gzip members of 64 MiB of zeros each, made as
    it is read (nothing held); ``consumed`` counts the bytes read from it."""

    def __init__(self, valid: bytes, copies: int) -> None:
        self._valid = valid
        self._copies = copies
        self._pos = 0
        self.consumed = 0

    @property
    def total(self) -> int:
        return len(self._valid) + self._copies * len(zeros_member())

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        member = zeros_member()
        out = memoryview(b).cast("B")
        n = 0
        while n < len(out) and self._pos < self.total:
            if self._pos < len(self._valid):
                src, at = self._valid, self._pos
            else:
                src, at = member, (self._pos - len(self._valid)) % len(member)
            k = min(len(out) - n, len(src) - at)
            out[n:n + k] = src[at:at + k]
            n += k
            self._pos += k
        self.consumed += n
        return n


def tar_gz_with_member(name: str, size: int, before: dict[str, bytes] | None = None) -> bytes:
    """A tar.gz whose member ``name`` is ``size`` zero bytes (after the small members
    ``before``); a 3.2 GB member makes a 3 MB file."""
    parts = []
    for n, data in (before or {}).items():
        info = tarfile.TarInfo(n)
        info.size = len(data)
        parts.append(info.tobuf(format=tarfile.GNU_FORMAT) + data + bytes(-len(data) % 512))
    info = tarfile.TarInfo(name)
    info.size = size
    parts.append(info.tobuf(format=tarfile.GNU_FORMAT))
    return (gzip.compress(b"".join(parts), mtime=0) + zeros_members(-(-size // 512) * 512)
            + gzip.compress(bytes(1024), mtime=0))


def shared_nested_list(depth: int, fan: int = 2) -> list:
    """Lists that each hold the one below ``fan`` times: tiny when pickled (shared references),
    ``fan ** depth`` items once anything walks it."""
    node: list = [0]
    for _ in range(depth):
        node = [node] * fan
    return node


def cifar10_python_tar_with_labels(labels, n: int = 10) -> bytes:
    """A cifar-10-python.tar.gz whose data_batch_1 has ``labels`` as its labels entry."""
    x = np.zeros((n, 32, 32, 3), np.uint8)
    y = np.zeros(n, np.uint8)
    good = formats.cifar10_python_tar(x, y, x, y, [f"c{i}" for i in range(10)], batches=1)
    members = {}
    with tarfile.open(fileobj=io.BytesIO(good)) as tf:
        for m in tf.getmembers():
            if m.isfile():
                members[m.name] = tf.extractfile(m).read()
    members["cifar-10-batches-py/data_batch_1"] = pickle.dumps(
        {"data": formats.cifar_pixels(x), "labels": labels}, protocol=2)
    return formats.tar_gz_bytes(members)


def png_claiming(height: int, width: int) -> bytes:
    """A small, valid PNG of ``height`` x ``width`` black pixels (compresses to little)."""
    raw = zlib.compressobj(1)
    rows = bytes((1 + width) * min(height, 256))  # a filter byte and the pixels, per row
    idat = b"".join(raw.compress(rows[: (1 + width) * min(256, height - r)])
                    for r in range(0, height, 256)) + raw.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))
