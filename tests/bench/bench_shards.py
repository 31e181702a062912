"""Benchmark: sharded expansion on Ray against single-process expand_to_hdf5; shard costs.

    python tests/bench/bench_shards.py            # MNIST-shaped 1,000 -> 400,000 (~3 min)
    python tests/bench/bench_shards.py --quick    # 1,000 -> 40,000, a smoke test

Random uint8 data (the augmenter's speed does not depend on the pixels), Augmenter(rotate=15,
shift=0.1, shear=10). Every timed run writes to a fresh folder on local disk; best of
``--repeat`` runs, alternating the contenders so that load from other processes hits both.

1. Throughput, 2 cores: ``expand_to_hdf5`` in one process (the augmenter's default 2 threads)
   against ``expand_on_ray`` on a local 2-CPU Ray cluster (one task per shard, 1 CPU and
   1 thread each), then on a 1-CPU cluster against ``expand_to_hdf5`` on 1 thread. Clusters
   are started and warmed up (workers running, dlsets imported) before timing.
2. One shard on one thread (50,000 28x28 or 25,000 32x32x3 copies): augmentation alone, then
   the whole ``expand_shard`` (augment, write, hash) for each format.
3. Bytes per sample of each format, 28x28 and 32x32x3 uint8, against raw pixels + 1 label byte.
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

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")

import numpy as np  # noqa: E402


def _data(n: int, shape: tuple[int, ...], seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, *shape), dtype=np.uint8),
            (np.arange(n) % 10).astype(np.uint8))


def _table(header, rows) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print()


def _timed(fn, root: Path) -> float:
    out = Path(tempfile.mkdtemp(dir=root))
    try:
        t = time.perf_counter()
        fn(out)
        return time.perf_counter() - t
    finally:
        shutil.rmtree(out)


def throughput(x, y, target: int, shards: int, repeat: int, root: Path) -> list[tuple]:
    import cv2
    import ray

    from dlsets.augment import Augmenter, expand_to_hdf5
    from dlsets.scale.ray import expand_on_ray

    def local(threads):
        aug = Augmenter(rotate=15, shift=0.1, shear=10, seed=0, workers=threads)
        return lambda out: expand_to_hdf5(x, y, target, out / "one.h5", augmenter=aug,
                                          progress=False)

    def on_ray(out):
        aug = Augmenter(rotate=15, shift=0.1, shear=10, seed=0)
        expand_on_ray(x, y, target, out, shards=shards, augmenter=aug, progress=False)

    results = {}
    cv2_threads = cv2.getNumThreads()
    for cpus in (2, 1):
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        try:
            # warm-up: start the workers, import dlsets in them, fill the caches
            warm = max(shards * cpus, 2 * cpus)
            _timed(lambda out, warm=warm: expand_on_ray(x, y, len(x) + warm * 200, out, shards=warm,
                                                        augmenter=Augmenter(rotate=1),
                                                        progress=False), root)
            cv2.setNumThreads(cv2_threads if cpus == 2 else 1)
            base = local(None if cpus == 2 else 1)
            _timed(lambda out: expand_to_hdf5(x, y, len(x) + 20_000, out / "w.h5",
                                              augmenter=Augmenter(rotate=1), progress=False),
                   root)
            times = {"local": [], "ray": []}
            for _ in range(repeat):
                times["local"].append(_timed(base, root))
                times["ray"].append(_timed(on_ray, root))
            results[cpus] = {k: target / min(v) for k, v in times.items()}
        finally:
            cv2.setNumThreads(cv2_threads)
            ray.shutdown()
    two, one = results[2], results[1]
    return [
        ("2 cores", "expand_to_hdf5, 1 process, 2 threads", f"{two['local']:,.0f}", "1.00x"),
        ("2 cores", f"expand_on_ray, 2 workers x 1 thread, {shards} shards",
         f"{two['ray']:,.0f}", f"{two['ray'] / two['local']:.2f}x"),
        ("1 core", "expand_to_hdf5, 1 process, 1 thread", f"{one['local']:,.0f}", "-"),
        ("1 core", f"expand_on_ray, 1 worker x 1 thread, {shards} shards",
         f"{one['ray']:,.0f}", f"{one['ray'] / one['local']:.2f}x of 1 thread"),
        ("", "Ray scaling 1 -> 2 workers", "", f"{two['ray'] / one['ray']:.2f}x"),
    ]


def per_shard(x, y, n: int, repeat: int, root: Path) -> list[tuple]:
    import cv2

    from dlsets.augment import Augmenter
    from dlsets.augment.expand import copy_sources
    from dlsets.scale.shards import expand_shard

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    aug = Augmenter(rotate=15, shift=0.1, shear=10, seed=0, workers=1)
    try:
        src = copy_sources(y, len(x) + n)[:]
        aug(x[:256], start=0)
        runs = {
            "augment": lambda out: aug(x[src], start=len(x)),
            # one shard of n copies: shard 1 of 2 of len(x) + 2n holds copies only
            **{fmt: (lambda out, fmt=fmt: expand_shard(x, y, len(x) + 2 * n, out, shard=1,
                                                       shards=2, augmenter=aug, format=fmt,
                                                       progress=False, index=False))
               for fmt in ("hdf5", "webdataset")},
        }
        best = {k: float("inf") for k in runs}
        for _ in range(repeat):  # interleaved, so that other load hits every row alike
            for k, fn in runs.items():
                best[k] = min(best[k], _timed(fn, root))
        aug_t = best.pop("augment")
        shape = "x".join(map(str, x.shape[1:]))
        rows = [(shape, f"augment {n:,} copies (no output)", f"{aug_t:.2f}", f"{n / aug_t:,.0f}",
                 "-")]
        for fmt, t in best.items():
            rows.append((shape, f"expand_shard {fmt}, {n:,} samples", f"{t:.2f}",
                         f"{n / t:,.0f}", f"{(t - aug_t) / t:.0%}"))
        return rows
    finally:
        cv2.setNumThreads(threads)


def sizes(n: int, root: Path) -> list[tuple]:
    from dlsets.augment import Augmenter
    from dlsets.scale.shards import expand_to_shards

    rows = []
    for shape in ((28, 28), (32, 32, 3)):
        x, y = _data(1000, shape)
        raw = int(np.prod(shape)) + 1
        for fmt, comp in (("hdf5", None), ("hdf5", "gzip"), ("webdataset", None)):
            out = Path(tempfile.mkdtemp(dir=root))
            try:
                expand_to_shards(x, y, n, out, shards=1, augmenter=Augmenter(rotate=15),
                                 format=fmt, compression=comp, progress=False)
                size = sum(p.stat().st_size for p in out.iterdir() if p.suffix in (".h5",
                                                                                 ".tar"))
            finally:
                shutil.rmtree(out)
            rows.append(("x".join(map(str, shape)), fmt + (f" ({comp})" if comp else ""),
                         f"{size / n:,.0f}", f"{raw:,}", f"{size / n / raw:.2f}x"))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--target", type=int, default=None)
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    args = p.parse_args(argv)
    import cv2
    import h5py
    import ray

    target = args.target or (40_000 if args.quick else 400_000)
    repeat = 1 if args.quick else args.repeat
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, numpy "
          f"{np.__version__}, opencv {cv2.__version__}, h5py {h5py.__version__}, ray "
          f"{ray.__version__}; load average before: {os.getloadavg()[0]:.2f}\n")
    root = Path(tempfile.mkdtemp(prefix="bench-shards-", dir=args.dir))
    try:
        x, y = _data(1000, (28, 28))
        print(f"## Throughput: 1,000 x 28x28 -> {target:,} (img/s, best of {repeat})")
        _table(("cores", "run", "img/s", "vs expand_to_hdf5"),
               throughput(x, y, target, args.shards, repeat, root))
        n = 5_000 if args.quick else 50_000
        runs = repeat if args.quick else max(repeat, 5)
        print(f"## One shard on 1 thread (seconds, best of {runs})")
        xc, yc = _data(1000, (32, 32, 3))
        _table(("image", "work", "seconds", "img/s", "time beyond augmenting"),
               per_shard(x, y, n, runs, root) + per_shard(xc, yc, n // 2, runs, root))
        print("## Bytes per sample (one shard of 20,000)")
        _table(("image", "format", "bytes/sample", "raw bytes/sample", "overhead"),
               sizes(2_000 if args.quick else 20_000, root))
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    sys.exit(main())
