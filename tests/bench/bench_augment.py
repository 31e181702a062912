"""Benchmark: dlsets' batch augmentation against albumentations called per image.

    python tests/bench/bench_augment.py            # full sizes (60,000 x 28x28, 50,000 x 32x32x3)
    python tests/bench/bench_augment.py --quick    # small sizes, a smoke test

Random synthetic uint8 data; both engines run on the same arrays in the same run. dlsets gets
the best of three passes over the whole set; albumentations one pass over a slice (it is slow
enough to be steady). Prints a table of images per second and the speed-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402

TARGETS = {("affine", 2): 20.0, ("affine", 3): 12.0, ("elastic", 2): 5.0, ("elastic", 3): 5.0}


def _dlsets(op: str, workers: int | None = None):
    from dlsets.augment import Augmenter

    if op == "affine":
        return Augmenter(rotate=15, shift=0.1, shear=10, seed=0, workers=workers)
    return Augmenter(elastic=(34, 4), seed=0, workers=workers)


def _albumentations(op: str):
    import albumentations as A

    if op == "affine":
        t = A.Affine(rotate=(-15, 15), translate_percent=(-0.1, 0.1), shear=(-10, 10), p=1.0)
    else:
        # uniform noise: the same displacement law as dlsets' Elastic (albumentations' default,
        # Gaussian noise divided by its maximum, moves pixels about half as far)
        t = A.ElasticTransform(alpha=34, sigma=4, noise_distribution="uniform", p=1.0)
    t.set_random_seed(0)
    return t


def _rate_dlsets(aug, x: np.ndarray, repeats: int) -> float:
    aug(x[:256])  # warm-up: imports, caches
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        aug(x)
        best = min(best, time.perf_counter() - t)
    return len(x) / best


def _rate_albumentations(t, x: np.ndarray) -> float:
    t(image=x[0])
    start = time.perf_counter()
    for img in x:
        t(image=img)
    return len(x) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--albu-n", type=int, default=None, help="images for albumentations")
    args = p.parse_args(argv)

    import albumentations
    import cv2

    sizes = {(28, 28): 60_000, (32, 32, 3): 50_000}
    albu_n = args.albu_n or (500 if args.quick else 10_000)
    repeats = 1 if args.quick else 3
    if args.quick:
        sizes = {k: 2_000 for k in sizes}
    rng = np.random.default_rng(0)
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}, opencv {cv2.__version__}, "
          f"albumentations {albumentations.__version__}, cv2 threads {cv2.getNumThreads()}")
    rows = []
    for shape, n in sizes.items():
        x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        for op in ("affine", "elastic"):
            ours = _rate_dlsets(_dlsets(op), x, repeats)
            # one thread (ours and OpenCV's): a per-core figure that other load disturbs less
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                single = _rate_dlsets(_dlsets(op, workers=1), x, repeats)
            finally:
                cv2.setNumThreads(threads)
            theirs = _rate_albumentations(_albumentations(op), x[:albu_n])
            target = TARGETS[(op, len(shape))]
            speedup = ours / theirs
            rows.append((f"{n:,} x {'x'.join(map(str, shape))}", op, f"{ours:,.0f}",
                         f"{single:,.0f}", f"{theirs:,.0f} ({min(albu_n, n):,})",
                         f"{speedup:.1f}x", f"{single / theirs:.1f}x", f">= {target:g}x",
                         "yes" if speedup >= target else "NO"))
    header = ("data", "transform", "dlsets img/s", "dlsets 1 thread", "albumentations img/s (n)",
              "speed-up", "1 thread", "target", "met")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    sys.exit(main())
