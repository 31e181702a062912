"""Cold loads of EMNIST, SVHN and STL-10 and the Caffe / ConvNetJS writers, against the usual
way (torchvision's: extract the archive to disk, then read the files).

Builds full-size synthetic files in the exact real formats under a temporary folder (EMNIST's
balanced variant inside a zip, SVHN's train .mat as scipy writes it, STL-10's train and test in
its tar.gz), points the built-in registry entries at them through ``fetch(..., source_dir=)``
and times a cold ``dlsets.load`` (parse + prepared copy written) against the alternative on the
same bytes; then the Caffe and ConvNetJS exports of MNIST-sized data. Prints one Markdown table.

    python tests/bench/bench_toolbox.py            # full size (about 2 minutes)
    python tests/bench/bench_toolbox.py --quick    # small smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from tests import formats  # noqa: E402
from tests.bench.bench_load import digit_like  # noqa: E402


def photo_like(rng, n: int, side: int) -> np.ndarray:
    """Smooth colour images (upsampled noise) that deflate about as well as photos do."""
    low = rng.integers(0, 256, (n, side // 8, side // 8, 3), dtype=np.uint8)
    img = low.repeat(8, axis=1).repeat(8, axis=2)
    return (img + rng.integers(0, 8, img.shape, dtype=np.uint8)).astype(np.uint8)


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def use_fixture(name: str, files: dict[str, Path]) -> None:
    """Point the built-in entry ``name`` at these files (sha256 and size of the fixtures)."""
    from dlsets.sources import registry

    base = registry._builtin()[name]
    specs = dict(base.files)
    for fname, path in files.items():
        data = path.read_bytes()
        specs[fname] = registry.FileSpec(fname, hashlib.sha256(data).hexdigest(), None,
                                         len(data), ("http://127.0.0.1:9/x",))
    spec = dataclasses.replace(base, files=specs)
    real = registry._all
    registry._all = lambda: {**real(), name: spec}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    scale = 0.05 if args.quick else 1.0
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-toolbox-"))
    cache = tmp / "cache"
    os.environ["DLSETS_CACHE"] = str(cache)
    import dlsets
    from dlsets.sources.acquire import fetch

    rows = []

    def row(what, n, ours, theirs, alt):
        rows.append((what, n, ours, theirs, alt))

    # EMNIST balanced: 112,800 + 18,800 images in gzip.zip
    n_tr, n_te = int(112_800 * scale), int(18_800 * scale)
    data = {"balanced": (digit_like(rng, n_tr), rng.integers(0, 47, n_tr).astype(np.uint8),
                         digit_like(rng, n_te), rng.integers(0, 47, n_te).astype(np.uint8))}
    src = tmp / "emnist"
    src.mkdir()
    (src / "gzip.zip").write_bytes(formats.emnist_zip(data))
    use_fixture("emnist", {"gzip.zip": src / "gzip.zip"})
    fetch("emnist", source_dir=src)

    def emnist_dlsets():
        shutil.rmtree(cache / "emnist" / "prepared", ignore_errors=True)
        dlsets.load_emnist(split="balanced")

    def emnist_extract():
        out = tmp / "emnist-x"
        shutil.rmtree(out, ignore_errors=True)
        with zipfile.ZipFile(src / "gzip.zip") as zf:
            zf.extractall(out)
        for s in ("train", "test"):
            raw = gzip.decompress((out / f"gzip/emnist-balanced-{s}-images-idx3-ubyte.gz")
                                  .read_bytes())
            x = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
            np.ascontiguousarray(x.transpose(0, 2, 1))
            gzip.decompress((out / f"gzip/emnist-balanced-{s}-labels-idx1-ubyte.gz").read_bytes())

    row("EMNIST balanced, cold load", n_tr + n_te, best(emnist_dlsets, args.repeat),
        best(emnist_extract, args.repeat), "extract zip, gunzip, frombuffer, transpose")

    # SVHN train: 73,257 images, MATLAB v5 compressed
    n = int(73_257 * scale)
    src = tmp / "svhn"
    src.mkdir()
    x = photo_like(rng, n, 32)
    (src / "train_32x32.mat").write_bytes(formats.svhn_mat(x, rng.integers(0, 10, n)))
    (src / "test_32x32.mat").write_bytes(formats.svhn_mat(x[:100], np.zeros(100, np.uint8)))
    use_fixture("svhn", {f: src / f for f in ("train_32x32.mat", "test_32x32.mat")})
    fetch("svhn", source_dir=src)

    def svhn_dlsets():
        shutil.rmtree(cache / "svhn" / "prepared", ignore_errors=True)
        dlsets.load_svhn()

    def svhn_scipy():
        import scipy.io

        for f in ("train_32x32.mat", "test_32x32.mat"):
            m = scipy.io.loadmat(src / f)
            np.transpose(m["X"], (3, 2, 0, 1))  # torchvision's NCHW view, no copy

    row("SVHN train+test, cold load", n + 100, best(svhn_dlsets, args.repeat),
        best(svhn_scipy, args.repeat), "scipy loadmat + transpose view (torchvision)")

    # STL-10 train + test: 13,000 images of 96x96x3 in the tar.gz
    n_tr, n_te = int(5000 * scale), int(8000 * scale)
    src = tmp / "stl10"
    src.mkdir()
    xs = photo_like(rng, n_tr + n_te, 96)
    folds = [rng.permutation(n_tr)[: max(1, n_tr // 5)] for _ in range(10)]
    body = formats.stl10_tar(xs[:n_tr], rng.integers(0, 10, n_tr), xs[n_tr:],
                             rng.integers(0, 10, n_te), xs[:1], folds,
                             [str(i) for i in range(10)])
    (src / "stl10_binary.tar.gz").write_bytes(body)
    use_fixture("stl10", {"stl10_binary.tar.gz": src / "stl10_binary.tar.gz"})
    fetch("stl10", source_dir=src)

    def stl_dlsets():
        shutil.rmtree(cache / "stl10" / "prepared", ignore_errors=True)
        dlsets.load_stl10()

    def stl_extract():
        out = tmp / "stl-x"
        shutil.rmtree(out, ignore_errors=True)
        with tarfile.open(src / "stl10_binary.tar.gz") as tf:
            tf.extractall(out, filter="data")
        for s in ("train", "test"):
            x = np.fromfile(out / f"stl10_binary/{s}_X.bin", np.uint8).reshape(-1, 3, 96, 96)
            np.transpose(x, (0, 1, 3, 2))  # torchvision's NCHW view, no copy
            np.fromfile(out / f"stl10_binary/{s}_y.bin", np.uint8)

    row("STL-10 train+test, cold load", n_tr + n_te, best(stl_dlsets, args.repeat),
        best(stl_extract, args.repeat), "extract tar.gz, fromfile, transpose view (torchvision)")

    # Caffe and ConvNetJS exports of MNIST-sized data
    n = int(60_000 * scale)
    mx = digit_like(rng, n)
    my = rng.integers(0, 10, n).astype(np.uint8)
    ds = dlsets.Dataset("mnist", dlsets.Split(mx, my), dlsets.Split(mx[:1000], my[:1000]),
                        tuple("0123456789"))

    def caffe_bare():
        import h5py

        for name, k in (("train", n), ("test", 1000)):
            with h5py.File(tmp / f"bare-{name}.h5", "w") as f:
                f["data"] = mx[:k, None].astype(np.float32) / 255
                f["label"] = my[:k].astype(np.float32)

    row("Caffe export, MNIST train+1k", n + 1000,
        best(lambda: ds.to_caffe(tmp / "caffe"), args.repeat),
        best(caffe_bare, args.repeat), "one h5py file of the float32 array")

    def js_bare():
        from PIL import Image

        for x in (mx, mx[:1000]):
            for b in range(0, len(x), 3000):
                Image.fromarray(x[b:b + 3000].reshape(-1, 784)).save(tmp / f"b{b}.png")

    row("ConvNetJS export, MNIST train+1k", n + 1000,
        best(lambda: ds.to_convnetjs(tmp / "js"), args.repeat),
        best(js_bare, args.repeat), "Pillow PNG per 3,000 rows")

    print("| what | images | dlsets s | alternative s | dlsets / alternative | alternative |")
    print("|---|---:|---:|---:|---:|---|")
    for what, n, ours, theirs, alt in rows:
        print(f"| {what} | {n:,} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f}x | {alt} |")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
