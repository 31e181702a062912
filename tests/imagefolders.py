"""Image folders for tests, written with Pillow: every format, mode and layout dlsets reads."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".bmp": "BMP", ".gif": "GIF", ".tif": "TIFF",
           ".webp": "WEBP"}


def pattern(h: int, w: int, seed: int = 0, color: bool = True) -> np.ndarray:
    """A smooth image (compresses like a photo, survives JPEG) with a bright top-left corner,
    so orientation and geometry can be checked."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    a, b, c = rng.integers(40, 140), rng.integers(30, 100), rng.integers(0, 160)
    base = (yy * a / max(1, h) + xx * b / max(1, w) + c) % 160
    img = np.stack([base, (base + 50) % 160, (base + 100) % 160], axis=-1)
    img[: max(1, h // 4), : max(1, w // 4)] = 250
    img = img.astype(np.uint8)
    return img if color else img[..., 0].copy()


def save(path: Path, array: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = FORMATS.get(path.suffix.lower(), "PNG")
    Image.fromarray(array).save(path, format=fmt, **kw)
    return path


def class_folder(root: Path, counts: dict[str, int], *, size=(20, 24), ext=".png",
                 seed: int = 0) -> Path:
    """``root/<class>/<i>.<ext>`` with ``counts[class]`` images each."""
    k = seed
    for cls, n in counts.items():
        for i in range(n):
            save(root / cls / f"img{i:03d}{ext}", pattern(*size, seed=k))
            k += 1
    return root


def seg_folder(root: Path, n: int, *, size=(24, 32), classes: int = 3, seed: int = 0,
               mask_ext=".png") -> Path:
    """``root/images/<i>.jpg`` + ``root/masks/<i>.png`` (class maps 0..classes-1)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        save(root / "images" / f"s{i:03d}.jpg", pattern(*size, seed=seed + i))
        m = np.zeros(size, np.uint8)
        m[size[0] // 2:, :] = 1 + (i % (classes - 1))
        m[: size[0] // 4, : size[1] // 4] = rng.integers(0, classes)
        save(root / "masks" / f"s{i:03d}{mask_ext}", m)
    return root


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (over Pillow's limit)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def with_orientation(array: np.ndarray, orientation: int) -> bytes:
    """JPEG bytes of ``array`` tagged with an EXIF orientation."""
    im = Image.fromarray(array)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()
