"""How dlsets objects show themselves in a notebook: HTML tables and inline PNG thumbnails.

Jupyter calls ``_repr_html_``; the classes delegate here so that their modules stay free of
HTML. Everything is bounded: a few images are read, never a whole split.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

PER_CLASS = 4  # thumbnails per class
MAX_CLASSES = 10  # classes with thumbnails; the counts table lists every class
THUMB = 48  # pixels of a thumbnail's longer side at most (smaller images are enlarged to it)
SCAN_LABELS = 20_000  # labels read to find examples of each class
MAX_ROWS = 50  # rows of a class-count table


def esc(value: object) -> str:
    """Any value as HTML text (names from folders may hold anything)."""
    return html.escape(str(value))


def table(rows: Sequence[tuple[str, str]], head: Sequence[str] | None = None) -> str:
    """An HTML table of already-escaped cells."""
    top = "".join(f"<th style='text-align:left'>{h}</th>" for h in head) if head else ""
    body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{c}</td>" for c in r)
                   + "</tr>" for r in rows)
    return f"<table>{f'<tr>{top}</tr>' if top else ''}{body}</table>"


def to_uint8(img: Any) -> np.ndarray:
    """One image of any layout dlsets hands out -> uint8 (H, W) or (H, W, 3)."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)  # channels first
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        if a.size and np.nanmax(a) <= 1.0 and np.nanmin(a) >= 0.0:
            a = a * 255.0
        a = np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)
    return a


def png_uri(img: np.ndarray, size: int = THUMB) -> str:
    """A ``data:`` URI of ``img`` as PNG, its longer side scaled to ``size`` pixels."""
    from PIL import Image

    im = Image.fromarray(to_uint8(img))
    scale = size / max(im.size)
    if scale != 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                       Image.NEAREST if scale > 1 else Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def mask_rgb(mask: Any) -> np.ndarray:
    """A class map (H, W) as colours, one per class (class 0 black)."""
    m = np.asarray(mask).astype(np.int64)
    rng = np.random.default_rng(0)
    palette = rng.integers(64, 256, size=(256, 3), dtype=np.uint8)
    palette[0] = 0
    return palette[m % 256]


def _img(uri: str, title: str = "") -> str:
    t = f" title='{esc(title)}'" if title else ""
    return f"<img src='{uri}'{t} style='margin:1px;image-rendering:pixelated'/>"


def examples(labels: Any, n_classes: int, per_class: int = PER_CLASS,
             max_classes: int = MAX_CLASSES) -> dict[int, list[int]]:
    """The first ``per_class`` rows of each of the first ``max_classes`` classes, from the
    first SCAN_LABELS labels."""
    found: dict[int, list[int]] = {}
    if labels is None:
        return found
    y = np.asarray(labels[:SCAN_LABELS]).reshape(-1)
    for c in range(min(n_classes, max_classes)):
        rows = np.flatnonzero(y == c)[:per_class]
        if len(rows):
            found[c] = [int(r) for r in rows]
    return found


def split_html(split: Any, classes: Sequence[str], name: str = "",
               counts: dict | None = None) -> str:
    """A split: shapes and dtypes, a thumbnail row per class (or image/mask pairs), counts."""
    x, y, m = split.images, split.labels, getattr(split, "masks", None)
    facts = [("images", f"{esc(getattr(x, 'dtype', '?'))} {esc(tuple(x.shape))}")]
    if y is not None:
        facts.append(("labels", f"{esc(getattr(y, 'dtype', '?'))} {esc(tuple(y.shape))}"))
    if m is not None:
        facts.append(("masks", f"{esc(getattr(m, 'dtype', '?'))} {esc(tuple(m.shape))}"))
    parts = [f"<b>{esc(name)}</b>" if name else "", table(facts)]
    if len(x) == 0:
        return "".join(parts)
    if m is not None:  # segmentation: image/mask pairs
        pairs = [_img(png_uri(x[i]), f"row {i}") + _img(png_uri(mask_rgb(m[i])), f"mask {i}")
                 for i in range(min(len(x), PER_CLASS))]
        parts.append("<div>" + "&nbsp;&nbsp;".join(pairs) + "</div>")
    elif y is None or not classes:
        parts.append("<div>" + "".join(_img(png_uri(x[i]), f"row {i}")
                                       for i in range(min(len(x), 2 * PER_CLASS))) + "</div>")
    else:
        rows = [(esc(classes[c]), "".join(_img(png_uri(x[i]), f"row {i}") for i in idx))
                for c, idx in examples(y, len(classes)).items()]
        parts.append(table(rows))
    if counts:
        items = list(counts.items())
        rows = [(esc(k), f"{int(v):,}") for k, v in items[:MAX_ROWS]]
        if len(items) > MAX_ROWS:
            rows.append((f"... {len(items) - MAX_ROWS} more", ""))
        parts.append("<details><summary>class counts</summary>"
                     + table(rows, ("class", "images")) + "</details>")
    return "".join(parts)


def dataset_html(ds: Any) -> str:
    """A Dataset: its name, classes, where it lives, and each split."""
    info = ds.info or {}
    where = info.get("prepared_dir") or info.get("hdf5") or info.get("path")
    facts = [("classes", f"{len(ds.classes)}: " + esc(", ".join(map(str, ds.classes[:20])))
              + (" ..." if len(ds.classes) > 20 else ""))]
    if where:
        facts.append(("cache folder" if info.get("prepared_dir") else "file", esc(where)))
    if info.get("skipped_count"):
        facts.append(("skipped files", f"{info['skipped_count']:,}"))
    splits = info.get("splits", {})
    body = "".join(
        f"<div style='display:inline-block;vertical-align:top;margin-right:2em'>"
        f"{split_html(ds[s], ds.classes, s, (splits.get(s) or {}).get('class_counts'))}</div>"
        for s in ds.split_names)
    return f"<div><b>Dataset {esc(ds.name)}</b>{table(facts)}{body}</div>"


def augmenter_html(aug: Any) -> str:
    """An Augmenter's transforms and their parameters as a table."""
    rows = []
    for t in aug.transforms:
        fields = getattr(t, "_fields", lambda: {})()
        params = ", ".join(f"{k}={v!r}" for k, v in fields.items() if v is not None)
        rows.append((esc(type(t).__name__), esc(params)))
    rows = rows or [("(none)", "images pass unchanged")]
    settings = [("border", esc(aug.border)), ("fill", esc(aug.fill)), ("seed", esc(aug.seed))]
    return (f"<div><b>Augmenter</b>{table(rows, ('transform', 'parameters'))}"
            f"{table(settings)}</div>")


def _size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def spec_rows(spec: Any) -> list[tuple[str, str]]:
    """What a user wants to know about a registry entry, as (field, text) rows (not escaped)."""
    rows = [("name", spec.name)]
    if spec.title:
        rows.append(("title", spec.title))
    if spec.description:
        rows.append(("description", spec.description))
    shown = ", ".join(spec.classes[:12]) + (" ..." if len(spec.classes) > 12 else "")
    rows.append(("classes", f"{len(spec.classes)}: {shown}"))
    rows.append(("image shape", " x ".join(map(str, spec.image_shape))))
    if spec.variants:
        rows.append(("variants", ", ".join(spec.variants)
                     + (f" (default {spec.default_variant})" if spec.default_variant else "")))
    if spec.extra_splits:
        rows.append(("extra splits", ", ".join(spec.extra_splits)))
    for f in spec.default_files() + sorted(spec.optional_files()):
        fs = spec.files.get(f)
        if fs is not None:
            rows.append(("file", f"{fs.name} ({_size(fs.size)})"))
    for key, label in (("license", "licence"), ("homepage", "homepage"),
                       ("citation", "citation")):
        value = getattr(spec, key)
        if value:
            rows.append((label, value))
    if not spec.builtin:
        rows.append(("source", spec.source))
    return rows


def spec_text(spec: Any) -> str:
    """A registry entry as readable lines."""
    rows = spec_rows(spec)
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def spec_html(spec: Any) -> str:
    """A registry entry as an HTML table."""
    return table([(esc(k), esc(v)) for k, v in spec_rows(spec)])
