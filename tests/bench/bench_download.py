"""Download throughput: dlsets.fetch (hashing included) beside bare requests and curl.

    python tests/bench/bench_download.py            # 200 MB file
    python tests/bench/bench_download.py --quick    # 20 MB smoke run

A file of random bytes is served from 127.0.0.1 by a separate process (sendfile, Range
support), so the server does not compete with the client for the GIL. Each client downloads
it ``--repeat`` times; the best time counts. Then a resume: the server cuts the first transfer
at 50%, dlsets resumes with Range, and the bytes the server sent in all are reported.
dlsets hashes sha256 only when a sha256 is known (the normal path, whether or not the registry
also lists an md5); the md5-only row is notMNIST's first download, the one case that hashes md5
(then pins a sha256).
"CPU s" is the client's CPU time, every thread (curl's process for curl): hashing needs a core
of its own beside the reading thread and the server, so on a busy 2-core machine the clock
ratio follows the CPU ratio. The load average is printed before and after.
Targets: dlsets >= 0.85x bare requests, medians of the runs (issue #17 §5); a resume re-sends
under 5% extra. Set TMPDIR (e.g. /dev/shm) to take the disk out of the comparison.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
MB = 1_000_000


# --- the server (runs in its own process: `bench_download.py --serve FILE LOG`) ---------------


def serve(path: str, log: str) -> None:
    size = os.path.getsize(path)
    cut_done = set()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[6:-1])
            n = size - start
            # /cut/... sends only the first half on its first request, then hangs up.
            cut = self.path.startswith("/cut/") and self.path not in cut_done
            send = n // 2 if cut else n
            cut_done.add(self.path)
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(n))
            self.send_header("Accept-Ranges", "bytes")
            if start:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.end_headers()
            self.wfile.flush()
            sent = 0
            with open(path, "rb") as f:
                try:
                    sent = self.connection.sendfile(f, offset=start, count=send)
                except OSError:
                    pass
            with open(log, "a") as lf:
                lf.write(json.dumps({"path": self.path, "range": rng, "sent": sent}) + "\n")
            if cut:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever()


# --- the clients -----------------------------------------------------------------------------


def bare_requests(url: str, dest: Path) -> None:
    import requests

    with requests.get(url, stream=True, timeout=(15, 60)) as r, open(dest, "wb") as f:
        r.raise_for_status()
        for chunk in r.iter_content(1 << 20):
            f.write(chunk)


def curl(url: str, dest: Path) -> None:
    subprocess.run(["curl", "-s", "-f", "-o", str(dest), url], check=True)


def bare_requests_sha256(url: str, dest: Path) -> str:
    """The bare stream plus an inline sha256: what verifying costs without dlsets around it."""
    import requests

    h = hashlib.sha256()
    with requests.get(url, stream=True, timeout=(15, 60)) as r, open(dest, "wb") as f:
        r.raise_for_status()
        for chunk in r.iter_content(1 << 20):
            f.write(chunk)
            h.update(chunk)
    return h.hexdigest()


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its finished children (curl)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def round_robin(repeat: int, clients: list) -> list[tuple[str, float, float, float]]:
    """(label, best, median, median CPU seconds) of each (label, run, cleanup) client, run in
    turns so machine noise is shared."""
    times: dict[str, list[float]] = {label: [] for label, _, _ in clients}
    cpus: dict[str, list[float]] = {label: [] for label, _, _ in clients}
    for _ in range(repeat):
        for label, run, cleanup in clients:
            cleanup()
            c0, t0 = cpu_seconds(), time.perf_counter()
            run()
            times[label].append(time.perf_counter() - t0)
            cpus[label].append(cpu_seconds() - c0)
            cleanup()
    return [(label, min(t), statistics.median(t), statistics.median(cpus[label]))
            for label, t in times.items()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 MB instead of 200 MB")
    ap.add_argument("--size-mb", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--serve", nargs=2, metavar=("FILE", "LOG"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(*args.serve)
        return 0
    size = (args.size_mb or (20 if args.quick else 200)) * MB

    os.environ.setdefault("DLSETS_RETRY_BASE", "0.01")
    import requests

    from dlsets.sources import acquire, download, registry

    tmp = Path(tempfile.mkdtemp(prefix="dlsets-bench-"))
    proc = None
    try:
        src = tmp / "big.bin"
        sha, md5 = hashlib.sha256(), hashlib.md5()
        with open(src, "wb") as f:
            left = size
            while left:
                block = os.urandom(min(left, 16 << 20))
                sha.update(block)
                md5.update(block)
                f.write(block)
                left -= len(block)
        log = tmp / "server.log"
        proc = subprocess.Popen([sys.executable, __file__, "--serve", str(src), str(log)],
                                stdout=subprocess.PIPE, text=True)
        port = int(proc.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        entry = {"sha256": sha.hexdigest(), "size": size, "urls": [f"{base}/plain/big.bin"]}
        cut_entry = dict(entry)
        main_reg = tmp / "registry.json"
        main_reg.write_text(json.dumps({
            "bench": {"like": "mnist", "files": {"big.bin": entry}},
            "bench-md5": {"like": "mnist", "files": {"big.bin": {**entry, "md5": md5.hexdigest()}}},
        }))
        registry.register_file(main_reg)
        cache_dir = tmp / "cache"
        out = tmp / "out.bin"
        url = entry["urls"][0]

        def rm_out():
            out.unlink(missing_ok=True)

        def rm_cache():
            shutil.rmtree(cache_dir, ignore_errors=True)

        clients = [
            ("bare requests (iter_content, 1 MiB)", lambda: bare_requests(url, out), rm_out),
            ("bare requests + inline sha256", lambda: bare_requests_sha256(url, out), rm_out),
        ]
        if shutil.which("curl"):
            clients.append(("curl -s -o", lambda: curl(url, out), rm_out))
        for name, label in (("bench", "dlsets.fetch (sha256: the normal path)"),
                            ("bench-md5", "dlsets.fetch (registry lists md5 too: not hashed)")):
            clients.append((label, lambda n=name: acquire.fetch(n, cache_dir=cache_dir,
                                                              progress=False), rm_cache))
        md5_dest = tmp / "md5-only" / "big.bin"

        def md5_only():  # what fetch does for notMNIST before its sha256 is pinned
            download.download_file([url], md5_dest, sha256=None, md5=md5.hexdigest(),
                                   size=size, progress_bar=False)

        def rm_md5():
            shutil.rmtree(md5_dest.parent, ignore_errors=True)

        clients.append(("dlsets download, md5 only (notMNIST's first download)", md5_only,
                        rm_md5))
        load_before = os.getloadavg()[0]
        rows = round_robin(args.repeat, clients)
        t_req, m_req = rows[0][1:3]

        resumes, resume_cpu = [], []
        for i in range(args.repeat):  # a fresh URL each time, so the server cuts it again
            rm_cache()
            log.write_text("")
            reg = tmp / f"registry-cut-{i}.json"
            cut_entry["urls"] = [f"{base}/cut/{i}/big.bin"]
            reg.write_text(json.dumps({f"bench-cut-{i}": {"like": "mnist",
                                                          "files": {"big.bin": cut_entry}}}))
            registry.register_file(reg)
            c0, t0 = cpu_seconds(), time.perf_counter()
            got = acquire.fetch(f"bench-cut-{i}", cache_dir=cache_dir, progress=False)["big.bin"]
            resumes.append(time.perf_counter() - t0)
            resume_cpu.append(cpu_seconds() - c0)
            assert got.stat().st_size == size
            reqs = [json.loads(line) for line in log.read_text().splitlines()]
            sent = sum(r["sent"] for r in reqs)
        rows.append((f"dlsets.fetch, cut at 50% + resume ({len(reqs)} requests)", min(resumes),
                     statistics.median(resumes), statistics.median(resume_cpu)))

        print(f"\n{size / MB:.0f} MB from 127.0.0.1, best and median of {args.repeat}; Python "
              f"{sys.version.split()[0]}, requests {requests.__version__}, "
              f"{os.cpu_count()} CPUs; load average {load_before:.2f} before, "
              f"{os.getloadavg()[0]:.2f} after\n")
        print("| client | best s | MB/s | vs bare requests | median s | vs bare, medians | "
              "CPU s (median) |\n|---|---:|---:|---:|---:|---:|---:|")
        for label, t, m, c in rows:
            print(f"| {label} | {t:.3f} | {size / MB / t:.0f} | {t_req / t:.2f}x | {m:.3f} | "
                  f"{m_req / m:.2f}x | {c:.3f} |")
        extra = sent - size
        print(f"\nresume: server sent {sent:,} bytes for a {size:,}-byte file: "
              f"{extra:,} extra ({100 * extra / size:.2f}%); Range headers: "
              f"{[r['range'] for r in reqs]}")
        ok = m_req / {r[0]: r[2] for r in rows}["dlsets.fetch (sha256: the normal path)"]
        data = src.read_bytes()
        view = memoryview(data)
        rates = {}
        for algo in ("sha256", "md5"):
            h = hashlib.new(algo)
            t0 = time.perf_counter()
            for i in range(0, size, 1 << 20):
                h.update(view[i:i + (1 << 20)])
            rates[algo] = size / MB / (time.perf_counter() - t0)
        del view, data
        print(f"hashlib alone on bytes in memory: sha256 {rates['sha256']:.0f} MB/s, md5 "
              f"{rates['md5']:.0f} MB/s: the ceiling for a client that verifies as it downloads")
        # sha256 of one stream is sequential: a verifying client cannot outrun one core's hash
        ceiling = rates["sha256"] / (size / MB / t_req)
        best = {r[0]: r[1] for r in rows}["dlsets.fetch (sha256: the normal path)"]
        print(f"ceiling for a verifying client here: sha256's rate / the bare stream's best = "
              f"{ceiling:.2f}x; dlsets.fetch's best reaches {t_req / best / ceiling:.2f} of it")
        print(f"targets: dlsets >= 0.85x bare requests (medians): {ok:.2f}x "
              f"{'met' if ok >= 0.85 else 'MISSED'}; resume extra < 5%: "
              f"{'met' if extra < 0.05 * size else 'MISSED'}")
    finally:
        if proc:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
