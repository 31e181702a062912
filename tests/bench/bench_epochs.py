"""Benchmark: shuffled epochs from RAM against the same epochs from disk (page cache warm).

    python tests/bench/bench_epochs.py            # 120,000 CIFAR-sized images (issue #17)
    python tests/bench/bench_epochs.py --quick    # 12,000: a smoke run
    python tests/bench/bench_epochs.py --n 20000 --shape 64,64,3
    python tests/bench/bench_epochs.py --smooth --only batches --only keras   # lzf decodes
    python tests/bench/bench_epochs.py --digits --n 240000 --shape 28,28      # MNIST-like

Sources, all holding the same uint8 images with labels grouped by class (rows sorted by
label: the hard case for mixing): arrays in RAM; an ``expand_to_hdf5``-layout file as
written now (contiguous) and as written before (chunked, ``CHUNK_BYTES`` per chunk: 21 rows
for 32x32x3) and compressed (lzf chunks); ``load_shards`` folders of 4 shards, now, before and
lzf-compressed.
Paths: ``dlsets.batches(batch_size=256)``; ``dlsets.torch.AugmentedDataset`` in
``DataLoader(batch_size=256, shuffle=True, num_workers=2, persistent_workers=True)``;
``torch-iterable`` (``--only torch-iterable``): ``AugmentedIterableDataset(batch_size=256)`` in
``DataLoader(batch_size=None, num_workers=2, persistent_workers=True)``, the form for compressed
files;
``dlsets.keras.AugmentedPyDataset(batch_size=256)`` indexed in one process (what Keras'
adapter does without workers). No augmenter, uint8 batches: reading is what is timed.
Each path runs one warm-up epoch; then all are timed round-robin ``--repeats`` times (the
load of a shared machine falls on all alike) and the median counts. The
"mixing" column is the mean per-batch label entropy of the epoch order, against a full
shuffle's. ``--before`` adds h5py's own reading (the read path before dlsets.data.fastread) over
``--before-batches`` batches, scaled to an epoch.

Random pixels do not compress: HDF5 stores nearly every lzf chunk of them unfiltered (lzf
skipped), so the lzf rows time HDF5's reading of chunks, not lzf. ``--smooth`` makes every
source's images 8x8 noise resized to the shape and quantised to 64 levels instead: lzf keeps
about 95% of their bytes, and every chunk is decoded. ``--digits`` makes them MNIST-like
strokes on black instead, which both codecs shrink about 8x. With hdf5plugin installed (the
``lz4`` extra) lz4-compressed files and folders get rows of their own.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import h5py  # noqa: E402
import numpy as np  # noqa: E402

import dlsets  # noqa: E402
from dlsets.data import chunkorder  # noqa: E402
from dlsets.data.splits import read_rows  # noqa: E402
from dlsets.feed.batching import epoch_order  # noqa: E402
from dlsets.formats import h5  # noqa: E402

BATCH = 256


def _old_chunks(count, row_shape, dtype, compression):
    """main's writer before contiguous layouts: whole rows, CHUNK_BYTES a chunk."""
    if not count:
        return None
    row = int(np.prod(row_shape)) * np.dtype(dtype).itemsize
    return (max(1, min(count, h5.CHUNK_BYTES // max(1, row))), *row_shape)


def _write_file(path: Path, x, y, *, old=False, compression=None) -> Path:
    saved = h5._chunks
    if old:
        h5._chunks = _old_chunks
    try:
        with h5.atomic_hdf5(path) as f:
            images, labels = h5.create_split(f, "train", len(x), x.shape[1:],
                                             compression=compression)
            for s in range(0, len(x), 8192):
                images[s:s + 8192], labels[s:s + 8192] = x[s:s + 8192], y[s:s + 8192]
            h5.write_attrs(f, [str(c) for c in range(10)])
    finally:
        h5._chunks = saved
    return path


def _write_shards(folder: Path, x, y, *, old=False, compression=None) -> Path:
    saved = h5._chunks
    if old:
        h5._chunks = _old_chunks
    try:
        dlsets.expand_to_shards(x, y, len(x), folder, shards=4, balance=False, progress=False,
                                compression=compression)
    finally:
        h5._chunks = saved
    return folder


def _epoch_batches(images, labels):
    b = dlsets.batches(images, labels, BATCH, seed=1)
    return lambda: [None for _ in b], b


def _epoch_torch(images, labels):
    from torch.utils.data import DataLoader

    from dlsets.feed.torch import AugmentedDataset

    ds = AugmentedDataset(images, labels, dtype="uint8", channels="last")
    loader = DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=2,
                        persistent_workers=True)
    return lambda: [None for _ in loader]


def _epoch_torch_iter(images, labels):
    from torch.utils.data import DataLoader

    from dlsets.feed.torch import AugmentedIterableDataset

    ds = AugmentedIterableDataset(images, labels, batch_size=BATCH, seed=1, dtype="uint8",
                                  channels="last")
    loader = DataLoader(ds, batch_size=None, num_workers=2, persistent_workers=True)
    return lambda: [None for _ in loader]


def _epoch_keras(images, labels):
    from dlsets.feed.keras import AugmentedPyDataset

    ds = AugmentedPyDataset(images, labels, batch_size=BATCH, seed=1)

    def run():
        for i in range(len(ds)):
            ds[i]
        ds.on_epoch_end()
    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=120_000)
    ap.add_argument("--shape", default="32,32,3")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", action="append",
                    choices=("batches", "torch", "torch-iterable", "keras"))
    ap.add_argument("--before", action="store_true")
    ap.add_argument("--before-batches", type=int, default=20)
    ap.add_argument("--smooth", action="store_true", help="images lzf compresses (see above)")
    ap.add_argument("--digits", action="store_true", help="MNIST-like strokes (see above)")
    args = ap.parse_args(argv)
    n = 12_000 if args.quick else args.n
    shape = tuple(int(s) for s in args.shape.split(","))
    paths = args.only or ["batches", "torch", "keras"]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    if args.smooth:
        import cv2

        small = rng.integers(0, 256, (n, 8, 8, *shape[2:]), dtype=np.uint8)
        for i in range(n):
            x[i] = cv2.resize(small[i], shape[1::-1], interpolation=cv2.INTER_LINEAR).reshape(
                shape) // 4 * 4
    if args.digits:
        import cv2

        x[:] = 0
        for i in range(n):
            pts = rng.integers(shape[0] // 5, shape[0] * 4 // 5, (4, 2)).astype(np.int32)
            cv2.polylines(x[i], [pts], False, (255,) * 4, 2)
    y = np.sort(np.arange(n) % 10).astype(np.uint8)  # grouped by class
    work = Path(tempfile.mkdtemp(prefix="bench-epochs-"))
    print(f"# {n:,} images {shape} uint8, batches of {BATCH}; {platform.processor() or ''}"
          f" {os.cpu_count()} cpus, Python {platform.python_version()}, NumPy {np.__version__},"
          f" h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version})\n")
    files = {
        "hdf5 file, contiguous (written now)": _write_file(work / "new.h5", x, y),
        "hdf5 file, chunked (written before)": _write_file(work / "old.h5", x, y, old=True),
        "hdf5 file, lzf-compressed chunks": _write_file(work / "lzf.h5", x, y,
                                                        compression="lzf"),
        "load_shards, 4 shards (written now)": _write_shards(work / "shards-new", x, y),
        "load_shards, 4 shards (written before)": _write_shards(work / "shards-old", x, y,
                                                                old=True),
        "load_shards, 4 shards, lzf-compressed": _write_shards(work / "shards-lzf", x, y,
                                                               compression="lzf"),
    }
    try:
        import hdf5plugin  # noqa: F401
    except ImportError:
        print("(hdf5plugin is not installed: no lz4 rows; pip install 'dlsets[lz4]')\n")
    else:
        files["hdf5 file, lz4-compressed chunks"] = _write_file(work / "lz4.h5", x, y,
                                                                compression="lz4")
        files["load_shards, 4 shards, lz4-compressed"] = _write_shards(
            work / "shards-lz4", x, y, compression="lz4")
    on_disk = {"RAM (NumPy arrays)": x.nbytes + y.nbytes}
    for name, path in files.items():
        on_disk[name] = (path.stat().st_size if path.is_file()
                         else sum(p.stat().st_size for p in path.iterdir()))
    full = chunkorder.batch_entropy(y, epoch_order(n, 0, seed=1), BATCH)
    opened = []
    sources = [("RAM (NumPy arrays)", x, y)]
    for name, path in files.items():
        if path.suffix == ".h5":
            f = h5py.File(path, "r")
            opened.append(f)
            sources.append((name, f["train/images"], f["train/labels"]))
        else:
            split = dlsets.load_shards(path)
            sources.append((name, split.images, split.labels))
    # every runner made and warmed first, then timed round-robin: a shared machine's load
    # falls on all of them alike
    runners, mixing = [], {}
    for name, images, labels in sources:
        for path in paths:
            if path == "batches":
                run, b = _epoch_batches(images, labels)
                mixing[name] = chunkorder.batch_entropy(y, b.indices(0), BATCH) / full
            else:
                run = {"torch": _epoch_torch, "torch-iterable": _epoch_torch_iter,
                       "keras": _epoch_keras}[path](images, labels)
            run()
            runners.append((name, path, run))
    times = {(name, path): [] for name, path, _ in runners}
    for _ in range(args.repeats):
        for name, path, run in runners:
            t = time.perf_counter()
            run()
            times[name, path].append(time.perf_counter() - t)
    ram, rows = {}, []
    for name, path, _ in runners:
        t = float(np.median(times[name, path]))
        ram.setdefault(path, t)
        rows.append((name, path, t, t / ram[path], mixing.get(name) if path == "batches"
                     else None, on_disk[name]))
    if args.before:
        with h5py.File(files["hdf5 file, chunked (written before)"], "r") as f:
            d = f["train/images"]
            order = epoch_order(n, 0, seed=1)
            k = min(args.before_batches, n // BATCH)
            t = time.perf_counter()
            for i in range(k):
                read_rows(d, order[i * BATCH:(i + 1) * BATCH])
            t = (time.perf_counter() - t) * (n / BATCH) / k
        rows.append(("hdf5 file, chunked, through h5py (before)", "batches", t,
                     t / ram["batches"], None, None))
    print("| source | MB (on disk) | path | epoch (s, median) | x RAM | mixing (entropy / full "
          "shuffle) |")
    print("|---|---:|---|---|---|---|")
    for name, path, t, ratio, mixing, size in rows:
        mix = "" if mixing is None else f"{mixing:.3f}"
        mb = "" if size is None else f"{size / 1e6:.0f}"
        print(f"| {name} | {mb} | {path} | {t:.3f} | {ratio:.2f}x | {mix} |")
    for f in opened:
        f.close()
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
