"""Per-file CPU of folder decoding (one process, no pool): ``decode_image`` on the photo-like
512x512 JPEGs of bench_folders.py at 64x64 and its 32x32 PNGs, against ``cv2.imdecode`` alone
(the floor: the entropy decoding at the DCT scale). ``--against OLD/dlsets/readers/image.py``
times another version of the reader in the same run, in turns, and checks equal pixels.

    PYTHONPATH=. /work/venv/bin/python tests/bench/bench_decode_file.py [--against FILE]
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _cpu_us(fn, items, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for x in items:
            fn(x)
        best = min(best, time.process_time() - t0)
    return best / len(items) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", help="folder for the images (made when missing)")
    ap.add_argument("--against", help="another image.py to time beside this one")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import cv2

    from dlsets.formats import image as new
    from tests.bench.bench_folders import make_jpegs, make_pngs

    root = Path(args.dir or tempfile.mkdtemp(prefix="dlsets-bench-decode-"))
    if not (root / "jpeg").exists():
        make_jpegs(root / "jpeg", 600)
        make_pngs(root / "png", 3000)
    old = None
    if args.against:
        spec = importlib.util.spec_from_file_location("dlsets.formats._against", args.against)
        old = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = old
        spec.loader.exec_module(old)
    print("| files | cv2.imdecode alone | decode_image | against |")
    print("|---|---|---|---|")
    for kind, side, flag in (("jpeg", 64, cv2.IMREAD_REDUCED_COLOR_8), ("png", 32,
                                                                         cv2.IMREAD_COLOR)):
        files = sorted(glob.glob(str(root / kind / "*" / f"*.{'jpg' if kind == 'jpeg' else kind}")))
        files = files[:600]
        datas = [Path(f).read_bytes() for f in files]
        target = new.Target((side, side))
        floor = _cpu_us(lambda d, flag=flag: cv2.imdecode(np.frombuffer(d, np.uint8), flag),
                        datas, args.rounds)
        mine = theirs = float("inf")
        for _ in range(3):  # in turns: both see the same machine
            mine = min(mine, _cpu_us(lambda f, t=target: new.decode_image(f, t, fast=True),
                                     files, args.rounds))
            if old is not None:
                theirs = min(theirs, _cpu_us(
                    lambda f, t=target: old.decode_image(f, t, fast=True), files, args.rounds))
        if old is not None:
            assert all(np.array_equal(new.decode_image(f, target, fast=True),
                                      old.decode_image(f, target, fast=True)) for f in files)
        print(f"| {len(files)} {kind} -> {side}x{side} | {floor:.0f} us | {mine:.0f} us | "
              + (f"{theirs:.0f} us (same pixels) |" if old is not None else "- |"))


if __name__ == "__main__":
    main()
