"""EMNIST: gzip'd IDX files read straight out of the official ``gzip.zip``, never unpacked.

The archive holds ``gzip/emnist-<variant>-<train|test>-<images-idx3|labels-idx1>-ubyte.gz`` for
six variants (EMNIST calls them splits). The images are stored transposed relative to MNIST;
they are returned upright.
"""

from __future__ import annotations

import os
import re
import struct
import zipfile
import zlib
from typing import BinaryIO

import numpy as np

from ..errors import FormatError
from .idx import read_idx

DEFLATE_MAX_RATIO = 1032  # deflate never inflates one byte into more than this many
ROLES = (("train", "images-idx3"), ("train", "labels-idx1"),
         ("test", "images-idx3"), ("test", "labels-idx1"))


def read_emnist_zip(
    source: str | os.PathLike | BinaryIO,
    *,
    variant: str,
    members: str = "gzip/emnist-{variant}-{split}-{kind}-ubyte.gz",
    image_shape: tuple[int, int] = (28, 28),
    label_offset: int = 0,
    name: str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` of one EMNIST variant: x (N, 28, 28) uint8 upright,
    y (N,) uint8 with ``label_offset`` subtracted (letters are numbered from 1 on disk).

    ``members`` is the member name pattern; members are matched by their base name (with or
    without ``.gz``), so a re-zipped copy with other folders works too. Each IDX header is
    checked before anything is allocated: the images must be (N, 28, 28) bytes and N no more
    than the compressed member could hold.
    """
    label = name or (os.fspath(source) if isinstance(source, str | os.PathLike) else "gzip.zip")
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise FormatError(f"{label}: not a readable zip archive ({exc}); fetch it again") from None
    with zf:
        by_base: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            if not info.is_dir():
                by_base.setdefault(info.filename.replace("\\", "/").rsplit("/", 1)[-1], info)
        out = []
        for split, kind in ROLES:
            base = members.format(variant=variant, split=split, kind=kind).rsplit("/", 1)[-1]
            info = by_base.get(base) or by_base.get(base.removesuffix(".gz"))
            if info is None:
                found = sorted({m.group(1) for b in by_base
                                if (m := re.fullmatch(r"emnist-(\w+)-(?:train|test)-.*", b))})
                raise FormatError(
                    f"{label}: no member {base} for EMNIST variant {variant!r}; the archive "
                    f"holds the variants {found or 'none'}"
                )
            where = f"{label}:{info.filename}"
            a = _read_member(zf, info, where, image_shape if kind.startswith("images") else None)
            out.append(a)
    x_tr, y_tr, x_te, y_te = out
    for x, y, split in ((x_tr, y_tr, "train"), (x_te, y_te, "test")):
        if len(x) != len(y):
            raise FormatError(f"{label}: {len(x)} {split} images but {len(y)} labels")
        if label_offset and y.size and int(y.min()) < label_offset:
            raise FormatError(f"{label}: {variant} {split} labels start at {int(y.min())}, "
                              f"expected {label_offset} or more")
    # The files store each glyph transposed; one contiguous copy makes them upright.
    return (np.ascontiguousarray(x_tr.transpose(0, 2, 1)), _shift(y_tr, label_offset),
            np.ascontiguousarray(x_te.transpose(0, 2, 1)), _shift(y_te, label_offset))


def _shift(y: np.ndarray, offset: int) -> np.ndarray:
    return (y - np.uint8(offset)).astype(np.uint8) if offset else y


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str,
                 image_shape: tuple[int, ...] | None) -> np.ndarray:
    try:
        with zf.open(info) as f:
            shape = _idx_shape(f, where)
        # A zip member never yields more than its recorded size, and the gzip inside it never
        # more than DEFLATE_MAX_RATIO times that: the header may claim no more.
        limit = max(info.file_size, 1) * DEFLATE_MAX_RATIO
        if (len(shape) != 1 if image_shape is None
                else tuple(shape[1:]) != tuple(image_shape) or len(shape) != 1 + len(image_shape)):
            what = ("(N,) labels" if image_shape is None
                    else f"(N, {', '.join(map(str, image_shape))}) images")
            raise FormatError(f"{where}: IDX shape {shape}, expected {what}")
        if int(np.prod(shape, dtype=np.int64)) > limit:
            raise FormatError(
                f"{where}: IDX header claims shape {shape}, more than the {info.file_size:,}-byte "
                "member can hold; the file is damaged"
            )
        with zf.open(info) as f:
            a = read_idx(f, name=where)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise FormatError(f"{where}: cannot be read ({exc}); fetch the archive again") from None
    if a.dtype != np.uint8:
        raise FormatError(f"{where}: IDX of type {a.dtype}, expected unsigned bytes")
    return a


def _idx_shape(f, where: str) -> tuple[int, ...]:
    """The dimensions in the IDX header at the start of ``f`` (gzip'd or not)."""
    raw = f.read(1 << 16)
    if raw[:2] == b"\x1f\x8b":
        try:
            # max_length: only the header is inflated, whatever follows it
            raw = zlib.decompressobj(wbits=31).decompress(raw, 1024)
        except zlib.error as exc:
            raise FormatError(f"{where}: not a readable gzip stream ({exc})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise FormatError(f"{where}: not an IDX file of unsigned bytes (magic {raw[:4].hex()})")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise FormatError(f"{where}: the IDX header ends early")
    return struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
