"""Colour-coded masks (CamVid, Cityscapes style): a palette of colours to class indices.

A palette is given as a mapping of colours to class indices: a colour is ``(r, g, b)``,
``"#rrggbb"`` or ``"r,g,b"``; an index is 0..255. It is kept as a sorted tuple of
``(code, index)`` pairs, ``code = r << 16 | g << 8 | b``, which pickles to decoding workers
and keys the folder's prepared copy.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import numpy as np

from ..common import jsontext
from ..errors import OptionError

MAX_COLOURS = 4096
MAX_FILE = 1 << 20  # a palette file's bytes at most

Palette = tuple[tuple[int, int], ...]


def _colour(key: object) -> int:
    if isinstance(key, str):
        s = key.strip()
        if m := re.fullmatch(r"#([0-9a-fA-F]{6})", s):
            return int(m.group(1), 16)
        parts = [p.strip() for p in s.strip("()[] ").split(",")]
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            key = tuple(int(p) for p in parts)
    if (isinstance(key, (tuple, list)) and len(key) == 3
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255
                    for v in key)):
        r, g, b = (int(v) for v in key)
        return r << 16 | g << 8 | b
    raise OptionError(f"mask_palette colour {key!r} is not a colour: give (r, g, b) with values "
                      "0..255, '#rrggbb' or 'r,g,b'")


def name(code: int) -> str:
    """A colour code as ``#rrggbb``."""
    return f"#{code:06x}"


def check(palette: Mapping | None) -> Palette | None:
    """A user's palette as a sorted tuple of (colour code, class index), or OptionError."""
    if palette is None:
        return None
    if not isinstance(palette, Mapping) or not palette:
        raise OptionError(f"mask_palette={palette!r} is not allowed: give a mapping of colours "
                          "to class indices, e.g. {'#000000': 0, '#ff0000': 1}")
    if len(palette) > MAX_COLOURS:
        raise OptionError(f"mask_palette has {len(palette):,} colours; at most {MAX_COLOURS:,}")
    out: dict[int, int] = {}
    for key, index in palette.items():
        code = _colour(key)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
                or not 0 <= index <= 255:
            raise OptionError(f"mask_palette[{key!r}] = {index!r}: a class index is an integer "
                              "0..255")
        if code in out and out[code] != int(index):
            raise OptionError(f"mask_palette gives colour {name(code)} twice, as {out[code]} "
                              f"and {index}")
        out[code] = int(index)
    return tuple(sorted(out.items()))


def read(path: str | os.PathLike) -> Palette:
    """A palette from a JSON file holding an object of colours to class indices."""
    from ..store.regular import NotRegular, open_regular

    try:
        f, size = open_regular(path)
    except NotRegular as exc:
        raise OptionError(f"mask palette {os.fspath(path)!r}: {exc}") from None
    except OSError as exc:
        raise OptionError(f"mask palette {os.fspath(path)!r} cannot be read "
                          f"({exc.strerror or exc})") from None
    with f:
        if size > MAX_FILE:
            raise OptionError(f"mask palette {os.fspath(path)!r} is {size:,} bytes; a palette "
                              f"file is at most {MAX_FILE:,}")
        data = f.read(MAX_FILE + 1)
    try:
        doc = jsontext.loads(data)
    except jsontext.TooDeep:
        raise OptionError(f"mask palette {os.fspath(path)!r} is nested too deeply; a palette "
                          'is one JSON object of colours to class indices, e.g. '
                          '{"#000000": 0, "#ff0000": 1}') from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise OptionError(f"mask palette {os.fspath(path)!r} is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise OptionError(f"mask palette {os.fspath(path)!r} must hold a JSON object of "
                          'colours to class indices, e.g. {"#000000": 0, "#ff0000": 1}')
    return check(doc)


def apply(rgb: np.ndarray, palette: Palette) -> np.ndarray | str:
    """(h, w, 3) uint8 colours -> (h, w) uint8 class indices, or a sentence naming a colour
    that is not in the palette (and where it is)."""
    codes = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) \
        | rgb[..., 2].astype(np.uint32)
    keys = np.fromiter((c for c, _ in palette), np.uint32, len(palette))
    values = np.fromiter((k for _, k in palette), np.uint8, len(palette))
    at = np.searchsorted(keys, codes).clip(0, len(keys) - 1)
    bad = keys[at] != codes
    if bad.any():
        y, x = (int(v) for v in np.argwhere(bad)[0])
        n = len(np.unique(codes[bad]))
        more = f" ({n} colours in all are missing)" if n > 1 else ""
        return (f"mask colour {name(int(codes[y, x]))} at x={x}, y={y} is not in mask_palette"
                f"{more}")
    return values[at]
