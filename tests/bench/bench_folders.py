"""Image-folder benchmark: dlsets.load_folder against torchvision's ImageFolder + DataLoader.

Writes two folders under a temporary directory (or --dir, reused when it exists):
2,000 photo-like 512x512 JPEGs in 5 classes, prepared at 64x64, and 20,000 32x32 PNGs in
10 classes, prepared at 32x32. torchvision's way is the one most users take to materialise a
folder: ``ImageFolder(root, transform=Compose([Resize((H, W)), PILToTensor()]))`` iterated once
through ``DataLoader(batch_size=64, num_workers=2)`` into one tensor. dlsets' cold time is a
whole first ``load_folder`` into an empty cache (listing, decoding on all cores, writing and
hashing the prepared arrays, mapping them); warm is the next call (best of 5). Both read the same
files, from the page cache (every file is read once before the first timing); each way runs
``--repeat`` times in turns and the best time counts.

Needs torch and torchvision (a separate venv: torchvision does not import beside the CPU wheel
dlsets' own venv has):

    PYTHONPATH=. /work/wt/benchvenv/bin/python tests/bench/bench_folders.py
    PYTHONPATH=. /work/wt/benchvenv/bin/python tests/bench/bench_folders.py --quick
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

TARGETS = {"jpeg": 3.0, "png": 1.5}


def photo(rng, h: int, w: int) -> np.ndarray:
    """Smooth colour fields with fine noise: about 50 KB as a quality-85 512x512 JPEG."""
    from PIL import Image, ImageFilter

    low = (rng.random((h // 16, w // 16, 3)) * 255).astype(np.uint8)
    im = Image.fromarray(low).resize((w, h), Image.Resampling.BICUBIC)
    im = im.filter(ImageFilter.GaussianBlur(3))
    a = np.asarray(im).astype(np.int16) + rng.integers(-6, 7, (h, w, 3))
    return np.clip(a, 0, 255).astype(np.uint8)


def make_jpegs(root: Path, n: int, classes: int = 5, side: int = 512) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"class{i % classes}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo(rng, side, side)).save(d / f"{i:05d}.jpg", quality=85)


def make_pngs(root: Path, n: int, classes: int = 10, side: int = 32) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:side, 0:side]
    for i in range(n):
        d = root / f"class{i % classes}"
        d.mkdir(parents=True, exist_ok=True)
        base = (yy * rng.integers(1, 9) + xx * rng.integers(1, 9))[..., None] * rng.random(3)
        img = np.clip(base + rng.integers(0, 40, (side, side, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"{i:05d}.png")


def read_all(root: Path) -> int:
    total = 0
    for p in root.rglob("*"):
        if p.is_file():
            total += len(p.read_bytes())
    return total


def torchvision_way(root: Path, size: int, workers: int) -> tuple[float, tuple]:
    import torch
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    start = time.perf_counter()
    ds = datasets.ImageFolder(str(root), transform=transforms.Compose(
        [transforms.Resize((size, size)), transforms.PILToTensor()]))
    xs, ys = [], []
    for x, y in DataLoader(ds, batch_size=64, num_workers=workers):
        xs.append(x)
        ys.append(y)
    x = torch.cat(xs)
    return time.perf_counter() - start, tuple(x.shape)


def dlsets_cold(root: Path, size: int, cache: Path) -> tuple[float, tuple]:
    import dlsets

    shutil.rmtree(cache, ignore_errors=True)
    start = time.perf_counter()
    ds = dlsets.load_folder(root, size=(size, size), test=0, cache_dir=cache, progress=False)
    return time.perf_counter() - start, (len(ds.train) + len(ds.test), *ds.train.images.shape[1:])


def dlsets_warm(root: Path, size: int, cache: Path) -> float:
    import dlsets

    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        dlsets.load_folder(root, size=(size, size), test=0, cache_dir=cache, progress=False)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="200 JPEGs and 2,000 PNGs")
    p.add_argument("--dir", type=Path, help="where to write (and reuse) the folders")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    args = p.parse_args(argv)
    import PIL
    import torch
    import torchvision

    import dlsets
    from dlsets.sources.folders import default_workers

    n_jpg, n_png = (200, 2_000) if args.quick else (2_000, 20_000)
    base = args.dir or Path(tempfile.mkdtemp(prefix="dlsets-bench-folders-"))
    jpg, png = base / f"jpeg-{n_jpg}", base / f"png-{n_png}"
    if not jpg.exists():
        make_jpegs(jpg, n_jpg)
    if not png.exists():
        make_pngs(png, n_png)
    print(f"machine: {os.cpu_count()} cores ({default_workers()} usable), Python "
          f"{platform.python_version()}, pillow {PIL.__version__}, numpy {np.__version__}, "
          f"torch {torch.__version__}, torchvision {torchvision.__version__}, dlsets "
          f"{dlsets.__version__}; load average {os.getloadavg()[0]:.2f}")
    rows = []
    for kind, root, size, n in (("jpeg", jpg, 64, n_jpg), ("png", png, 32, n_png)):
        mb = read_all(root) / 1e6
        cache = base / f"cache-{kind}"
        tv, cold = [], []
        for _ in range(args.repeat):
            t, tv_shape = torchvision_way(root, size, args.workers)
            tv.append(t)
            t, dl_shape = dlsets_cold(root, size, cache)
            cold.append(t)
        warm = dlsets_warm(root, size, cache)
        speedup = min(tv) / min(cold)
        rows.append((f"{n:,} {kind.upper()} ({mb:.0f} MB) -> {size}x{size}",
                     f"{min(tv):.2f}", f"{min(cold):.2f}", f"{warm * 1000:.1f}",
                     f"{speedup:.1f}x", f">= {TARGETS[kind]:g}x",
                     "yes" if speedup >= TARGETS[kind] else "NO",
                     f"{tv_shape} / {dl_shape}"))
    header = ("folder", "torchvision s", "dlsets cold s", "dlsets warm ms", "cold speed-up",
              "target", "met", "shapes (torchvision NCHW / dlsets NHWC)")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if args.dir is None:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    sys.exit(main())
