"""Load-time benchmark: dlsets cold and warm against the keras and torchvision ways.

Builds full-size synthetic files in the exact real formats (60,000 MNIST images as gzip'd
IDX, 60,000 CIFAR-10 records as both the binary and the python tarball, a notMNIST tar.gz of
PNGs) under a temporary folder, imports them into a temporary dlsets cache through a user
registry file, then times each way of loading them and prints one Markdown table.

    python tests/bench/bench_load.py            # full size (minutes; notMNIST-large: 529,114 PNGs)
    python tests/bench/bench_load.py --quick    # small smoke run
    python tests/bench/bench_load.py --notmnist 100000
"""

from __future__ import annotations

import argparse
import gc
import gzip
import hashlib
import io
import json
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from tests import formats  # noqa: E402

LETTERS = "ABCDEFGHIJ"


# --- synthetic data in the real formats ----------------------------------------------------


def digit_like(rng, n: int, size: int = 28) -> np.ndarray:
    """Sparse blobby greyscale images that gzip about as well as MNIST does (~4.5x)."""
    low = rng.random((n, 7, 7)) ** 3
    mask = np.kron(low, np.ones((4, 4)))[:, :size, :size] > 0.3
    edge = rng.random(mask.shape) < 0.5  # half the ink anti-aliased, half solid
    img = (np.where(edge, rng.integers(1, 256, mask.shape), 253) * mask).astype(np.uint8)
    img[:, :4] = 0
    img[:, -4:] = 0
    return img


def write_mnist(folder: Path, rng, n_train: int, n_test: int) -> dict[str, Path]:
    x_tr, x_te = digit_like(rng, n_train), digit_like(rng, n_test)
    y_tr = rng.integers(0, 10, n_train).astype(np.uint8)
    y_te = rng.integers(0, 10, n_test).astype(np.uint8)
    out = {}
    for name, a in (("train-images-idx3-ubyte.gz", x_tr), ("train-labels-idx1-ubyte.gz", y_tr),
                    ("t10k-images-idx3-ubyte.gz", x_te), ("t10k-labels-idx1-ubyte.gz", y_te)):
        out[name] = folder / name
        out[name].write_bytes(formats.idx_gz_bytes(a))
    return out


def write_cifar(folder: Path, rng, n_train: int, n_test: int) -> dict[str, Path]:
    x_tr = rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8)
    x_te = rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
    y_tr = rng.integers(0, 10, n_train).astype(np.uint8)
    y_te = rng.integers(0, 10, n_test).astype(np.uint8)
    names = [f"class{i}" for i in range(10)]
    out = {"cifar-10-binary.tar.gz": folder / "cifar-10-binary.tar.gz",
           "cifar-10-python.tar.gz": folder / "cifar-10-python.tar.gz"}
    out["cifar-10-binary.tar.gz"].write_bytes(
        formats.cifar10_binary_tar(x_tr, y_tr, x_te, y_te, names))
    out["cifar-10-python.tar.gz"].write_bytes(
        formats.cifar10_python_tar(x_tr, y_tr, x_te, y_te, names))
    return out


def write_notmnist(folder: Path, rng, n: int) -> Path:
    """notMNIST_large.tar.gz with ``n`` PNGs (and 5 unreadable ones, like the real archive)."""
    import cv2

    pool = [cv2.imencode(".png", img)[1].tobytes() for img in digit_like(rng, 4096)]
    path = folder / "notMNIST_large.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=6, format=tarfile.GNU_FORMAT) as tf:
        per_class = -(-n // 10)
        for c, letter in enumerate(LETTERS):
            d = tarfile.TarInfo(f"notMNIST_large/{letter}")
            d.type = tarfile.DIRTYPE
            tf.addfile(d)
            for k in range(min(per_class, n - c * per_class)):
                # Names like the real ones: base64 of a font file name.
                data = pool[(c * per_class + k) % len(pool)]
                name = f"{hashlib.md5(f'{c}-{k}'.encode()).hexdigest()[:22]}=.png"
                info = tarfile.TarInfo(f"notMNIST_large/{letter}/{name}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            if c < 5:
                info = tarfile.TarInfo(f"notMNIST_large/{letter}/broken{c}.png")
                info.size = 0
                tf.addfile(info, io.BytesIO(b""))
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def register(reg: dict, name: str, like: str, files: dict[str, Path]) -> None:
    reg[name] = {"like": like, "files": {
        f: {"sha256": sha256(p), "size": p.stat().st_size, "urls": [f"http://127.0.0.1:9/{f}"]}
        for f, p in files.items()}}


# --- the ways of loading -------------------------------------------------------------------


def keras_mnist(files: dict[str, Path]):
    """keras.datasets.mnist without the npz: gzip + frombuffer per file, on every call."""
    def read(name, offset):
        with gzip.open(files[name], "rb") as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)

    x_tr = read("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    y_tr = read("train-labels-idx1-ubyte.gz", 8)
    x_te = read("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    y_te = read("t10k-labels-idx1-ubyte.gz", 8)
    return (x_tr, y_tr), (x_te, y_te)


def bare_gunzip(files: dict[str, Path]) -> int:
    total = 0
    for p in files.values():
        total += len(gzip.decompress(p.read_bytes()))
    return total


def _unpickle_batches(folder: Path, encoding: str):
    xs, ys = [], []
    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "rb") as f:
            d = pickle.load(f, encoding=encoding)
        xs.append(d[b"data" if encoding == "bytes" else "data"])
        ys.extend(d[b"labels" if encoding == "bytes" else "labels"])
    with open(folder / "test_batch", "rb") as f:
        d = pickle.load(f, encoding=encoding)
    key = (lambda k: k.encode()) if encoding == "bytes" else (lambda k: k)
    x_tr = np.vstack(xs).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    x_te = d[key("data")].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return (x_tr, np.array(ys)), (x_te, np.array(d[key("labels")]))


def keras_cifar10(tarball: Path, scratch: Path):
    """The brief's keras way: extract the python tarball, then unpickle batch by batch."""
    dest = scratch / "keras-cifar"
    shutil.rmtree(dest, ignore_errors=True)
    with tarfile.open(tarball) as tf:
        tf.extractall(dest, filter="data")
    return _unpickle_batches(dest / "cifar-10-batches-py", "bytes")


def keras_cifar10_warm(folder: Path):
    """keras.datasets.cifar10.load_data() once the archive is extracted (its warm path): unpickle
    each batch, copy it into one preallocated (N, 3, 32, 32) array, return a channels-last view."""
    parts, labels = [], []
    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "rb") as f:
            d = pickle.load(f, encoding="bytes")
        parts.append(d[b"data"].reshape(-1, 3, 32, 32))
        labels.extend(d[b"labels"])
    x_train = np.empty((sum(len(p) for p in parts), 3, 32, 32), dtype="uint8")
    start = 0
    for p in parts:
        x_train[start:start + len(p)] = p
        start += len(p)
    with open(folder / "test_batch", "rb") as f:
        d = pickle.load(f, encoding="bytes")
    x_test = d[b"data"].reshape(-1, 3, 32, 32)
    y_train = np.reshape(np.array(labels, "uint8"), (-1, 1))
    y_test = np.reshape(np.array(d[b"labels"], "uint8"), (-1, 1))
    return (x_train.transpose(0, 2, 3, 1), y_train), (x_test.transpose(0, 2, 3, 1), y_test)


def touch(tuples) -> None:
    """Read every pixel and label once (a reduction over each array)."""
    for pair in tuples:
        for a in pair:
            a.max()


def torchvision_cifar10(extracted: Path):
    """torchvision.datasets.CIFAR10: unpickle the (already extracted) batches on each call."""
    return _unpickle_batches(extracted, "latin1")


def torchvision_notmnist(tarball: Path, scratch: Path):
    """Extract the archive, then open every file with PIL (torchvision's ImageFolder way)."""
    from PIL import Image

    dest = scratch / "tv-notmnist"
    shutil.rmtree(dest, ignore_errors=True)
    with tarfile.open(tarball) as tf:
        tf.extractall(dest, filter="data")
    xs, ys = [], []
    for c, letter in enumerate(LETTERS):
        for p in sorted((dest / "notMNIST_large" / letter).iterdir()):
            try:
                with Image.open(p) as im:
                    xs.append(np.asarray(im.convert("L")))
                ys.append(c)
            except Exception:  # noqa: BLE001 - torchvision users wrap this the same way
                pass
    return np.stack(xs), np.array(ys)


_DLSETS_CHILD = """
import sys, time
import dlsets
load = dlsets.load
name, cache_dir = sys.argv[1], sys.argv[2]
t = time.perf_counter()
ds = load(name, cache_dir=cache_dir)
arrays = [ds.train.images, ds.train.labels, ds.test.images, ds.test.labels]
t_usable = time.perf_counter() - t
for a in arrays:
    a.max()  # every pixel read once
print(t_usable, time.perf_counter() - t)
"""

_GZIP_CHILD = """
import gzip, sys, time
from pathlib import Path
t = time.perf_counter()
for p in sys.argv[1:]:
    gzip.decompress(Path(p).read_bytes())
print(time.perf_counter() - t)
"""


_WARM_CHILD = """
import sys, time
which = sys.argv[1]
if which == "dlsets":
    import dlsets
    load = dlsets.load
else:
    sys.path.insert(0, sys.argv[3])
    from tests.bench.bench_load import keras_cifar10_warm
    from pathlib import Path
t = time.perf_counter()
if which == "dlsets":
    tuples = load(sys.argv[2], cache_dir=sys.argv[3]).as_tuples()
else:
    tuples = keras_cifar10_warm(Path(sys.argv[2]))
for pair in tuples:
    for a in pair:
        a.max()  # every pixel read once
print(time.perf_counter() - t)
"""


def fresh_process_warm(name: str, cache_dir: Path, batches: Path, runs: int):
    """Median seconds over ``runs`` fresh processes, alternating: (dlsets warm load, keras'
    warm path), each until every pixel was read once; imports happen before the clock."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ours, theirs = [], []
    for _ in range(runs):
        for argv, out in ((["dlsets", name, str(cache_dir)], ours),
                          (["keras", str(batches), str(ROOT)], theirs)):
            r = subprocess.run([sys.executable, "-c", _WARM_CHILD, *argv], env=env,
                               capture_output=True, text=True, check=True)
            out.append(float(r.stdout))
    return float(np.median(ours)), float(np.median(theirs))


def fresh_process_cold(name: str, cache_dir: Path, files: dict[str, Path], runs: int):
    """Median seconds over ``runs`` fresh processes, alternating: (dlsets cold load until the
    arrays are usable, the same plus reading every pixel, bare gzip of the files). Each dlsets
    process has imported dlsets (``dlsets.load`` resolved) before its clock starts; the source
    files are in the page cache."""
    import subprocess

    from dlsets.store.cache import prepared_dir

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    usable, touched, floor = [], [], []
    for _ in range(runs):
        shutil.rmtree(prepared_dir(name, cache_dir), ignore_errors=True)
        out = subprocess.run([sys.executable, "-c", _DLSETS_CHILD, name, str(cache_dir)],
                             env=env, capture_output=True, text=True, check=True).stdout
        u, t = map(float, out.split())
        usable.append(u)
        touched.append(t)
        out = subprocess.run([sys.executable, "-c", _GZIP_CHILD, *map(str, files.values())],
                             env=env, capture_output=True, text=True, check=True).stdout
        floor.append(float(out))
    return float(np.median(usable)), float(np.median(touched)), float(np.median(floor))


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


# --- main ----------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--notmnist", type=int, default=None,
                    help="number of notMNIST PNGs (default 529,114; 3,000 with --quick)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N for the fast cases")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    ap.add_argument("--fresh-runs", type=int, default=7,
                    help="fresh processes for the cold MNIST load (median; default 7)")
    ap.add_argument("--only", choices=("mnist", "cifar", "notmnist"), action="append",
                    help="run only these sections (repeatable)")
    args = ap.parse_args(argv)

    n_mnist = (6000, 1000) if args.quick else (60000, 10000)
    n_cifar = (5000, 1000) if args.quick else (50000, 10000)
    n_notmnist = args.notmnist or (3000 if args.quick else 529_114)
    work = Path(args.keep or tempfile.mkdtemp(prefix="dlsets-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows: list[tuple[str, str, float, str]] = []

    only = set(args.only or ("mnist", "cifar", "notmnist"))
    try:
        t = time.perf_counter()
        src = {k: work / "src" / k for k in ("mnist", "cifar-bin", "cifar-py", "notmnist")}
        for p in src.values():
            p.mkdir(parents=True, exist_ok=True)
        reg: dict = {}
        imports = []
        if "mnist" in only:
            mnist = write_mnist(src["mnist"], rng, *n_mnist)
            register(reg, "bench-mnist", "mnist", mnist)
            imports.append(("bench-mnist", "mnist"))
        if "cifar" in only:
            cifar = write_cifar(work / "src", rng, *n_cifar)
            shutil.move(cifar["cifar-10-binary.tar.gz"], src["cifar-bin"])
            shutil.move(cifar["cifar-10-python.tar.gz"], src["cifar-py"])
            cifar_bin = src["cifar-bin"] / "cifar-10-binary.tar.gz"
            cifar_py = src["cifar-py"] / "cifar-10-python.tar.gz"
            register(reg, "bench-cifar10-bin", "cifar10", {cifar_bin.name: cifar_bin})
            register(reg, "bench-cifar10-py", "cifar10", {cifar_py.name: cifar_py})
            imports += [("bench-cifar10-bin", "cifar-bin"), ("bench-cifar10-py", "cifar-py")]
        if "notmnist" in only:
            notm = write_notmnist(src["notmnist"], rng, n_notmnist)
            register(reg, "bench-notmnist", "notmnist-large", {notm.name: notm})
            imports.append(("bench-notmnist", "notmnist"))
        (work / "registry.json").write_text(json.dumps(reg))
        os.environ["DLSETS_REGISTRY"] = str(work / "registry.json")
        cache_dir = work / "cache"

        import dlsets
        from dlsets.sources.acquire import fetch
        from dlsets.store.cache import prepared_dir

        for name, key in imports:
            fetch(name, source_dir=src[key], cache_dir=cache_dir)
        print(f"# built and imported the files in {time.perf_counter() - t:.1f} s",
              file=sys.stderr)

        def cold(name, **kw):
            def run():
                shutil.rmtree(prepared_dir(name, cache_dir), ignore_errors=True)
                dlsets.load(name, cache_dir=cache_dir, **kw)
            return run

        def warm(name, **kw):
            def run():
                (x, y), (xt, yt) = dlsets.load(name, cache_dir=cache_dir, **kw).as_tuples()
            return run

        def warm_read(name, **kw):
            def run():
                for a in (a for pair in dlsets.load(name, cache_dir=cache_dir, **kw).as_tuples()
                          for a in pair):
                    a.max()  # every pixel read once
            return run

        r = args.repeat
        if "mnist" in only:
            mb = sum(p.stat().st_size for p in mnist.values()) / 1e6
            t_gz = timed(lambda: bare_gunzip(mnist), r)
            rows.append(("MNIST", "bare gzip decompression of the 4 files, in-process (best)",
                         t_gz, f"{mb:.1f} MB gz"))
            rows.append(("MNIST", "keras way (gzip + frombuffer, every call)",
                         timed(lambda: keras_mnist(mnist), r), ""))
            t_cold = timed(cold("bench-mnist"), r)
            rows.append(("MNIST", "dlsets cold, repeated in one warm process (best)", t_cold,
                         f"{t_cold / t_gz:.2f}x bare gzip"))
            u, t, f = fresh_process_cold("bench-mnist", cache_dir, mnist, args.fresh_runs)
            rows.append(("MNIST", "bare gzip decompression, fresh process (median)", f, ""))
            rows.append(("MNIST", "dlsets cold, fresh process, until arrays usable (median)", u,
                         f"{u / f:.2f}x bare gzip (target <= 1.3x)"))
            rows.append(("MNIST", "dlsets cold, fresh process, + every pixel read (median)", t,
                         f"{t / f:.2f}x bare gzip"))
            rows.append(("MNIST", "dlsets warm (memory-mapped prepared)",
                         timed(warm("bench-mnist"), r), ""))

        if "cifar" in only:
            extracted = work / "tv-cifar"
            with tarfile.open(cifar_py) as tf:
                tf.extractall(extracted, filter="data")
            batches = extracted / "cifar-10-batches-py"
            t_keras_x = timed(lambda: keras_cifar10(cifar_py, work), r)
            rows.append(("CIFAR-10", "keras, first call (extract python tarball + unpickle)",
                         t_keras_x, ""))
            t_keras = timed(lambda: touch(keras_cifar10_warm(batches)), max(r, 5))
            rows.append(("CIFAR-10", "keras warm (unpickle extracted batches, copy into one "
                         "array) + every pixel read", t_keras, ""))
            rows.append(("CIFAR-10", "torchvision way (unpickle extracted batches, every call)",
                         timed(lambda: torchvision_cifar10(batches), r), ""))
            rows.append(("CIFAR-10", "dlsets cold, binary tarball (default)",
                         timed(cold("bench-cifar10-bin"), 1), ""))
            rows.append(("CIFAR-10", "dlsets cold, python tarball (restricted unpickler)",
                         timed(cold("bench-cifar10-py"), 1), ""))
            t_warm = timed(warm("bench-cifar10-bin"), max(r, 5))
            rows.append(("CIFAR-10", "dlsets warm, arrays returned (pixels not read)", t_warm,
                         ""))
            t_touch = timed(warm_read("bench-cifar10-bin"), max(r, 5))
            rows.append(("CIFAR-10", "dlsets warm + every pixel read", t_touch,
                         f"{t_keras / t_touch:.1f}x keras warm + every pixel read "
                         "(target >= 2x)"))
            ours, theirs = fresh_process_warm("bench-cifar10-bin", cache_dir, batches,
                                              args.fresh_runs)
            rows.append(("CIFAR-10", "keras warm + every pixel read, fresh process (median)",
                         theirs, ""))
            rows.append(("CIFAR-10", "dlsets warm + every pixel read, fresh process (median)",
                         ours, f"{theirs / ours:.1f}x keras warm (target >= 2x)"))
            t_floor = timed(lambda: [np.fromfile(p, np.uint8).max() for p in
                                     sorted(prepared_dir("bench-cifar10-bin",
                                                         cache_dir).glob("*.npy"))], max(r, 5))
            rows.append(("CIFAR-10", "floor: read the prepared files into memory once", t_floor,
                         ""))

        if "notmnist" in only:
            t_tv = timed(lambda: torchvision_notmnist(notm, work), 1)
            shutil.rmtree(work / "tv-notmnist", ignore_errors=True)
            rows.append(("notMNIST", "extract, then open each file with PIL (torchvision way)",
                         t_tv, f"{n_notmnist:,} PNGs"))
            t_ing = timed(cold("bench-notmnist"), 1)
            rows.append(("notMNIST", "dlsets cold ingest (stream tar.gz, decode on 2 threads)",
                         t_ing, f"{t_tv / t_ing:.1f}x faster (target >= 3x)"))
            rows.append(("notMNIST", "dlsets warm (memory-mapped prepared)",
                         timed(warm("bench-notmnist"), r), ""))
            from dlsets.formats.notmnist import read_notmnist_tar

            classes = list(LETTERS)
            for workers in (1, 2):
                plural = "s" if workers > 1 else ""
                rows.append(("notMNIST", f"reader alone, {workers} decode thread{plural}",
                             timed(lambda w=workers: read_notmnist_tar(notm, classes=classes,
                                                                       workers=w), 1), ""))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print("| dataset | how | seconds | note |\n|---|---|---:|---|")
    for ds, how, sec, note in rows:
        print(f"| {ds} | {how} | {sec:.3f} | {note} |")
    print(f"\n{os.cpu_count()} CPU(s); best of {args.repeat} for runs under a few seconds; "
          f"sizes: MNIST {sum(n_mnist):,}, CIFAR-10 {sum(n_cifar):,}, notMNIST {n_notmnist:,}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
