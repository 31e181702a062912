"""Draw bench_augment_sizes.py's results as a PNG with Pillow (matplotlib is not a dependency):
img/s against image side, log-log, one panel per transform, colour images without masks."""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

SERIES = (("dlsets", (31, 119, 180)), ("albumentations", (214, 39, 40)),
          ("limit", (120, 120, 120)))
W, H, LEFT, TOP, PW, PH = 1000, 430, 70, 40, 380, 320


def _panel(draw, x0, title, points, sides, lo, hi):
    fx = lambda s: x0 + PW * (math.log(s) - math.log(sides[0])) / (  # noqa: E731
        math.log(sides[-1]) - math.log(sides[0]))
    fy = lambda v: TOP + PH * (1 - (math.log10(v) - lo) / (hi - lo))  # noqa: E731
    draw.rectangle([x0, TOP, x0 + PW, TOP + PH], outline=(0, 0, 0))
    draw.text((x0 + 4, TOP - 16), title, fill=(0, 0, 0))
    for e in range(math.ceil(lo), math.floor(hi) + 1):
        y = fy(10 ** e)
        draw.line([x0, y, x0 + PW, y], fill=(225, 225, 225))
        draw.text((x0 - 45, y - 6), f"{10 ** e:,}", fill=(0, 0, 0))
    for s in sides:
        draw.line([fx(s), TOP + PH, fx(s), TOP + PH + 4], fill=(0, 0, 0))
        draw.text((fx(s) - 8, TOP + PH + 6), str(s), fill=(0, 0, 0))
    draw.text((x0 + PW // 2 - 50, TOP + PH + 22), "image side (pixels)", fill=(0, 0, 0))
    for name, colour in SERIES:
        pts = [(fx(s), fy(r[name])) for s, r in points if r.get(name)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=3)
        for px, py in pts:
            draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=colour)


def plot(results, path: str) -> None:
    """``results``: (op, side, channels, masks, {"dlsets": img/s, ...}) rows."""
    img = Image.new("RGB", (W, H + 40), "white")
    draw = ImageDraw.Draw(img)
    values = [r[k] for *_, r in results for k, _ in SERIES if r.get(k)]
    lo, hi = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    for i, op in enumerate(("affine", "elastic")):
        points = sorted((side, r) for o, side, c, masks, r in results
                        if o == op and not masks and c == 3)
        if points:
            _panel(draw, LEFT + i * (PW + 110), f"{op}, colour (img/s, log)", points,
                   [s for s, _ in points], lo, hi)
    for j, (name, colour) in enumerate(SERIES):
        x = LEFT + j * 200
        draw.rectangle([x, H + 12, x + 14, H + 26], fill=colour)
        label = "limit: cv2.warpAffine per image, all cores" if name == "limit" else name
        draw.text((x + 20, H + 13), label, fill=(0, 0, 0))
    img.save(path)
