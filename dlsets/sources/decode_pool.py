"""Decoding on worker processes that cannot outlive their parent, within a memory budget.

- Start method: ``fork`` on Linux (workers start in milliseconds), threads elsewhere (Pillow
  releases the GIL while it decodes); ``DLSETS_DECODE_START=fork|spawn|thread`` overrides.
- A worker exits when its parent dies (killed, or dead of SIGBUS): on Linux the kernel kills
  it (``PR_SET_PDEATHSIG``), and everywhere a watchdog thread sees the parent pid change within
  ``WATCH`` seconds and exits, whatever the worker is blocked on (spawn, macOS, a parent that
  died before ``prctl`` ran).
- Memory: decoding one image near Pillow's pixel limit peaks near 2 GB (a 172 KB 16-bit
  9400x9400 PNG: 1.7 GB), so "workers x largest image" can exceed the machine. An image whose
  peak, estimated from its header (:func:`dlsets.formats.image.peak_bytes`), is at least
  ``SMALL`` holds that much of a :class:`Budget` shared by all workers while it decodes:
  half the memory available when decoding starts, or ``DLSETS_DECODE_MEMORY`` bytes. A worker
  waits for room, so parallelism drops only while big images decode; an image that needs more
  than the whole budget is skipped, with the reason. Small images never touch the budget (the
  default worker count keeps ``workers x SMALL`` within it).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

from ..errors import DlsetsError, OptionError
from ..store.space import available_memory, human

log = logging.getLogger("dlsets")

SMALL = 64 << 20  # estimated decode peaks below this never wait for the budget
WATCH = 0.5  # seconds between a worker's looks at its parent
WAIT = 600.0  # longest a worker waits for room in the budget (also the pool's stall limit)
START_METHODS = ("fork", "spawn", "thread")
LAST_RUN: dict = {}  # what the last run did with big images (for tests and benchmarks)

_budget: Budget | None = None  # this process's budget: set in workers, and around inline runs


class _Cell:
    def __init__(self):
        self.value = 0


class Budget:
    """Bytes of memory that decoders may hold at once for big images, shared by the workers
    of one run (a process-shared condition for process pools, a thread one otherwise)."""

    def __init__(self, total: int, source: str, ctx=None):
        self.total, self.source, self.small = int(total), source, SMALL
        if ctx is None:
            self._cond = threading.Condition()
            self._used, self._holders, self._most = _Cell(), _Cell(), _Cell()
        else:
            self._cond = ctx.Condition()
            self._used, self._holders, self._most = (ctx.Value("q", 0, lock=False)
                                                     for _ in range(3))

    def take(self, nbytes: int) -> str | None:
        """Hold ``nbytes`` (waiting for room, at most WAIT s); None when held, else why not."""
        if nbytes > self.total:
            return (f"decoding it needs about {human(nbytes)} of memory (estimated from its "
                    f"header), more than the {human(self.total)} dlsets lets decoders use "
                    f"({self.source}); free memory, set DLSETS_DECODE_MEMORY higher, or shrink "
                    "the image")
        deadline = time.monotonic() + WAIT
        with self._cond:
            while self._used.value + nbytes > self.total:
                left = deadline - time.monotonic()
                if left <= 0:
                    return (f"waited {WAIT:g} s for {human(nbytes)} of decoding memory that "
                            "other images held")
                self._cond.wait(left)
            self._used.value += nbytes
            self._holders.value += 1
            self._most.value = max(self._most.value, self._holders.value)
        return None

    def give(self, nbytes: int) -> None:
        with self._cond:
            self._used.value -= nbytes
            self._holders.value -= 1
            self._cond.notify_all()

    @property
    def most(self) -> int:
        """The most big images that were decoding at once."""
        return self._most.value


def budget() -> Budget | None:
    """The decoding budget of this process (None outside a run)."""
    return _budget


def allowance() -> tuple[int | None, str]:
    """(bytes decoders may hold for big images, where that number comes from)."""
    raw = os.environ.get("DLSETS_DECODE_MEMORY", "").strip()
    if raw:
        try:
            value = int(raw)
            if value < 1:
                raise ValueError
        except ValueError:
            raise OptionError(f"DLSETS_DECODE_MEMORY={raw!r}: give the bytes of memory image "
                              "decoding may use, a positive integer") from None
        return value, "DLSETS_DECODE_MEMORY"
    avail = available_memory()
    if avail is None:
        return None, "memory available unknown"
    return avail // 2, f"half of the {human(avail)} of memory available"


def start_method() -> str:
    """How workers start: DLSETS_DECODE_START, else fork on Linux and threads elsewhere."""
    import multiprocessing as mp

    raw = os.environ.get("DLSETS_DECODE_START", "").strip().lower()
    if raw:
        here = [m for m in START_METHODS if m == "thread" or m in mp.get_all_start_methods()]
        if raw not in here:
            raise OptionError(f"DLSETS_DECODE_START={raw!r}: use one of {', '.join(here)}")
        return raw
    if sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods():
        return "fork"
    return "thread"


def cap_workers(workers: int) -> int:
    """``workers`` lowered so that ``workers x SMALL`` fits the budget (at least 1)."""
    total, _ = allowance()
    if total is None:
        return workers
    return max(1, min(workers, total // SMALL))


# --- in the workers ------------------------------------------------------------------------


def _die_with(parent: int) -> None:
    """Make this worker end when process ``parent`` does."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PDEATHSIG
        except (OSError, AttributeError):
            pass  # the watchdog below still ends it
    if os.getppid() != parent:
        os._exit(1)  # the parent died before we got here
    threading.Thread(target=_watch, args=(parent,), name="dlsets-parent-watch",
                     daemon=True).start()


def _watch(parent: int) -> None:
    while True:
        time.sleep(WATCH)
        if os.getppid() != parent:
            os._exit(1)  # orphaned: whatever the main thread waits for will never come


def _init(parent: int, shared: Budget | None) -> None:
    import warnings

    from PIL import Image

    global _budget
    _die_with(parent)
    _budget = shared
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    # Ctrl-C reaches the whole process group: the parent stops the pool, the workers keep quiet
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# --- in the parent -------------------------------------------------------------------------


def run(fn: Callable, job, chunks: list, workers: int, on_done: Callable[[int], None],
        names: Callable[[list], str]) -> Iterator:
    """Yield ``fn((job, chunk))`` for every chunk (a list of tasks), in any order: in this
    process when ``workers`` is 1, else on ``workers`` processes (or threads, see
    :func:`start_method`). ``names(chunks)`` names files for messages. A worker that dies,
    or no result for WAIT seconds, is a DlsetsError; the workers are gone when this returns
    or raises."""
    global _budget
    from ..formats.image import quiet_bomb_warnings

    total, source = allowance()
    method = start_method() if workers > 1 else "inline"
    ctx = None
    if method in ("fork", "spawn"):
        import multiprocessing as mp

        ctx = mp.get_context(method)
    shared = Budget(total, source, ctx) if total is not None else None
    LAST_RUN.clear()
    LAST_RUN.update(method=method, workers=workers, budget=total)
    if ctx is None:
        _budget = shared
        try:
            with quiet_bomb_warnings():
                if method == "inline":
                    for chunk in chunks:
                        r = fn((job, chunk))
                        on_done(len(chunk))
                        yield r
                else:
                    yield from _pooled(cf.ThreadPoolExecutor(workers), fn, job, chunks,
                                       on_done, names)
        finally:
            _budget = None
            LAST_RUN["most"] = shared.most if shared else 0
        return
    pool = cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init,
                                  initargs=(os.getpid(), shared))
    try:
        yield from _pooled(pool, fn, job, chunks, on_done, names)
    finally:
        LAST_RUN["most"] = shared.most if shared else 0


def _pooled(pool, fn, job, chunks, on_done, names):
    ok = False
    try:
        pending = {pool.submit(fn, (job, c)): c for c in chunks}
        while pending:
            done, _ = cf.wait(pending, timeout=WAIT, return_when=cf.FIRST_COMPLETED)
            if not done:
                raise DlsetsError(f"decoding made no progress for {WAIT:g} s (still busy with "
                                  f"{names(list(pending.values()))}); stopped")
            for fut in done:
                chunk = pending.pop(fut)
                try:
                    r = fut.result()
                except cf.process.BrokenProcessPool:
                    raise DlsetsError(
                        "a decoding process died (killed for memory?) while reading "
                        f"{names([chunk])}; give workers=1 (or fewer), or a smaller size=, "
                        "and try again") from None
                on_done(len(chunk))
                yield r
        ok = True
    finally:
        _stop(pool, ok)


def _stop(pool, ok: bool) -> None:
    """Shut ``pool`` down; after a failure, workers still busy are ended (a bounded wait),
    not waited for."""
    if ok or isinstance(pool, cf.ThreadPoolExecutor):
        pool.shutdown(wait=ok, cancel_futures=True)
        return
    procs = list((getattr(pool, "_processes", None) or {}).values())
    writer = getattr(getattr(pool, "_result_queue", None), "_writer", None)  # (see below)
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join(5)
    # A worker ended while sending its result leaves the pool's reader thread waiting for the
    # rest of the message, and the interpreter joins that thread at exit: forever. The parent
    # holds the pipe's other end too; closing it gives the reader an EOF and lets it end.
    if writer is not None:
        try:
            writer.close()
        except OSError:
            pass
