"""One image file (any format Pillow reads) -> a uint8 array of a fixed size; masks likewise.

Pure functions of (path, target): :func:`decode_image` and :func:`decode_pair` return the
pixels, or a :class:`Skip` saying why the file cannot be used. What they do, in order:

- the size check against Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``),
  before any pixel is decoded;
- JPEGs are decoded at reduced scale (Pillow's draft mode: libjpeg's 1/2, 1/4, 1/8 DCT
  scaling) when the target is at most half the size, which is what makes photo folders fast;
- the first frame of animations (GIF, APNG, WebP) and multi-page TIFFs;
- modes made explicit: 16-bit greyscale (``I;16``, ``I``) is scaled to 8 bits (v / 257,
  rounded), palette images go through their palette, transparency is composited over black,
  CMYK / YCbCr / LAB / HSV are converted; 32-bit float images (mode ``F``) are skipped;
- geometry: ``stretch`` (resize to H x W), ``crop`` (scale to cover, centre crop), ``pad``
  (scale to fit, centre on black), bilinear for images, nearest neighbour for masks;
- the EXIF orientation is applied last (on the small result, so it costs nothing).

Masks are integer class maps: mode ``L``, ``P`` (the palette index is the class, as in Pascal
VOC), ``1``, ``I;16`` / ``I`` with values up to 255, or RGB whose three channels are equal.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..store.regular import NotRegular, open_regular

RESIZE_MODES = ("stretch", "crop", "pad")
COLORS = ("rgb", "grayscale")

# Extensions that are certainly not images: skipped without opening them.
NOT_IMAGES = frozenset(
    ".txt .csv .tsv .json .jsonl .xml .yaml .yml .md .rst .html .htm .pdf .py .ipynb .sh .zip "
    ".tar .gz .tgz .bz2 .xz .7z .rar .npy .npz .h5 .hdf5 .pkl .pickle .parquet .mat .doc .docx "
    ".xls .xlsx .mp4 .avi .mov .mkv .mp3 .wav .log .ini .cfg .db".split())

# EXIF orientation -> the PIL transpose that shows the image upright (as ImageOps.exif_transpose)
_ORIENTATION = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
                6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}
_SWAPS = (5, 6, 7, 8)  # orientations that exchange width and height


@dataclass(frozen=True)
class Skip:
    """Why a file was not used; ``kind`` is a short category (``not an image``, ``corrupt``,
    ``unsupported mode``, ``too large``, ``size``, ``mask``), ``reason`` the full sentence."""

    kind: str
    reason: str

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Target:
    """What every decoded image becomes: ``size`` (H, W) or None (keep the size, which must
    then equal ``exact``), ``color`` ("rgb" or "grayscale") and the ``resize`` mode."""

    size: tuple[int, int] | None
    color: str = "rgb"
    resize: str = "stretch"
    exact: tuple[int, int] | None = None
    # colour-coded masks: (colour code, class index) pairs (see dlsets.palette)
    palette: tuple[tuple[int, int], ...] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        h, w = self.size or self.exact
        return (h, w) if self.color == "grayscale" else (h, w, 3)


def _image_module():
    from PIL import Image

    return Image


def _unopened(exc: OSError) -> Skip:
    if isinstance(exc, NotRegular):
        return Skip("not an image", "not a regular file (a FIFO, device or socket now stands "
                    "where the scan found a file); not read")
    return Skip("corrupt", f"cannot be opened ({type(exc).__name__}: {exc})")


@contextmanager
def _regular(path: str):
    """``(file, size)`` of the regular file at ``path``, or a Skip for anything else (a FIFO
    put in a file's place never blocks the decoder), closed when the block ends."""
    try:
        f, size = open_regular(path)
    except OSError as exc:
        yield _unopened(exc), 0
        return
    with f:
        yield f, size


# Peak memory of decoding, per decoded source pixel, measured (ru_maxrss) on 3000x3000 images:
# 1-byte modes 5-9 B (the OpenCV path reads the file whole), RGB 4.2 B, RGBA / 16- and 32-bit
# 19-21 B (a 4-byte copy per conversion step). Rounded up.
_PEAK_PER_PIXEL = {"1": 10, "L": 10, "P": 10, "RGB": 6, "YCbCr": 6}
_PEAK_OTHER = 24


def peak_bytes(im, target: Target, file_bytes: int = 0) -> int:
    """Estimated peak memory of decoding the opened image ``im`` to ``target``, from its
    header alone: the decoded pixels (a JPEG at its draft scale) times what its mode costs,
    the result, and the file when it is read whole."""
    w, h = im.size
    scale = 1
    if im.format == "JPEG" and target.size is not None:
        th, tw = target.size
        want = _draft_request(w, h, tw, th, target.resize)
        if want[0] * 2 <= w and want[1] * 2 <= h:
            k = min(w // want[0], h // want[1])
            scale = next(s for s in (8, 4, 2, 1) if k >= s)
    px = -(-w // scale) * -(-h // scale)
    out = int(np.prod(target.size or target.exact or (1, 1))) * 8
    return px * _PEAK_PER_PIXEL.get(im.mode, _PEAK_OTHER) + out + min(file_bytes, FAST_BYTES)


def _within(memory, nbytes: int, decode):
    """``decode()`` once ``memory`` (a decoding budget, see :mod:`dlsets.sources.decode_pool`) holds
    ``nbytes`` for it; a Skip when the budget refuses. Small images never ask."""
    if memory is None or nbytes < memory.small:
        return decode()
    why = memory.take(nbytes)
    if why is not None:
        return Skip("too large", why)
    try:
        return decode()
    finally:
        memory.give(nbytes)


def _open(path):
    """Open ``path`` (a file object) with Pillow; a Skip when it cannot be identified or is a bomb.

    Pillow raises above twice its pixel limit and only warns between 1x and 2x; dlsets
    refuses from 1x (callers silence the warning, see :func:`quiet_bomb_warnings`)."""
    Image = _image_module()
    try:
        im = Image.open(path)
    except Image.DecompressionBombError as exc:
        return Skip("too large", f"refused by Pillow's decompression bomb check ({exc}); raise "
                    "PIL.Image.MAX_IMAGE_PIXELS if you trust the file")
    except Image.UnidentifiedImageError:
        return Skip("not an image", "not an image (Pillow cannot identify it)")
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        return Skip("corrupt", f"cannot be opened ({type(exc).__name__}: {exc})")
    limit = Image.MAX_IMAGE_PIXELS
    if limit and im.width * im.height > limit:
        im.close()
        return Skip("too large", f"{im.width}x{im.height} pixels is more than Pillow's "
                    f"decompression bomb limit of {limit} (PIL.Image.MAX_IMAGE_PIXELS; raise it "
                    "if you trust the file)")
    return im


@contextmanager
def quiet_bomb_warnings():
    """Silence Pillow's DecompressionBombWarning inside the block (dlsets skips those files
    itself and lists them); not thread-safe, like every ``warnings.catch_warnings``."""
    Image = _image_module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def orientation(im) -> int:
    """The EXIF orientation (1..8) of an opened image, 1 when it has none or it is invalid."""
    if "exif" not in im.info and im.format not in ("TIFF", "MPO"):
        return 1
    try:
        value = int(im.getexif().get(0x0112, 1))
    except Exception:  # a damaged EXIF block is not worth losing the picture for
        return 1
    return value if value in _ORIENTATION else 1


def oriented_size(im, orient: int) -> tuple[int, int]:
    """(width, height) of ``im`` as displayed, EXIF orientation applied."""
    w, h = im.size
    return (h, w) if orient in _SWAPS else (w, h)


def _geometry(src_w: int, src_h: int, tw: int, th: int, mode: str):
    """(resize size, crop box in source pixels or None, paste offset or None) for one mode."""
    if mode == "stretch":
        return (tw, th), None, None
    if mode == "crop":
        s = max(tw / src_w, th / src_h)
        cw, ch = min(src_w, tw / s), min(src_h, th / s)  # min: rounding must not overshoot
        x0, y0 = (src_w - cw) / 2, (src_h - ch) / 2
        return (tw, th), (x0, y0, x0 + cw, y0 + ch), None
    s = min(tw / src_w, th / src_h)  # pad
    nw, nh = max(1, min(tw, round(src_w * s))), max(1, min(th, round(src_h * s)))
    return (nw, nh), None, ((tw - nw) // 2, (th - nh) // 2)


def _draft_request(src_w: int, src_h: int, tw: int, th: int, mode: str) -> tuple[int, int]:
    """The smallest decoded size from which ``mode`` still resamples to (tw, th) without
    upsampling: JPEG draft picks the largest DCT reduction whose result is at least this."""
    if mode == "stretch":
        return tw, th
    s = max(tw / src_w, th / src_h) if mode == "crop" else min(tw / src_w, th / src_h)
    return max(1, math.ceil(src_w * s)), max(1, math.ceil(src_h * s))


def _to_8bit(im):
    """16/32-bit integer greyscale -> mode L (v / 257 rounded, clipped to 0..65535 first)."""
    Image = _image_module()
    a = np.asarray(im).astype(np.int64)
    a = np.clip(a, 0, 65535)
    return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8), "L")


def _to_color(im, color: str):
    """``im`` in mode RGB or L, or a Skip for modes that have no sensible 8-bit reading."""
    Image = _image_module()
    mode = im.mode
    if mode == "F":
        return Skip("unsupported mode", "32-bit float image (mode F): dlsets reads 8- and 16-bit "
                    "images; save it as 8- or 16-bit")
    if mode.startswith("I"):  # I, I;16, I;16B, I;16L, I;16N
        im = _to_8bit(im)
    elif mode in ("P", "PA"):
        transparent = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if transparent else "RGB")
    if im.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        im = Image.alpha_composite(black, rgba)
    want = "L" if color == "grayscale" else "RGB"
    if im.mode != want:
        try:
            im = im.convert(want)
        except (ValueError, OSError) as exc:
            return Skip("unsupported mode", f"mode {mode} cannot be converted to {want} ({exc})")
    return im


def _resample(im, target_wh: tuple[int, int], mode: str, nearest: bool, fill: int = 0):
    """Resize ``im`` to ``target_wh`` (width, height) the way ``mode`` says."""
    Image = _image_module()
    tw, th = target_wh
    if im.size == (tw, th):
        return im
    size, box, offset = _geometry(im.width, im.height, tw, th, mode)
    method = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    out = im.resize(size, method, box=box)
    if offset is not None:
        canvas = Image.new(out.mode, (tw, th), fill)
        canvas.paste(out, offset)
        out = canvas
    return out


def _transpose(im, orient: int):
    if orient == 1:
        return im
    Image = _image_module()
    return im.transpose(getattr(Image.Transpose, _ORIENTATION[orient]))


def _plan(im, target: Target):
    """(EXIF orientation, target (width, height) before turning, JPEG draft request or None)
    for an opened image, or a Skip when its size is not the common one."""
    orient = orientation(im)
    w, h = oriented_size(im, orient)
    if target.size is None:
        eh, ew = target.exact
        if (w, h) != (ew, eh):
            return Skip("size", f"is {w}x{h} (width x height), the first one {ew}x{eh}")
        th, tw = eh, ew
    else:
        th, tw = target.size
    raw_target = (th, tw) if orient in _SWAPS else (tw, th)
    want = None
    if im.format == "JPEG" and target.size is not None:
        want = _draft_request(im.width, im.height, *raw_target, target.resize)
        if not (want[0] * 2 <= im.width and want[1] * 2 <= im.height):
            want = None
    return orient, raw_target, want


def _decode_opened(im, target: Target):
    """Pixels of an opened image as (H, W[, 3]) uint8, or a Skip."""
    plan = _plan(im, target)
    if isinstance(plan, Skip):
        return plan
    orient, raw_target, want = plan
    if want is not None:
        im.draft("L" if target.color == "grayscale" else "RGB", want)
    im.load()
    im = _to_color(im, target.color)
    if isinstance(im, Skip):
        return im
    im = _resample(im, raw_target, target.resize, nearest=False)
    return np.asarray(_transpose(im, orient))


_ERRORS = (OSError, ValueError, SyntaxError, EOFError, MemoryError, IndexError, KeyError,
           TypeError, ZeroDivisionError)
"""What Pillow's plugins raise on damaged files (each plugin has its favourites)."""


_PNG = b"\x89PNG\r\n\x1a\n"
FAST_BYTES = 16 << 20  # PNGs and JPEGs up to this size may take the OpenCV path (read whole)


def _plain_png(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, colour type) of an 8-bit greyscale or RGB PNG with no transparency
    and no EXIF chunk before its pixels; None for every other file."""
    if data[:8] != _PNG or data[12:16] != b"IHDR" or len(data) < 33:
        return None
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if depth != 8 or ctype not in (0, 2) or interlace:
        return None
    pos = 33
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            return w, h, ctype
        if kind in (b"tRNS", b"eXIf"):
            return None
        pos += 12 + length
    return None


def _fast_png(data: bytes, target: Target, info: tuple[int, int, int] | None = None):
    """Pixels of a plain PNG decoded by OpenCV (no Python per row or chunk: twice as fast as
    Pillow on small images), bit-identical to the Pillow path; None to use that path.
    ``info``: :func:`_plain_png` of ``data`` when the caller has it."""
    import cv2

    info = info or _plain_png(data)
    if info is None:
        return None
    w, h, ctype = info
    limit = _image_module().MAX_IMAGE_PIXELS
    gray = target.color == "grayscale"
    if (limit and w * h > limit) or (gray and ctype == 2):
        return None  # Pillow reports bombs; its luma formula differs from OpenCV's by rounding
    if target.size is None:
        eh, ew = target.exact
        if (w, h) != (ew, eh):
            return Skip("size", f"is {w}x{h} (width x height), the first one {ew}x{eh}")
    flag = (cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    a = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if a is None or a.shape[:2] != (h, w):
        return None
    if not gray:
        # numpy, not cv2.cvtColor: OpenCV's thread pool is not safe in forked workers
        a = np.ascontiguousarray(a[..., ::-1])
    if target.size is not None and (h, w) != target.size:
        Image = _image_module()
        im = Image.fromarray(a)
        a = np.asarray(_resample(im, (target.size[1], target.size[0]), target.resize,
                                 nearest=False))
    return a


_SCALES = {1: "", 2: "_2", 4: "_4", 8: "_8"}


def _fast_jpeg(data: bytes, im, target: Target):
    """Pixels of a baseline RGB or greyscale JPEG decoded by OpenCV at the DCT scale Pillow's
    draft mode picks (the same libjpeg-turbo scaled decode, without Pillow's per-call
    overhead: a third less time); None to use Pillow."""
    import cv2

    if (im.mode not in ("RGB", "L") or im.info.get("progressive") or len(im.tile) != 1
            or not data.endswith(b"\xff\xd9")):
        return None  # a truncated file (no end marker) is Pillow's to report
    plan = _plan(im, target)
    if isinstance(plan, Skip):
        return plan
    orient, raw_target, want = plan
    scale = 1
    if want is not None:  # JpegImageFile.draft's rule
        k = min(im.width // want[0], im.height // want[1])
        scale = next(s for s in (8, 4, 2, 1) if k >= s)
    gray = target.color == "grayscale"
    # IMREAD_COLOR_RGB (OpenCV >= 4.10) has libjpeg-turbo write RGB itself (JCS_EXT_RGB: no
    # cvtColor, no flip in numpy); it goes with the reduced-grey flag, which is the scale alone
    rgb = not gray and hasattr(cv2, "IMREAD_COLOR_RGB")
    name = "IMREAD_REDUCED_GRAYSCALE" if gray or rgb else "IMREAD_REDUCED_COLOR"
    flag = (getattr(cv2, name + _SCALES[scale]) if scale > 1
            else cv2.IMREAD_GRAYSCALE if gray or rgb else cv2.IMREAD_COLOR)
    if rgb:
        flag |= cv2.IMREAD_COLOR_RGB
    a = cv2.imdecode(np.frombuffer(data, np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    expect = (-(-im.height // scale), -(-im.width // scale))
    if a is None or a.shape[:2] != expect or (not gray and a.ndim != 3):
        return None
    if not gray and not rgb:
        a = np.ascontiguousarray(a[..., ::-1])  # numpy: cv2.cvtColor is unsafe after a fork
    if orient == 1 and raw_target == (a.shape[1], a.shape[0]):
        return a  # the DCT scale gave the size asked for (512 -> 64): nothing to resample
    out = _resample(_image_module().fromarray(a), raw_target, target.resize, nearest=False)
    return np.asarray(_transpose(out, orient))


def decode_image(path: str, target: Target, *, fast: bool = False,
                 memory=None) -> np.ndarray | Skip:
    """The image at ``path`` as uint8 ``target.shape``, or a :class:`Skip` saying why not.

    ``fast``: plain 8-bit PNGs and baseline JPEGs go through OpenCV (Pillow's pixels, in half
    and two thirds of the time); everything else, and anything OpenCV declines, through
    Pillow. ``memory``: a decoding budget that images estimated to need much memory (from
    their header) must hold while they decode. Only regular files are opened."""
    try:
        f, size = open_regular(path)
    except OSError as exc:
        return _unopened(exc)
    with f:
        return _decode_file(f, size, path, target, fast, memory)


def _decode_file(f, size: int, path: str, target: Target, fast: bool, memory):
    source = f
    ext = path[-5:].lower()
    data = None
    if fast and ext.endswith((".png", ".jpg", ".jpeg")) and size <= FAST_BYTES:
        try:
            # the size fstat gave (+1 to see growth), not FAST_BYTES: a 16 MB buffer per
            # file cost 40 us of CPU on a 50 KB JPEG (a tenth of its entropy decoding)
            data = f.read(size + 1)
            if len(data) > size:  # grew since: read on, as far as FAST_BYTES + 1 in all
                data += f.read(FAST_BYTES - size)
        except OSError:
            data = None  # Pillow says what is wrong with it
        else:
            info = _plain_png(data) if ext.endswith(".png") else None
            big = (info is not None and memory is not None
                   and info[0] * info[1] * _PEAK_PER_PIXEL["L"] >= memory.small)
            if info is not None and not big:  # big ones go through Pillow and the budget
                got = _fast_png(data, target, info)
                if got is not None:
                    return got
            source = io.BytesIO(data)
    im = _open(source)
    if isinstance(im, Skip):
        return im

    def decode():
        if data is not None and im.format == "JPEG":
            got = _fast_jpeg(data, im, target)
            if got is not None:
                return got
        return _decode_opened(im, target)

    try:
        with im:
            w, h = im.size
            if memory is None or w * h * _PEAK_OTHER + FAST_BYTES < memory.small:
                return decode()  # small at any mode and scale: no estimate needed
            return _within(memory, peak_bytes(im, target, len(data or b"")), decode)
    except _ERRORS as exc:
        return Skip("corrupt", f"cannot be decoded ({type(exc).__name__}: {exc})")


def _mask_values(im, palette=None):
    """A mask image as a (h, w) integer array, or a Skip for masks that are not class maps
    (with a ``palette``: colours mapped to classes, a Skip naming a colour not in it)."""
    mode = im.mode
    if palette is not None:
        from .palette import apply

        got = apply(np.asarray(im.convert("RGB")), palette)
        return Skip("mask", got) if isinstance(got, str) else got
    if mode in ("L", "P"):
        return np.asarray(im)
    if mode == "1":
        return np.asarray(im).astype(np.uint8)
    if mode in ("LA", "PA"):
        return np.asarray(im.getchannel(0))
    if mode.startswith("I"):
        a = np.asarray(im)
        if a.size and (int(a.min()) < 0 or int(a.max()) > 255):
            return Skip("mask", f"mask values {int(a.min())}..{int(a.max())} do not fit the 256 "
                        "classes dlsets stores (uint8)")
        return a.astype(np.uint8)
    if mode in ("RGB", "RGBA"):
        a = np.asarray(im)
        if np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]):
            return np.ascontiguousarray(a[..., 0])
        return Skip("mask", f"mask is a colour image (mode {mode}); masks must be class "
                    "indices (single-channel, mode L or P), or give a palette of colours to "
                    "classes (mask_palette=, --mask-palette FILE)")
    return Skip("mask", f"mask has mode {mode}; masks must be class indices (mode L, P or I;16)")


def decode_pair(image_path: str, mask_path: str, target: Target, *, memory=None
                ) -> tuple[np.ndarray, np.ndarray] | Skip:
    """An image and its mask, both brought to ``target``'s size by the same geometry (the mask
    by nearest neighbour), or a Skip. The mask must have the image's size, either as displayed
    (EXIF orientation applied) or as stored (then it follows the image's orientation)."""
    with _regular(image_path) as (f, _), _regular(mask_path) as (g, _):
        if isinstance(f, Skip):
            return f
        if isinstance(g, Skip):
            return Skip("mask", f"its mask {mask_path.rsplit('/', 1)[-1]}: {g.reason}")
        return _decode_pair(f, g, mask_path, target, memory)


def _decode_pair(f, g, mask_path: str, target: Target, memory):
    im = _open(f)
    if isinstance(im, Skip):
        return im
    mk = _open(g)
    if isinstance(mk, Skip):
        im.close()
        return Skip(mk.kind if mk.kind != "not an image" else "mask",
                    f"its mask {mask_path.rsplit('/', 1)[-1]}: {mk.reason}")
    try:
        with im, mk:
            nbytes = peak_bytes(im, target) + peak_bytes(mk, target)
            return _within(memory, nbytes, lambda: _pair_pixels(im, mk, target))
    except _ERRORS as exc:
        return Skip("corrupt", f"cannot be decoded ({type(exc).__name__}: {exc})")


def _pair_pixels(im, mk, target: Target):
    Image = _image_module()
    orient = orientation(im)
    shown = oriented_size(im, orient)
    m_orient = orientation(mk)
    m_shown = oriented_size(mk, m_orient)
    if m_shown == shown:
        follow = None
    elif mk.size == im.size and m_orient == 1:
        follow = orient  # drawn on the stored pixels: turn it with the image
    else:
        return Skip("pair", f"image is {shown[0]}x{shown[1]} but its mask "
                    f"{m_shown[0]}x{m_shown[1]} (width x height)")
    pixels = _decode_opened(im, target)
    if isinstance(pixels, Skip):
        return pixels
    values = _mask_values(mk, target.palette)
    if isinstance(values, Skip):
        return values
    m = Image.fromarray(values, "L")
    if follow is not None:
        m = _transpose(m, follow)
    else:
        m = _transpose(m, m_orient)
    th, tw = pixels.shape[:2]
    m = _resample(m, (tw, th), target.resize, nearest=True)
    return pixels, np.asarray(m)


def probe_size(path: str) -> tuple[int, int] | None:
    """(height, width) of the image at ``path`` as displayed, None when it cannot be read;
    only the header is read."""
    with _regular(path) as (f, _):
        if isinstance(f, Skip):
            return None
        im = _open(f)
        if isinstance(im, Skip):
            return None
        try:
            with im:
                w, h = oriented_size(im, orientation(im))
        except _ERRORS:
            return None
    return h, w
