"""Benchmark: augmented images per second delivered to a training loop (no model).

    python tests/bench/bench_feed.py              # torch rows, then keras on both backends
    python tests/bench/bench_feed.py --quick      # small sizes, a smoke test
    python tests/bench/bench_feed.py --only torch # or keras

Needs torch, torchvision, keras and tensorflow (a venv apart: torchvision's CUDA build does not
import beside the CPU wheel the tests use; docs/benchmarks.md says how torchvision 0.28 was put
beside it instead). Synthetic uint8 arrays of the real shapes (MNIST 60,000 x
28x28, CIFAR-10 50,000 x 32x32x3), random affine rotate 15 + shift 0.1, 2 workers for every
loader, batches of 256, the same run. Rows:

- bare augmenter: ``Augmenter(...)(x[idx], ids=...)`` on the loader's batches in the main
  process (2 threads), and on the whole array in one call;
- dlsets: ``dlsets.torch.AugmentedDataset`` in ``DataLoader(batch_size=256, shuffle=True,
  num_workers=2, persistent_workers=True)``, uint8 and float32 batches;
- torchvision: ``transforms.v2.RandomAffine(degrees=15, translate=(0.1, 0.1))`` per sample on
  uint8 (C, H, W) tensors in a map-style dataset, in the same DataLoader set-up;
- keras (in a process per backend): ``dlsets.keras.AugmentedPyDataset`` (float32 batches)
  through Keras' own PyDataset adapter (what ``fit`` iterates), in one process (Keras'
  default; the augmenter's own 2 threads), with ``workers=2`` threads and with 2 worker
  processes, against ``RandomRotation(15 / 360) + RandomTranslation(0.1, 0.1)`` called on each
  batch of a plain PyDataset with 2 worker processes, as a model's first layers run.

Torch rows: the workers of every loader are started first (a few batches each); then
``--runs`` rounds (default 3) each time one pass of the bare augmenter on the same batches the
loader makes (shuffled batches of 256 with the id rule's ids, main process, its 2 threads), the
bare augmenter on the whole array in one call (for reference), the two dlsets loaders and the
torchvision loader, back to back; each round's ratios compare rates taken at the same moment,
and the medians of the rounds' ratios are the results. Keras rows: one warm-up pass, then the
best of ``--repeats`` timed passes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SHAPES = {"mnist": (60_000, (28, 28)), "cifar10": (50_000, (32, 32, 3))}
TARGETS = {"mnist": 15.0, "cifar10": 8.0}
BATCH = 256
WORKERS = 2


def _data(name: str, n: int | None = None) -> np.ndarray:
    total, shape = SHAPES[name]
    return np.random.default_rng(0).integers(0, 256, (n or total, *shape), dtype=np.uint8)


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _cpu_seconds(pids) -> float:
    """CPU time (user + system) the processes ``pids`` have used; NaN without /proc."""
    try:
        total = 0
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def _pass_rate(loader, n: int) -> tuple[float, float]:
    """(images per second, CPU seconds per 1,000 images of the main process and the
    loader's workers) of one pass. The CPU cost hardly moves with the machine's load."""
    pids = [os.getpid(), *(w.pid for w in loader._iterator._workers)]
    cpu, t = _cpu_seconds(pids), time.perf_counter()
    count = 0
    for batch in loader:
        count += len(batch[0])
    assert count == n, (count, n)
    return n / (time.perf_counter() - t), (_cpu_seconds(pids) - cpu) * 1e6 / n


def _warm(loader) -> None:
    """Start the (persistent) workers and their imports: a few batches of a pass."""
    it = iter(loader)
    for _ in range(3):
        next(it)
    del it


def torch_rows(quick: bool, runs: int) -> list[dict]:
    """Per data set: ``runs`` rounds, each timing the bare augmenter, the dlsets loaders and
    torchvision's loader back to back (one pass each), so each round's ratios compare rates
    taken at the same moment of a busy machine; the medians of the rounds' ratios count."""
    import torch
    import torchvision
    from torch.utils.data import DataLoader, Dataset
    from torchvision.transforms import v2

    import dlsets
    from dlsets.feed.torch import AugmentedDataset

    class PerSample(Dataset):
        """What torchvision users write: one transform call per image."""

        def __init__(self, x, y, transform):
            self.x = torch.from_numpy(x if x.ndim == 4 else x[..., None]).permute(0, 3, 1, 2)
            self.y = torch.from_numpy(y)
            self.transform = transform

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.transform(self.x[i]), self.y[i]

    def loader(ds):
        return DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=WORKERS,
                          persistent_workers=True, generator=torch.Generator().manual_seed(0))

    rows = []
    for name in ("mnist", "cifar10"):
        x = _data(name, 6_000 if quick else None)
        n = len(x)
        y = (np.arange(n) % 10).astype(np.int64)
        aug = dlsets.Augmenter(rotate=15, shift=0.1, seed=0)
        k = min(n, 2_000 if quick else 20_000)
        loaders = {dtype: loader(AugmentedDataset(x, y, aug, dtype=dtype))
                   for dtype in ("uint8", "float32")}
        loaders["torchvision"] = loader(
            PerSample(x[:k], y[:k], v2.RandomAffine(degrees=15, translate=(0.1, 0.1))))
        for ld in loaders.values():
            _warm(ld)
        order = np.random.default_rng(1).permutation(n)

        def bare_pass(epoch, aug=aug, x=x, order=order):
            # the loader's work in one process: shuffled batches of 256, the id rule's ids
            for s in range(0, len(x), BATCH):
                idx = order[s:s + BATCH]
                aug(x[idx], ids=dlsets.sample_ids(epoch, idx, len(x)))

        bare_pass(0)
        rounds = []
        for r in range(runs):
            cpu, t = _cpu_seconds([os.getpid()]), time.perf_counter()
            bare_pass(r + 1)
            got = {"bare": (n / (time.perf_counter() - t),
                            (_cpu_seconds([os.getpid()]) - cpu) * 1e6 / n),
                   "whole": n / _best(lambda a=aug, d=x: a(d, start=0), 1)}
            for dtype in ("uint8", "float32"):
                got[dtype] = _pass_rate(loaders[dtype], n)
            got["torchvision"] = _pass_rate(loaders["torchvision"], k)
            rounds.append(got)
        del loaders
        rows.append({"data": name, "n": n, "torchvision_n": k, "rounds": rounds,
                     "versions": f"torch {torch.__version__}, torchvision "
                                 f"{torchvision.__version__}"})
    return rows


def keras_row(quick: bool, repeats: int) -> dict:
    """Runs in a process whose KERAS_BACKEND is set."""
    import keras
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    import dlsets
    from dlsets.feed.keras import AugmentedPyDataset

    x = _data("mnist", 6_000 if quick else None)
    y = (np.arange(len(x)) % 10).astype(np.int64)
    aug = dlsets.Augmenter(rotate=15, shift=0.1, seed=0)

    def rate(ds, n, times):
        adapter = PyDatasetAdapter(ds, shuffle=False)

        def one_pass():
            adapter.on_epoch_begin()
            count = 0
            for batch in adapter.get_numpy_iterator():
                count += len(batch[0])
            adapter.on_epoch_end()
            assert count == n, (count, n)

        one_pass()
        return n / _best(one_pass, times)

    ours = {name: rate(AugmentedPyDataset(x, y, aug, batch_size=BATCH, **kw), len(x), repeats)
            for name, kw in (("1", {}), ("threads", {"workers": WORKERS}),
                             ("processes", {"workers": WORKERS, "use_multiprocessing": True}))}
    layers = keras.Sequential([keras.layers.RandomRotation(15 / 360),
                               keras.layers.RandomTranslation(0.1, 0.1)])

    class Plain(keras.utils.PyDataset):
        def __init__(self, x, y, **kw):
            super().__init__(**kw)
            self.x, self.y = x, y

        def __len__(self):
            return -(-len(self.x) // BATCH)

        def __getitem__(self, i):
            s = slice(i * BATCH, (i + 1) * BATCH)
            return self.x[s, ..., None].astype("float32") / 255.0, self.y[s]

    k = min(len(x), 3_000 if quick else 20_000)
    plain = Plain(x[:k], y[:k], workers=WORKERS, use_multiprocessing=True)

    # the layers run where a model's first layers would: on each batch, in the loop
    adapter = PyDatasetAdapter(plain, shuffle=False)

    def layer_pass():
        adapter.on_epoch_begin()
        count = 0
        for bx, _ in adapter.get_numpy_iterator():
            out = layers(bx, training=True)
            count += len(keras.ops.convert_to_numpy(out))
        adapter.on_epoch_end()
        assert count == k

    layer_pass()
    theirs = k / _best(layer_pass, repeats)
    return {"backend": keras.backend.backend(), "n": len(x), "dlsets": ours, "layers": theirs,
            "layers_n": k, "keras": keras.__version__}



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--repeats", type=int, default=2, help="timed passes (keras rows)")
    p.add_argument("--runs", type=int, default=3, help="rounds of the torch rows (median)")
    p.add_argument("--only", choices=["torch", "keras"])
    p.add_argument("--keras-row", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.keras_row:
        print("ROW " + json.dumps(keras_row(args.quick, args.repeats)))
        return 0
    import cv2

    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, numpy "
          f"{np.__version__}, opencv {cv2.__version__}; {WORKERS} workers, batches of {BATCH}")
    if args.only in (None, "torch"):
        rows = torch_rows(args.quick, args.runs)
        print(rows[0]["versions"])
        print("images/s (CPU ms per 1,000 images: main process + workers)")
        header = ("data", "round", "bare (same batches)", "bare (whole array)", "dlsets uint8",
                  "dlsets float32", "torchvision (n)", "vs bare", "vs torchvision")
        table, summary = [], []
        for r in rows:
            def ratio(a, b, at, r=r):
                return [g[a][at] / g[b][at] for g in r["rounds"]]

            vs_bare, vs_tv = ratio("uint8", "bare", 0), ratio("uint8", "torchvision", 0)
            # CPU: the other's cost per image over dlsets', i.e. the rate ratio on equal cores
            cpu_bare, cpu_tv = ratio("bare", "uint8", 1), ratio("torchvision", "uint8", 1)
            for i, g in enumerate(r["rounds"]):
                table.append((f"{r['n']:,} {r['data']}", i + 1, _cell(g["bare"]),
                              f"{g['whole']:,.0f}", _cell(g["uint8"]), _cell(g["float32"]),
                              f"{_cell(g['torchvision'])} n={r['torchvision_n']:,}",
                              f"{vs_bare[i]:.2f}x (CPU {cpu_bare[i]:.2f}x)",
                              f"{vs_tv[i]:.1f}x (CPU {cpu_tv[i]:.1f}x)"))
            summary.append((f"{r['n']:,} {r['data']}", f"{np.median(vs_bare):.2f}x",
                            f"{np.median(cpu_bare):.2f}x",
                            ">= 0.8x" if r["data"] == "mnist" else "",
                            f"{np.median(vs_tv):.1f}x", f"{np.median(cpu_tv):.1f}x",
                            f">= {TARGETS[r['data']]:g}x"))
        _print(header, table)
        print(f"median of {args.runs} rounds (dlsets uint8 through the DataLoader):")
        _print(("data", "vs bare", "by CPU", "target", "vs torchvision", "by CPU", "target"),
               summary)
    if args.only in (None, "keras"):
        table = []
        for backend in ("torch", "tensorflow"):
            env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
                   "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
            cmd = [sys.executable, os.path.abspath(__file__), "--keras-row",
                   f"--repeats={args.repeats}", *(["--quick"] if args.quick else [])]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("ROW ")]
            if out.returncode or not line:
                print(out.stdout[-2000:], out.stderr[-4000:], file=sys.stderr)
                return 1
            r = json.loads(line[0][4:])
            d = r["dlsets"]
            best = max(d.values())
            table.append((f"{r['n']:,} mnist", r["backend"], f"{d['1']:,.0f}",
                          f"{d['threads']:,.0f}", f"{d['processes']:,.0f}",
                          f"{r['layers']:,.0f} ({r['layers_n']:,})",
                          f"{best / r['layers']:.1f}x", f"{d['processes'] / r['layers']:.1f}x",
                          ">= 10x", r["keras"]))
        _print(("data", "backend", "dlsets 1 process", "2 threads", "2 processes",
                "keras layers (n)", "best vs layers", "processes vs layers", "target",
                "keras"), table)
    return 0


def _cell(rate_cpu: tuple[float, float]) -> str:
    return f"{rate_cpu[0]:,.0f} ({rate_cpu[1]:.1f})"


def _print(header, rows) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main())
