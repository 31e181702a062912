"""Benchmark: augmentation at the image sizes users bring, dlsets against albumentations and the
per-image OpenCV limit, each row measured side by side in one run.

    python tests/bench/bench_augment_sizes.py                      # every row (~3 min)
    python tests/bench/bench_augment_sizes.py --quick              # a smoke test
    python tests/bench/bench_augment_sizes.py --plot docs/augment_sizes.png
    python tests/bench/bench_augment_sizes.py --only elastic --before /tmp/old  # a checkout
    python tests/bench/bench_augment_sizes.py --batch 256 --before /tmp/old  # a training loop

``--before DIR`` times a second dlsets (``DIR/dlsets``, e.g. ``git worktree add /tmp/old
HEAD~1``) side by side as a fourth engine, imported under another name. ``--batch B`` calls
dlsets (and the limit's pool) on batches of B images in turn, as a training loop in one process
does, instead of once on the whole set.

Smooth synthetic images (random 8x8-pixel cells, cubic-resized). dlsets: ``Augmenter(rotate=15,
shift=0.1, shear=10)`` or ``Augmenter(elastic=(34, 4))`` on the whole set; albumentations 2:
``A.Affine`` / ``A.ElasticTransform(noise_distribution="uniform")`` one image at a time, as users
run it; the limit: ``cv2.warpAffine`` (bilinear; nearest for masks) one image per call with
dlsets' own matrices, on a thread pool of one thread per core. The three engines alternate
within each repeat; the table shows medians of img/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
from bench_augment import _albumentations  # noqa: E402  (the same pipelines as there)

# (op, side, channels, masks): the rows; targets as ratios (vs albumentations, vs limit)
ROWS = [
    ("affine", 28, 0, False), ("affine", 32, 3, False),
    ("affine", 64, 3, False), ("affine", 64, 0, False), ("affine", 64, 3, True),
    ("affine", 128, 3, False), ("affine", 128, 0, False), ("affine", 128, 3, True),
    ("affine", 224, 3, False), ("affine", 224, 0, False), ("affine", 224, 3, True),
    ("affine", 512, 3, False), ("affine", 512, 0, False),
    ("elastic", 28, 0, False), ("elastic", 32, 3, False),
    ("elastic", 128, 0, False), ("elastic", 128, 3, False), ("elastic", 256, 0, False),
    ("elastic", 256, 3, False), ("elastic", 512, 0, False), ("elastic", 512, 3, False),
]
PIXELS = 12_000_000  # per set: about a tenth of a second of dlsets' work at every size


def targets(op: str, side: int) -> tuple[float | None, float | None]:
    """(x albumentations, x limit) wanted; None: no target."""
    if op == "elastic":
        return (5.0 if side <= 32 else 3.0 if side <= 256 else 2.0), None
    if side == 28:
        return 20.0, None
    if side == 32:
        return 12.0, None
    return (2.0 if side <= 128 else None), 0.8


def _images(n: int, side: int, channels: int, rng) -> np.ndarray:
    import cv2

    cells = side // 8 + 1
    shape = (cells, cells, channels) if channels else (cells, cells)
    distinct = min(n, 32)
    base = [cv2.resize(rng.uniform(0, 255, shape).astype(np.float32), (side, side),
                       interpolation=cv2.INTER_CUBIC) for _ in range(distinct)]
    base = np.clip(np.stack(base), 0, 255).astype(np.uint8).reshape(distinct, side, side,
                                                                     *shape[2:])
    return base[np.arange(n) % distinct]


def _chunks(n: int, k: int) -> list[tuple[int, int]]:
    step = max(1, -(-n // k))
    return [(s, min(n, s + step)) for s in range(0, n, step)]


def _limit(pool, threads: int, x: np.ndarray, m: np.ndarray | None, inverse: np.ndarray):
    import cv2

    h, w = x.shape[1:3]
    out = np.empty_like(x)
    mout = None if m is None else np.empty_like(m)

    def run(se):
        for i in range(*se):
            cv2.warpAffine(x[i], inverse[i, :2], (w, h), dst=out[i],
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
            if m is not None:
                cv2.warpAffine(m[i], inverse[i, :2], (w, h), dst=mout[i],
                               flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)

    list(pool.map(run, _chunks(len(x), threads * 4)))


def _rate(fn, n: int) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def _before(path: str):
    """The Augmenter class of the dlsets in ``path``/dlsets, imported as ``dlsets_before``
    (its modules import each other relatively, so a renamed copy works)."""
    import importlib
    import shutil
    import tempfile

    root = tempfile.mkdtemp(prefix="bench-before-")
    shutil.copytree(os.path.join(path, "dlsets"), os.path.join(root, "dlsets_before"))
    sys.path.insert(0, root)
    return importlib.import_module("dlsets_before.augment").Augmenter


def _batched(fn, n: int, batch: int | None):
    """``fn(s, e)`` over the whole set at once, or batch by batch."""
    step = batch or n
    return lambda: [fn(s, min(n, s + step)) for s in range(0, n, step)]


def measure(op: str, side: int, channels: int, masks: bool, repeats: int, scale: float,
            pool, threads: int, rng, before=None, batch: int | None = None) -> dict:
    from dlsets.augment import Augmenter

    n = max(16, int(PIXELS * scale) // (side * side))
    x = _images(n, side, channels, rng)
    m = (x[..., 0] if channels else x) // 64 if masks else None
    aug = (Augmenter(rotate=15, shift=0.1, shear=10, seed=0) if op == "affine"
           else Augmenter(elastic=(34, 4), seed=0))
    kw = {"channels": "last"}
    inverse = aug._geometry(0, n, side, side)[0]
    t = _albumentations(op)
    na = max(16, n // 8)
    ours = _batched(lambda s, e: aug(x[s:e], masks=m[s:e], start=s, **kw) if masks
                    else aug(x[s:e], start=s, **kw), n, batch)
    theirs = (lambda: [t(image=x[i], mask=m[i]) for i in range(na)]) if masks else (  # noqa: E731
        lambda: [t(image=x[i]) for i in range(na)])
    limit = _batched(lambda s, e: _limit(pool, threads, x[s:e], None if m is None else m[s:e],
                                         inverse[s:e]), n, batch)
    old = None
    if before is not None:
        b = (before(rotate=15, shift=0.1, shear=10, seed=0) if op == "affine"
             else before(elastic=(34, 4), seed=0))
        old = _batched(lambda s, e: b(x[s:e], masks=m[s:e], start=s, **kw) if masks
                       else b(x[s:e], start=s, **kw), n, batch)
        old()
    ours(), theirs(), limit()  # warm-up: imports, caches, scratch
    got: dict[str, list[float]] = {"dlsets": [], "albumentations": [], "limit": [],
                                   "before": []}
    for _ in range(repeats):
        got["dlsets"].append(_rate(ours, n))
        if old is not None:
            got["before"].append(_rate(old, n))
        got["albumentations"].append(_rate(theirs, na))
        if op == "affine":
            got["limit"].append(_rate(limit, n))
    return {k: statistics.median(v) if v else None for k, v in got.items()} | {"n": n}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sets, one repeat (smoke test)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--only", default=None, help="'affine' or 'elastic'")
    p.add_argument("--plot", default=None, help="write a PNG of img/s against image size")
    p.add_argument("--before", default=None, help="a dlsets checkout to time side by side")
    p.add_argument("--batch", type=int, default=None, help="call dlsets on batches of this size")
    args = p.parse_args(argv)

    import albumentations
    import cv2

    from dlsets.augment import kernels

    threads = os.cpu_count() or 1
    pool = ThreadPoolExecutor(threads)
    repeats, scale = (1, 0.1) if args.quick else (args.repeats, 1.0)
    rng = np.random.default_rng(0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {threads} cores, {platform.machine()}, Python {platform.python_version()}, "
          f"numpy {np.__version__}, opencv {cv2.__version__} ({cv2.getNumThreads()} threads), "
          f"albumentations {albumentations.__version__}; dlsets augmentation algorithm "
          f"{kernels.ALGORITHM}; load average before: {load:.2f}; medians of {repeats}"
          + (f"; dlsets and the limit on batches of {args.batch}" if args.batch else ""))
    before = None if args.before is None else _before(args.before)
    header = ("work", "n", "dlsets img/s", "albumentations", "limit", "x albu", "x limit",
              "target", "met") + (("before", "x before") if before else ())
    rows, results = [], []
    for op, side, channels, masks in ROWS:
        if args.only and op != args.only:
            continue
        r = measure(op, side, channels, masks, repeats, scale, pool, threads, rng, before,
                    args.batch)
        want_albu, want_limit = targets(op, side)
        vs_albu = r["dlsets"] / r["albumentations"]
        vs_limit = None if r["limit"] is None else r["dlsets"] / r["limit"]
        want = " and ".join(s for s in (want_albu and f">= {want_albu:g}x albu",
                                         want_limit and f">= {want_limit:g}x limit") if s)
        met = ((want_albu is None or vs_albu >= want_albu)
               and (want_limit is None or vs_limit >= want_limit))
        name = (f"{op} {side}x{side}" + (f"x{channels}" if channels else "")
                + (" +masks" if masks else ""))
        results.append((op, side, channels, masks, r))
        rows.append((name, f"{r['n']:,}", f"{r['dlsets']:,.0f}", f"{r['albumentations']:,.0f}",
                     "-" if r["limit"] is None else f"{r['limit']:,.0f}", f"{vs_albu:.1f}x",
                     "-" if vs_limit is None else f"{vs_limit:.2f}x", want,
                     "yes" if met else "NO")
                    + ((f"{r['before']:,.0f}", f"{r['dlsets'] / r['before']:.2f}x")
                       if before else ()))
        print("  ".join(rows[-1]), flush=True)
    print()
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average after: {load:.2f}")
    if args.plot:
        from plot_sizes import plot

        plot(results, args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    sys.path.insert(0, os.path.dirname(__file__))
    sys.exit(main())
