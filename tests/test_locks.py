"""`remove` against real concurrent processes: a fetch or a load (prepare) of the same dataset."""

from __future__ import annotations

import multiprocessing
import os
import time

import numpy as np
import pytest

from dlsets.cli import main
from dlsets.errors import DlsetsError, OptionError
from dlsets.sources import acquire
from dlsets.store import atomic, cache
from tests.formats import idx_gz_bytes
from tests.httpserver import file_entry, wait_for, write_registry

NAMES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def idx_files(n_train: int = 40, n_test: int = 10) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {
        NAMES[0]: idx_gz_bytes(rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)),
        NAMES[1]: idx_gz_bytes((np.arange(n_train) % 10).astype(np.uint8)),
        NAMES[2]: idx_gz_bytes(rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)),
        NAMES[3]: idx_gz_bytes((np.arange(n_test) % 10).astype(np.uint8)),
    }


@pytest.fixture
def slow_toy(server, tmp_path, monkeypatch):
    """register(bodies): dataset 'toy' whose files the server trickles at ~50 kB/s."""

    def make(bodies: dict[str, bytes]) -> dict[str, bytes]:
        files = {f: file_entry(b, [server.add(f"/{f}", b, trickle=(1024, 0.02))])
                 for f, b in bodies.items()}
        reg = write_registry(tmp_path, {"toy": {"like": "mnist", "files": files}})
        monkeypatch.setenv("DLSETS_REGISTRY", str(reg))  # children inherit it
        return bodies

    return make


def _fetch(cache_dir, files) -> None:
    paths = acquire.fetch("toy", files=files, cache_dir=cache_dir, progress=False)
    missing = [f for f, p in paths.items() if not p.is_file()]
    assert not missing, f"fetch returned files that are not there: {missing}"


def _load(cache_dir, n) -> None:
    import dlsets

    ds = dlsets.load("toy", cache_dir=cache_dir, progress=False)
    assert ds.train.images.shape == (n, 28, 28) and int(ds.train.images.sum()) > 0


def _start(target, *args):
    p = multiprocessing.get_context("spawn").Process(target=target, args=args)
    p.start()
    return p


def _removing(root) -> list[str]:
    return [p.name for p in root.iterdir() if ".removing-" in p.name] if root.exists() else []


def test_remove_waits_for_a_running_fetch_then_removes_the_dataset_whole(slow_toy, tmp_path,
                                                                        caplog):
    files = NAMES[:2]
    bodies = slow_toy({f: b for f, b in idx_files(n_train=40).items() if f in files})
    root = tmp_path / "c"
    child = _start(_fetch, root, files)
    part = cache.part_path(cache.file_path("toy", files[0], root))
    try:
        assert wait_for(lambda: part.exists() and part.stat().st_size > 2048, timeout=30)
        with caplog.at_level("WARNING", logger="dlsets"):
            removed = acquire.remove("toy", cache_dir=root)
    finally:
        child.join(30)
    assert removed == root / "toy"
    assert "toy: in use by another process" in caplog.text and "waiting up to 60 s" in caplog.text
    assert child.exitcode == 0  # no traceback, and what it returned was there
    assert _removing(root) == []
    # Whole or not at all: removed after the fetch, or fetched again after the removal.
    d = root / "toy"
    if d.exists():
        got = acquire.cached("toy", cache_dir=root)
        assert {f: p.read_bytes() for f, p in got.items()} == bodies


def test_remove_refuses_with_no_wait_and_gives_up_after_its_wait(slow_toy, tmp_path, capsys):
    [f] = files = NAMES[:1]
    body = slow_toy({f: idx_files(n_train=100)[f]})[f]  # ~80 KB: about 1.6 s to download
    root = tmp_path / "c"
    child = _start(_fetch, root, files)
    part = cache.part_path(cache.file_path("toy", f, root))
    try:
        assert wait_for(lambda: part.exists() and part.stat().st_size > 2048, timeout=30)
        code = main(["remove", "toy", "--no-wait", "--cache-dir", str(root)])
        err = capsys.readouterr().err
        assert code == 1 and "toy is in use by another process" in err
        assert "nothing was removed" in err and "Traceback" not in err
        t0 = time.monotonic()
        with pytest.raises(DlsetsError, match=r"still holds .*\.lock after 0.2 s.*nothing was "
                                              r"removed"):
            acquire.remove("toy", cache_dir=root, wait=0.2)
        assert time.monotonic() - t0 < 3
        assert part.exists()  # the download goes on
    finally:
        child.join(30)
    assert child.exitcode == 0
    assert acquire.cached("toy", cache_dir=root)[f].read_bytes() == body
    assert _removing(root) == []
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(OptionError, match="wait="):
            acquire.remove("toy", cache_dir=root, wait=bad)


def test_remove_during_a_load_waits_for_the_prepare(slow_toy, tmp_path):
    slow_toy(idx_files(n_train=30))
    root = tmp_path / "c"
    child = _start(_load, root, 30)
    lock = root / "toy" / "prepared.lock"
    try:
        assert wait_for(lambda: lock.exists() and any(
            (root / "toy" / "files").glob("*.part")), timeout=30)
        assert acquire.remove("toy", cache_dir=root) == root / "toy"
    finally:
        child.join(30)
    assert child.exitcode == 0  # the load finished with its arrays, no traceback
    assert not (root / "toy").exists() and _removing(root) == []


def test_a_removal_killed_half_way_is_finished_later_and_its_message_is_true(
        tmp_path, monkeypatch):
    import shutil
    import subprocess
    import sys

    root = tmp_path / "c"
    (root / "toy" / "files").mkdir(parents=True)
    (root / "toy" / "files" / "x").write_bytes(b"x" * 100)
    real = shutil.rmtree
    monkeypatch.setattr(shutil, "rmtree", lambda p, *a, **k: (_ for _ in ()).throw(
        PermissionError(13, "Permission denied", str(p))))
    with pytest.raises(DlsetsError) as ei:
        acquire.remove("toy", cache_dir=root)
    monkeypatch.setattr(shutil, "rmtree", real)
    msg = str(ei.value)
    [away] = _removing(root)
    assert "toy is no longer in the cache" in msg and away in msg and "Permission denied" in msg
    assert not (root / "toy").exists()
    # One left by a process that died (kill -9 mid-removal) goes at the next remove or verify.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.rename(root / away, root / f".toy.removing-{atomic.HOST}@{dead.pid}")
    results = acquire.verify(cache_dir=root)
    assert [(r.state, r.dataset) for r in results] == [("cleaned", "toy")]
    assert "100 bytes left by process" in results[0].detail
    assert _removing(root) == []
