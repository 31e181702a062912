"""Decoding a folder's images (and masks) to the target size, in chunks: in this process for a
few files, else on worker processes (:mod:`dlsets.sources.decode_pool`)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np

from ..formats import image as imgread
from . import decode_pool

INLINE = 48  # fewer files than this are decoded in this process: no pool to start
FAST_FROM = 500  # from this many files, importing OpenCV (0.1 s) for the PNG fast path pays


@dataclass(frozen=True)
class DecodeJob:
    """What every chunk is decoded to (sent to the workers with each chunk)."""

    target: imgread.Target
    mask_limit: int | None  # values allowed in masks: 0..limit-1; None: any
    fast: bool = False  # plain PNGs through OpenCV (imported before the workers fork)


def _decode_chunk(args) -> tuple[list[int], np.ndarray, np.ndarray | None, list, np.ndarray]:
    """Decode rows of one chunk; returns (rows decoded, images, masks, skips, mask values
    present (256,) counts)."""
    job, chunk = args
    rows, pixels, masks, skips = [], [], [], []
    present = np.zeros(256, np.int64)
    memory = decode_pool.budget()
    for row, path, mask_path in chunk:
        if mask_path is None:
            got = imgread.decode_image(path, job.target, fast=job.fast, memory=memory)
        else:
            got = imgread.decode_pair(path, mask_path, job.target, memory=memory)
        if isinstance(got, imgread.Skip):
            skips.append((row, got.kind, got.reason))
            continue
        if mask_path is not None:
            px, m = got
            values = np.bincount(m.ravel(), minlength=256) > 0
            if job.mask_limit is not None:
                if job.mask_limit == 2 and not values[2:255].any() and not values[1]:
                    m = (m == 255).astype(np.uint8)  # a black-and-white binary mask
                    values = np.bincount(m.ravel(), minlength=256) > 0
                bad = np.flatnonzero(values[job.mask_limit:]) + job.mask_limit
                if len(bad):
                    skips.append((row, "mask", f"mask values {_values(bad)} are outside the "
                                  f"{job.mask_limit} classes (0..{job.mask_limit - 1})"))
                    continue
            present += values
            masks.append(m)
            got = px
        rows.append(row)
        pixels.append(got)
    shape = job.target.shape
    px_arr = np.stack(pixels) if pixels else np.zeros((0, *shape), np.uint8)
    m_arr = np.stack(masks) if masks else None
    return rows, px_arr, m_arr, skips, present


def _values(v: np.ndarray) -> str:
    shown = ", ".join(str(int(x)) for x in v[:8])
    return shown + (", ..." if len(v) > 8 else "")


def default_workers() -> int:
    """Decoding processes: the cores this process may run on, as many as the decoding memory
    budget has room for (see :mod:`dlsets.sources.decode_pool`)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = max(1, os.cpu_count() or 1)
    return decode_pool.cap_workers(cores)


def _chunks(tasks: list, workers: int) -> list[list]:
    size = max(8, min(256, len(tasks) // max(1, workers * 32)))  # short tail, cheap IPC
    return [tasks[i:i + size] for i in range(0, len(tasks), size)]


def decode_all(tasks: list, job: DecodeJob, workers: int, on_done):
    """Yield _decode_chunk results for ``tasks`` (row, path, mask path), in any order:
    in this process for a few files, else on ``workers`` processes
    (:mod:`dlsets.sources.decode_pool`:
    workers that die with this process, a memory budget for big images)."""
    if not job.fast and (len(tasks) >= FAST_FROM or "cv2" in sys.modules):
        try:
            import cv2

            job = DecodeJob(job.target, job.mask_limit, True)
            # imported here, so forked workers have it. They call cv2.imdecode only: after a
            # fork, OpenCV's thread pool (started by the parent's own use) hangs whatever
            # touches it (setNumThreads, or cvtColor on a big image)
            del cv2
        except ImportError:
            pass
    if len(tasks) < INLINE:
        workers = 1
    yield from decode_pool.run(_decode_chunk, job, _chunks(tasks, workers), workers, on_done,
                               _chunk_names)


def _chunk_names(chunks) -> str:
    chunks = list(chunks)
    first, last = chunks[0][0][1], chunks[-1][-1][1]
    return first if first == last else f"{first} .. {last}"

