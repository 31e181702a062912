"""Kaggle fetch + unpack of a zip of many small files, beside ``zipfile.extractall``.

    python tests/bench/bench_unpack.py            # 20,000 and 100,000 files
    python tests/bench/bench_unpack.py --quick    # 2,000 and 20,000

A zip of small files (~300 random bytes each, in 10 folders, deflated) is served by the
loopback Kaggle stand-in (tests/kaggle_standin.py, its storage on tests/httpserver.py). Rows:
``dlsets.sources.kaggle.fetch`` from an empty cache (API call, download with sha256, the archive's
checks, unpacking with a sha256 per file, the record of them); ``archive.extract_zip`` alone on
the downloaded zip; ``zipfile.extractall`` on it (no checks, no hashes); and bare ``requests`` +
``extractall``, the fetch + unpack a user would write. Each runs ``--repeat`` times in turns;
the best time counts. Target (issue #17 §3): 20,000 files fetched and unpacked in < 10 s,
100,000 in proportion.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
TARGET_PER_20K = 10.0


def make_zip(n: int, folders: int = 10, size: int = 300) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            zf.writestr(f"data/class{i % folders}/{i:06d}.png", os.urandom(size))
    return buf.getvalue()


def bench(n: int, repeat: int, tmp: Path) -> list[tuple[str, float]]:
    import requests

    from dlsets.formats import archive
    from dlsets.sources import kaggle
    from tests.kaggle_standin import KaggleStandin

    body = make_zip(n)
    ref = f"bench/files-{n}"
    with KaggleStandin() as kg:
        kg.add(ref, {1: body})
        os.environ["DLSETS_KAGGLE_API"] = kg.url
        cache = tmp / f"cache-{n}"
        local = tmp / f"local-{n}.zip"
        local.write_bytes(body)
        out = tmp / f"out-{n}"
        url = kg.storage.url(f"/storage/{ref}/1.zip")

        def rm(*paths):
            def go():
                for p in paths:
                    shutil.rmtree(p, ignore_errors=True)
                    p.unlink(missing_ok=True) if p.is_file() else None
            return go

        def fetch():
            got = kaggle.fetch(f"kaggle:{ref}/versions/1", cache_dir=cache, progress=False)
            assert sum(1 for _ in got.rglob("*.png")) == n

        def extract_zip():
            assert len(archive.extract_zip(local, out)) == n

        def extractall():
            with zipfile.ZipFile(local) as zf:
                zf.extractall(out)

        def requests_extractall():
            dl = tmp / "dl.zip"
            with requests.get(url, stream=True, timeout=(15, 60)) as r, open(dl, "wb") as f:
                r.raise_for_status()
                for chunk in r.iter_content(1 << 20):
                    f.write(chunk)
            with zipfile.ZipFile(dl) as zf:
                zf.extractall(out)
            dl.unlink()

        clients = [
            ("dlsets kaggle.fetch (download, verify, unpack, hash each file)", fetch,
             rm(cache)),
            ("dlsets archive.extract_zip (checks + sha256 per file)", extract_zip, rm(out)),
            ("zipfile.extractall (no checks)", extractall, rm(out)),
            ("bare requests + zipfile.extractall", requests_extractall, rm(out)),
        ]
        best = {label: float("inf") for label, _, _ in clients}
        for _ in range(repeat):
            for label, run, cleanup in clients:
                cleanup()
                t0 = time.perf_counter()
                run()
                best[label] = min(best[label], time.perf_counter() - t0)
                cleanup()
    return list(best.items()), len(body)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000 and 20,000 files")
    ap.add_argument("--files", type=int, nargs="*", default=None)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--dir", default=None, help="where to write (default: the system's temp)")
    args = ap.parse_args(argv)
    sizes = args.files or ([2_000, 20_000] if args.quick else [20_000, 100_000])

    import requests

    tmp = Path(tempfile.mkdtemp(prefix="dlsets-bench-unpack-", dir=args.dir))
    saved = {k: os.environ.get(k) for k in ("HOME", "DLSETS_KAGGLE_API", "KAGGLE_API_TOKEN")}
    from tests.kaggle_standin import TOKEN

    os.environ["HOME"] = str(tmp / "home")
    os.environ["KAGGLE_API_TOKEN"] = TOKEN
    try:
        print(f"\nPython {sys.version.split()[0]}, requests {requests.__version__}, "
              f"{platform.machine()}, {os.cpu_count()} CPUs; best of {args.repeat}; "
              f"writing under {tmp.parent}\n")
        print("| files | zip MB | client | seconds | files/s | vs extractall | target |")
        print("|---:|---:|---|---:|---:|---:|---|")
        for n in sizes:
            rows, nbytes = bench(n, args.repeat, tmp)
            t_all = dict(rows)["zipfile.extractall (no checks)"]
            for i, (label, t) in enumerate(rows):
                target = ""
                if i == 0:
                    goal = TARGET_PER_20K * n / 20_000
                    target = f"< {goal:.0f} s {'yes' if t < goal else '**no**'}"
                print(f"| {n:,} | {nbytes / 1e6:.1f} | {label} | {t:.2f} | {n / t:,.0f} | "
                      f"{t / t_all:.1f}x | {target} |")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
