"""fetch / cached / verify / remove / status against loopback servers (no network)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dlsets.errors import DlsetsError, DownloadError, OfflineError, OptionError
from dlsets.sources import acquire, builtin_cache, download, registry
from dlsets.sources.registry import DatasetSpec, FileSpec
from dlsets.store import cache
from tests.formats import idx_gz_bytes
from tests.httpserver import file_entry, wait_for, write_registry

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def payload(seed: int, n: int = 40) -> bytes:
    rng = np.random.default_rng(seed)
    return idx_gz_bytes(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))


@pytest.fixture
def toy(server, tmp_path, monkeypatch):
    """A user dataset 'toy' like MNIST: four IDX files served at <server>/reg/<file>."""
    bodies = {f: payload(i, n=10 + 5 * i) for i, f in enumerate(NAMES)}
    files = {f: file_entry(b, [server.add(f"/reg/{f}", b)], md5=True) for f, b in bodies.items()}
    reg = write_registry(tmp_path, {"toy": {"like": "mnist", "files": files}})
    monkeypatch.setenv("DLSETS_REGISTRY", str(reg))
    return bodies


def install(monkeypatch, spec: DatasetSpec) -> None:
    """Add a hand-built spec (what the user schema cannot express) to the registry."""
    real = registry._all
    monkeypatch.setattr(registry, "_all", lambda: {**real(), spec.name: spec})


def spec_like_mnist(name: str, files: dict[str, FileSpec], sets) -> DatasetSpec:
    base = registry.get("mnist")
    return dataclasses.replace(base, name=name, files=files, file_sets=tuple(map(tuple, sets)),
                               builtin=False, source="test")


def fspec(name: str, body: bytes, urls, *, sha=True, md5=False, size=True) -> FileSpec:
    return FileSpec(
        name=name,
        sha256=hashlib.sha256(body).hexdigest() if sha else None,
        md5=hashlib.md5(body).hexdigest() if md5 else None,
        size=len(body) if size else None,
        urls=tuple(urls),
    )


# --- fetch ---------------------------------------------------------------------------------


def test_fetch_downloads_the_default_set_once(toy, server):
    paths = acquire.fetch("toy", progress=False)
    assert list(paths) == NAMES
    for f, p in paths.items():
        assert p == cache.file_path("toy", f) and p.read_bytes() == toy[f]
        assert server.count(f"/reg/{f}") == 1
    assert acquire.cached("toy") == paths
    assert acquire.fetch("toy") == paths
    assert all(server.count(f"/reg/{f}") == 1 for f in NAMES)


def test_files_selects_explicit_files(toy, server):
    paths = acquire.fetch("toy", files=[NAMES[1]])
    assert list(paths) == [NAMES[1]]
    assert acquire.fetch("toy", files=NAMES[1]) == paths  # one name as a plain string
    assert server.count(f"/reg/{NAMES[0]}") == 0
    with pytest.raises(OptionError, match="no file"):
        acquire.fetch("toy", files=["nope.gz"])


def test_mirrors_argument_and_environment_are_tried_first(toy, server, monkeypatch):
    for f, b in toy.items():
        server.add(f"/arg/{f}", b if f != NAMES[0] else b"", status=200 if f != NAMES[0] else 404)
        server.add(f"/env/{f}", b)
    monkeypatch.setenv("DLSETS_MIRROR", server.url("/env") + "  http://127.0.0.1:9/unused/")
    acquire.fetch("toy", mirrors=[server.url("/arg/")])
    # The first file is 404 on the argument mirror, so it came from the environment's.
    assert len(server.requests(f"/arg/{NAMES[0]}")) == 1 and server.count(f"/env/{NAMES[0]}") == 1
    for f in NAMES[1:]:
        assert server.count(f"/arg/{f}") == 1 and server.requests(f"/env/{f}") == []
    assert all(server.requests(f"/reg/{f}") == [] for f in NAMES)


def test_mirror_order_in_the_error(toy, monkeypatch):
    monkeypatch.setenv("DLSETS_OFFLINE", "1")
    with pytest.raises(OfflineError) as ei:
        acquire.fetch("toy", mirrors=["https://a.example/m"])
    msg = str(ei.value)
    assert msg.index("https://a.example/m/" + NAMES[0]) < msg.index("/reg/" + NAMES[0])


def test_offline_fails_listing_exactly_what_is_needed(toy, server, monkeypatch):
    acquire.fetch("toy", files=[NAMES[0]])
    monkeypatch.setenv("DLSETS_OFFLINE", "1")
    with pytest.raises(OfflineError) as ei:
        acquire.fetch("toy")
    msg = str(ei.value)
    assert "3 file(s) missing" in msg and NAMES[0] not in msg.split("Needed:")[1]
    for f in NAMES[1:]:
        b = toy[f]
        assert f in msg and f"{len(b):,} bytes" in msg and hashlib.sha256(b).hexdigest() in msg
        assert server.url(f"/reg/{f}") in msg
    assert "dlsets fetch toy --from DIR" in msg
    assert all(server.count(f"/reg/{f}") == (f == NAMES[0]) for f in NAMES)
    assert acquire.fetch("toy", files=[NAMES[0]])  # a cached file is fine offline


def test_offline_error_names_the_alternative_file_set(monkeypatch, tmp_path):
    # MNIST is four IDX files or keras' mnist.npz: either set will do, so both are named.
    monkeypatch.setenv("DLSETS_OFFLINE", "1")
    npz = registry.get("mnist").files["mnist.npz"]
    with pytest.raises(OfflineError) as ei:
        acquire.fetch("mnist")
    msg = str(ei.value)
    assert "4 file(s) missing" in msg and all(f in msg for f in NAMES)
    alt = msg.split("or, instead:")[1]
    assert "mnist.npz" in alt and npz.sha256 in alt and npz.urls[0] in alt
    assert NAMES[0] not in alt
    with pytest.raises(OfflineError, match="mnist.npz"):
        acquire.fetch("mnist", source_dir=tmp_path)  # the --from failure names it too
    with pytest.raises(OfflineError) as ei:
        acquire.fetch("mnist", files=NAMES)  # explicit files: no alternative to offer
    assert "or, instead" not in str(ei.value) and "mnist.npz" not in str(ei.value)


def test_from_a_folder_that_does_not_exist_fails_whatever_the_cache_holds(toy, tmp_path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(OptionError, match=f"--from {missing}: no such folder"):
        acquire.fetch("toy", source_dir=missing)
    acquire.fetch("toy")
    with pytest.raises(OptionError, match="no such folder"):
        acquire.fetch("toy", source_dir=missing)  # cached, yet the typo is not ignored
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OptionError, match="not a folder"):
        acquire.fetch("toy", source_dir=tmp_path / "a-file")


def test_import_from_folder_by_checksum_not_name(toy, server, tmp_path):
    src = tmp_path / "downloads"
    (src / "deeper").mkdir(parents=True)
    for i, b in enumerate(toy.values()):
        where = src / "deeper" if i % 2 else src
        (where / f"renamed-{i}.bin").write_bytes(b)
    (src / "noise.bin").write_bytes(payload(99))
    (src / (NAMES[0] + ".copy")).write_bytes(b"same name, other bytes")
    paths = acquire.fetch("toy", source_dir=src)
    assert {f: p.read_bytes() for f, p in paths.items()} == toy
    assert server.log == []  # the network was never touched
    assert acquire.cached("toy") == paths


def test_import_incomplete_fails_listing_what_is_missing(toy, server, tmp_path):
    src = tmp_path / "partial"
    src.mkdir()
    (src / "x").write_bytes(toy[NAMES[0]])
    with pytest.raises(OfflineError) as ei:
        acquire.fetch("toy", source_dir=src)
    msg = str(ei.value)
    assert f"imported {NAMES[0]}" in msg
    for f in NAMES[1:]:
        assert f in msg and hashlib.sha256(toy[f]).hexdigest() in msg
    assert server.log == []
    assert cache.file_path("toy", NAMES[0]).read_bytes() == toy[NAMES[0]]


def test_alternative_file_set_is_recognised_and_used(server, tmp_path, monkeypatch):
    # Like MNIST: four IDX files, or keras' mnist.npz (sha256 only, size unknown).
    idx = {f: payload(10 + i, n=5) for i, f in enumerate(NAMES)}
    npz = b"PK\x03\x04 pretend npz " + os.urandom(3000)
    files = {f: fspec(f, b, [server.add(f"/{f}", b)], md5=True) for f, b in idx.items()}
    files["mnist.npz"] = fspec("mnist.npz", npz, [server.add("/mnist.npz", npz)], size=False)
    install(monkeypatch, spec_like_mnist("alt", files, [NAMES, ["mnist.npz"]]))
    keras = tmp_path / "keras" / "datasets"
    keras.mkdir(parents=True)
    (keras / "mnist-old.npz").write_bytes(npz)
    assert list(acquire.fetch("alt", source_dir=keras)) == ["mnist.npz"]
    assert list(acquire.fetch("alt")) == ["mnist.npz"]  # a complete set is cached: no network
    assert server.log == []
    assert list(acquire.fetch("alt", files=NAMES)) == NAMES  # explicit files download
    assert server.count("/mnist.npz") == 0


def test_import_hashes_only_what_can_complete_a_set(server, tmp_path, monkeypatch):
    # MNIST-like: four IDX files of known size, or an npz of unknown size (any file may be it).
    idx = {f: payload(40 + i, n=5) for i, f in enumerate(NAMES)}
    npz = b"PK\x03\x04" + os.urandom(3000)
    files = {f: fspec(f, b, [server.add(f"/{f}", b)], md5=True) for f, b in idx.items()}
    files["mnist.npz"] = fspec("mnist.npz", npz, [server.add("/mnist.npz", npz)], size=False)
    install(monkeypatch, spec_like_mnist("alt", files, [NAMES, ["mnist.npz"]]))
    src = tmp_path / "downloads"
    src.mkdir()
    (src / "a-big-unrelated-file.iso").write_bytes(os.urandom(20_000))
    for i, b in enumerate(idx.values()):
        (src / f"z-{i}.gz").write_bytes(b)
    hashed = []
    real = download.hash_file
    monkeypatch.setattr(download, "hash_file", lambda p, **k: hashed.append(p.name) or real(p, **k))
    assert list(acquire.fetch("alt", source_dir=src)) == NAMES
    assert sorted(hashed) == [f"z-{i}.gz" for i in range(4)]  # the .iso could complete nothing
    assert server.log == []


# --- several processes, killed processes -----------------------------------------------------


def _fetch_in_child(barrier, cache_dir) -> None:
    barrier.wait(timeout=60)
    out = acquire.fetch("toy", cache_dir=cache_dir, progress=False)
    assert all(p.is_file() for p in out.values())


def test_four_processes_download_each_file_once(toy, server, tmp_path):
    for f, b in toy.items():  # slow enough that the processes overlap
        server.add(f"/reg/{f}", b, trickle=(4096, 0.01))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_fetch_in_child, args=(barrier, tmp_path / "c")) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    for f in NAMES:
        assert server.count(f"/reg/{f}") == 1, server.requests(f"/reg/{f}")
        assert cache.file_path("toy", f, tmp_path / "c").read_bytes() == toy[f]


def _fetch_and_rerecord(barrier, cache_dir, file) -> None:
    barrier.wait(timeout=60)
    acquire.fetch("toy", files=[file], cache_dir=cache_dir, progress=False)
    c = builtin_cache._Cache(registry.get("toy"), cache_dir)
    h = download.hash_file(c.path(file), md5=True)
    for _ in range(25):  # many read-modify-writes of verified.json, racing the other processes
        c.forget(file)
        c.record(file, h)


def test_concurrent_state_updates_lose_nothing(toy, server, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_fetch_and_rerecord, args=(barrier, tmp_path / "c", f))
             for f in NAMES]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    records = cache.read_json(cache.verified_path("toy", tmp_path / "c"))
    assert sorted(records) == sorted(NAMES)
    assert all(records[f]["sha256"] == hashlib.sha256(toy[f]).hexdigest() for f in NAMES)
    assert not [p.name for p in cache.dataset_dir("toy", tmp_path / "c").glob("*.tmp")]


def test_a_long_wait_for_another_process_is_reported(toy, monkeypatch, caplog):
    import threading

    from filelock import FileLock

    from dlsets.store import locks

    def hold_and_fetch(file, until):
        dest = cache.file_path("toy", file)
        dest.parent.mkdir(parents=True, exist_ok=True)
        other = FileLock(cache.lock_path(dest))  # another holder (its own descriptor)
        other.acquire()
        out = {}
        t = threading.Thread(target=lambda: out.update(acquire.fetch("toy", files=[file])))
        t.start()
        try:
            seen = wait_for(lambda: until in caplog.text, timeout=10)
            alive = t.is_alive() and not dest.exists()
        finally:
            other.release()
            t.join(10)
        assert seen and alive
        assert out[file].read_bytes() == toy[file]
        return dest

    with caplog.at_level("WARNING", logger="dlsets"):
        # Said at once: with a patience far beyond the wait below, only "at once" is in time.
        monkeypatch.setattr(locks, "LOCK_PATIENCE", 60)
        hold_and_fetch(NAMES[0], "another process is downloading it; waiting")
        assert "still waiting" not in caplog.text
        # And again after the patience, naming the lock file.
        monkeypatch.setattr(locks, "LOCK_PATIENCE", 0.1)
        dest = hold_and_fetch(NAMES[1], "still waiting after 0.1 s")
    assert str(cache.lock_path(dest)) in caplog.text


def _fetch_one(cache_dir, file) -> None:
    acquire.fetch("toy", files=[file], cache_dir=cache_dir,
                                                  progress=False)


def test_killed_download_is_resumed_not_trusted(toy, server, tmp_path):
    f = NAMES[3]
    body = toy[f]
    assert len(body) > 16384
    server.add(f"/reg/{f}", body, trickle=(1024, 0.02))
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_fetch_one, args=(tmp_path / "c", f))
    child.start()
    part = cache.part_path(cache.file_path("toy", f, tmp_path / "c"))
    assert wait_for(lambda: part.exists() and part.stat().st_size >= 4096, timeout=30)
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    assert child.exitcode == -signal.SIGKILL
    have = part.stat().st_size
    assert 0 < have < len(body)
    assert not cache.file_path("toy", f, tmp_path / "c").exists()
    server.add(f"/reg/{f}", body)  # a healthy server now; the lock died with the child
    paths = acquire.fetch("toy", files=[f], cache_dir=tmp_path / "c")
    assert paths[f].read_bytes() == body and not part.exists()
    last = server.requests(f"/reg/{f}")[-1]
    assert last.range == f"bytes={have}-" and last.status == 206
    assert last.sent == len(body) - have


# --- notMNIST-style pins ---------------------------------------------------------------------


def test_md5_only_file_is_pinned_then_enforced(server, monkeypatch):
    body = payload(30)
    url = server.add("/small.tar.gz", body)
    f = fspec("small.tar.gz", body, [url], sha=False, md5=True)
    install(monkeypatch, spec_like_mnist("nm", {f.name: f}, [[f.name]]))
    path = acquire.fetch("nm")[f.name]
    pins = cache.read_json(cache.pins_path("nm"))
    assert pins == {f.name: hashlib.sha256(body).hexdigest()}
    st = {s.file: s for s in acquire.status("nm")}[f.name]
    assert st.verified and st.pinned_sha256 == pins[f.name] and st.sha256 is None
    assert "pinned" in st.describe()
    # From now on the pin is enforced: a download that no longer hashes to it is refused,
    # even though size and md5 (all the registry knows) would be checked as well.
    other = "0" * 64
    acquire.remove("nm")
    cache.write_json(cache.pins_path("nm"), {f.name: other})
    with pytest.raises(DownloadError, match="checksum mismatch.*expected 0000"):
        acquire.fetch("nm")
    assert not path.exists()


def test_md5_only_file_is_not_pinned_when_md5_or_size_fails(server, tmp_path, monkeypatch):
    body = payload(31)
    bad = bytearray(body)
    bad[-10] ^= 0xFF  # same size, other md5
    url = server.add("/small.tar.gz", bytes(bad))
    f = fspec("small.tar.gz", body, [url], sha=False, md5=True)
    install(monkeypatch, spec_like_mnist("nm", {f.name: f}, [[f.name]]))
    with pytest.raises(DownloadError, match="md5 .*, expected " + f.md5):
        acquire.fetch("nm")
    src = tmp_path / "src"
    src.mkdir()
    (src / "same-size.tar.gz").write_bytes(bytes(bad))
    (src / "longer.tar.gz").write_bytes(body + b"x")
    with pytest.raises(OfflineError):
        acquire.fetch("nm", source_dir=src)
    assert not cache.pins_path("nm").exists()
    assert not cache.file_path("nm", f.name).exists()


def test_file_of_unknown_size_downloads_resumes_and_is_checked(server, monkeypatch):
    # Like keras' mnist.npz: the registry has its sha256 but no size.
    body = b"PK\x03\x04" + os.urandom(50_000)
    url = server.add("/mnist.npz", body, drop_after=20_000)
    f = fspec("mnist.npz", body, [url], size=False)
    install(monkeypatch, spec_like_mnist("npz", {f.name: f}, [[f.name]]))
    assert acquire.fetch("npz")[f.name].read_bytes() == body
    assert server.ranges("/mnist.npz") == [None, "bytes=20000-"]
    assert acquire.status("npz")[0].verified
    # A whole part left by a process killed before its rename: no request to know it is done.
    acquire.remove("npz")
    dest = cache.file_path("npz", f.name)
    dest.parent.mkdir(parents=True)
    cache.part_path(dest).write_bytes(body)
    n = len(server.log)
    assert acquire.fetch("npz")[f.name].read_bytes() == body and len(server.log) == n
    acquire.remove("npz")
    server.add("/mnist.npz", body[:-1] + b"!")
    with pytest.raises(DownloadError, match="checksum mismatch"):
        acquire.fetch("npz")
    assert not cache.file_path("npz", f.name).exists()


# --- verify, cached, status, remove ----------------------------------------------------------


def corrupt(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only a hash notices
    path.write_bytes(bytes(data))


def test_verify_detects_and_repairs(toy, server):
    paths = acquire.fetch("toy")
    corrupt(paths[NAMES[2]])
    results = acquire.verify(["toy"])
    by = {r.file: r for r in results}
    assert [by[f].state for f in NAMES] == ["ok", "ok", "repaired", "ok"]
    assert all(r.ok for r in results)
    assert "sha256" in by[NAMES[2]].detail and "toy/" in by[NAMES[2]].describe()
    assert paths[NAMES[2]].read_bytes() == toy[NAMES[2]]
    assert server.count(f"/reg/{NAMES[2]}") == 2


def test_verify_reports_a_repair_once(toy, server, caplog):
    # The CLI prints "repaired: ..." for the result; the log repeats it only with --verbose.
    paths = acquire.fetch("toy")
    corrupt(paths[NAMES[1]])
    with caplog.at_level("INFO", logger="dlsets"):
        results = acquire.verify(["toy"])
    assert [r.state for r in results if r.file == NAMES[1]] == ["repaired"]
    said = [r for r in caplog.records if "failed verification" in r.getMessage()]
    assert [r.levelname for r in said] == ["INFO"]


def test_verify_without_repair_reports_corrupt(toy, server):
    paths = acquire.fetch("toy")
    corrupt(paths[NAMES[0]])
    results = acquire.verify(None, repair=False)  # None: every dataset in the cache
    bad = [r for r in results if not r.ok]
    assert [(r.dataset, r.file, r.state) for r in bad] == [("toy", NAMES[0], "corrupt")]
    assert server.count(f"/reg/{NAMES[0]}") == 1
    assert NAMES[0] not in acquire.cached("toy")


def test_verify_of_an_empty_dataset_reports_missing(toy):
    results = acquire.verify(["toy"])
    assert [r.state for r in results] == ["missing"] * 4
    assert acquire.verify() == []


def test_verified_file_is_not_rehashed(toy, monkeypatch):
    paths = acquire.fetch("toy")
    calls = []
    real = download.hash_file
    monkeypatch.setattr(download, "hash_file", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    assert acquire.fetch("toy") == paths
    assert acquire.cached("toy") == paths
    assert calls == []
    st = paths[NAMES[1]].stat()
    os.utime(paths[NAMES[1]], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: re-hash
    assert acquire.cached("toy") == paths
    assert calls == [paths[NAMES[1]]]
    assert acquire.cached("toy") == paths  # recorded again, so no further hashing
    assert calls == [paths[NAMES[1]]]


def test_a_cached_fetch_reads_the_cache_state_once(toy, monkeypatch):
    paths = acquire.fetch("toy")
    reads = []
    real = cache.read_json
    monkeypatch.setattr(cache, "read_json", lambda p: reads.append(p.name) or real(p))
    assert acquire.fetch("toy") == paths
    assert acquire.cached("toy") == paths
    assert sorted(reads) == ["pins.json", "pins.json", "verified.json", "verified.json"]


def test_changed_file_fails_rehash_and_fetch_repairs_it(toy, server):
    paths = acquire.fetch("toy")
    corrupt(paths[NAMES[3]])
    assert NAMES[3] not in acquire.cached("toy")
    assert acquire.fetch("toy")[NAMES[3]].read_bytes() == toy[NAMES[3]]
    assert server.count(f"/reg/{NAMES[3]}") == 2


def test_a_corrupt_file_is_hashed_once_per_fetch(toy, server, monkeypatch, caplog):
    paths = acquire.fetch("toy")
    corrupt(paths[NAMES[3]])
    calls = []
    real = download.hash_file
    monkeypatch.setattr(download, "hash_file", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    with caplog.at_level("WARNING", logger="dlsets"):
        assert acquire.fetch("toy")[NAMES[3]].read_bytes() == toy[NAMES[3]]
    assert calls == [paths[NAMES[3]]]  # found bad once, then downloaded (hashed as it came)
    assert len([r for r in caplog.records if "failed verification" in r.getMessage()]) == 1
    assert server.count(f"/reg/{NAMES[3]}") == 2


def test_a_cache_that_cannot_be_used_is_one_clear_error(toy, server, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    for call in (lambda: acquire.fetch("toy", cache_dir=blocker / "c"),
                 lambda: acquire.status("toy", cache_dir=blocker / "c")):
        with pytest.raises(DlsetsError, match=r"cache at .*not-a-folder/c cannot be used: Not a "
                                              r"directory .*--cache-dir or DLSETS_CACHE"):
            call()
    assert server.log == []
    assert acquire.cached("toy", cache_dir=blocker / "c") == {}  # nothing cached, no error


def test_verified_file_whose_record_cannot_be_written_is_still_returned(toy, caplog):
    state = cache.verified_path("toy")
    state.mkdir(parents=True)  # a folder where verified.json goes: writing it fails
    with caplog.at_level("WARNING", logger="dlsets"):
        paths = acquire.fetch("toy")
    assert {f: p.read_bytes() for f, p in paths.items()} == toy
    assert "could not be recorded" in caplog.text and "hashed again next time" in caplog.text
    assert acquire.cached("toy") == paths  # re-hashed, still fine


def test_unreadable_file_in_source_folder_is_skipped(toy, tmp_path, monkeypatch, caplog):
    src = tmp_path / "src"
    src.mkdir()
    for i, b in enumerate(toy.values()):
        (src / f"f{i}").write_bytes(b)
    # Sorted first, so it is met before its readable twin f0. chmod cannot make a file
    # unreadable for root (CI runs as root), so the read itself is made to fail.
    locked = src / "a-locked"
    locked.write_bytes(toy[NAMES[0]])
    real = download.hash_file

    def hash_file(p, **k):
        if p == locked:
            raise PermissionError(13, "Permission denied", str(p))
        return real(p, **k)

    monkeypatch.setattr(download, "hash_file", hash_file)
    assert set(acquire.fetch("toy", source_dir=src)) == set(NAMES)
    assert f"{locked}: skipped, it cannot be read (Permission denied)" in caplog.text


def test_a_file_removed_while_being_checked_is_fetched_again(toy, server, monkeypatch):
    # Another process repairing it deletes the file between this one's stat and its hash.
    paths = acquire.fetch("toy")
    corrupt(paths[NAMES[1]])
    real = download.hash_file

    def racing(p, **k):
        monkeypatch.setattr(download, "hash_file", real)
        p.unlink()
        return real(p, **k)

    monkeypatch.setattr(download, "hash_file", racing)
    assert acquire.fetch("toy")[NAMES[1]].read_bytes() == toy[NAMES[1]]
    assert server.count(f"/reg/{NAMES[1]}") == 2


def test_status_and_remove(toy):
    acquire.fetch("toy", files=NAMES[:1])
    sts = acquire.status("toy")
    assert [s.file for s in sts] == NAMES
    assert [(s.present, s.verified) for s in sts] == [(True, True)] + [(False, False)] * 3
    assert sts[0].sha256 == hashlib.sha256(toy[NAMES[0]]).hexdigest()
    assert sts[0].size == len(toy[NAMES[0]]) and sts[0].md5
    assert "verified" in sts[0].describe() and "not downloaded" in sts[1].describe()
    d = acquire.remove("toy")
    assert d == cache.dataset_dir("toy") and not d.exists()
    assert acquire.remove("toy") is None
    with pytest.raises(OptionError):
        acquire.remove("../x")


def test_an_offline_verify_keeps_a_damaged_file_for_a_later_verify_to_repair(toy, server,
                                                                            monkeypatch):
    paths = acquire.fetch("toy")
    corrupt(paths[NAMES[2]])
    monkeypatch.setenv("DLSETS_OFFLINE", "1")
    [bad] = [r for r in acquire.verify(["toy"]) if not r.ok]
    assert (bad.file, bad.state) == (NAMES[2], "failed")
    assert "network is forbidden" in bad.detail and "damaged file is kept" in bad.detail
    assert NAMES[2] not in acquire.cached("toy")  # kept, yet never used unverified
    monkeypatch.delenv("DLSETS_OFFLINE")
    by = {r.file: r.state for r in acquire.verify(["toy"])}
    assert by == {**dict.fromkeys(NAMES, "ok"), NAMES[2]: "repaired"}
    assert paths[NAMES[2]].read_bytes() == toy[NAMES[2]]


def test_verify_restores_a_verified_file_that_went_missing(toy, server):
    paths = acquire.fetch("toy")
    paths[NAMES[1]].unlink()
    results = acquire.verify(None, repair=False)
    assert [(r.file, r.state) for r in results if not r.ok] == [(NAMES[1], "missing")]
    assert not paths[NAMES[1]].exists()  # no repair: nothing changed
    by = {r.file: r for r in acquire.verify(None)}
    assert by[NAMES[1]].state == "repaired" and "missing" in by[NAMES[1]].detail
    assert paths[NAMES[1]].read_bytes() == toy[NAMES[1]]
    assert server.count(f"/reg/{NAMES[1]}") == 2


def test_fetch_says_per_file_whether_it_downloaded_imported_or_found_it(toy, server, tmp_path):
    cut = NAMES[0]
    server.add(f"/reg/{cut}", toy[cut], drop_after=1000)
    got = acquire.fetch("toy", progress=False)
    d = got.details
    assert all(d[f].action == "downloaded" for f in NAMES)
    assert d[NAMES[1]].received == len(toy[NAMES[1]]) == d[NAMES[1]].size
    assert d[NAMES[1]].source == server.url(f"/reg/{NAMES[1]}") and d[NAMES[1]].seconds > 0
    assert f"downloaded {len(toy[NAMES[1]]):,} bytes in" in d[NAMES[1]].describe()
    assert d[cut].received == len(toy[cut])  # the first try's 1000 bytes and the rest
    again = acquire.fetch("toy")
    assert [o.action for o in again.details.values()] == ["cached"] * 4
    assert again.details[NAMES[0]].describe() == f"{NAMES[0]}: cached -> {got[NAMES[0]]}"
    acquire.remove("toy")
    acquire.fetch("toy", files=[NAMES[3]])
    part = cache.part_path(cache.file_path("toy", NAMES[0]))
    part.write_bytes(toy[NAMES[0]][:500])
    resumed = acquire.fetch("toy", files=[NAMES[0]]).details[NAMES[0]]
    assert resumed.received == len(toy[NAMES[0]]) - 500 and "resumed at byte 500" in resumed.note
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.gz").write_bytes(toy[NAMES[2]])
    mixed = acquire.fetch("toy", files=[NAMES[2], NAMES[3]], source_dir=src).details
    assert mixed[NAMES[2]].action == "imported" and mixed[NAMES[2]].source == str(src / "x.gz")
    assert mixed[NAMES[2]].describe().startswith(f"{NAMES[2]}: imported {len(toy[NAMES[2]]):,}")
    assert mixed[NAMES[3]].action == "cached"


_IMPORT_DISK_FULL = textwrap.dedent("""
    import json, resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so a write past the limit raises EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
    from dlsets.errors import DlsetsError
    from dlsets.sources.acquire import fetch
    try:
        fetch("toy", source_dir=sys.argv[1], progress=False)
    except DlsetsError as exc:
        print(json.dumps([type(exc).__name__, str(exc)]))
""")


def test_an_import_onto_a_full_disk_says_exactly_what_was_imported(server, tmp_path,
                                                                  monkeypatch):
    sizes = dict(zip(NAMES, (5, 5, 40, 5), strict=True))  # the third does not fit in 20 KB
    bodies = {f: payload(60 + i, n=sizes[f]) for i, f in enumerate(NAMES)}
    files = {f: file_entry(b, [server.add(f"/{f}", b)]) for f, b in bodies.items()}
    monkeypatch.setenv("DLSETS_REGISTRY", str(write_registry(tmp_path, {
        "toy": {"like": "mnist", "files": files}})))
    src = tmp_path / "src"
    src.mkdir()
    for i, (f, b) in enumerate(bodies.items()):
        (src / f"{i}-{f}").write_bytes(b)  # imported in this order
    out = subprocess.run([sys.executable, "-c", _IMPORT_DISK_FULL, str(src)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    kind, msg = json.loads(out.stdout.strip().splitlines()[-1])
    assert kind == "DlsetsError" and "File too large" in msg and "nothing was imported" not in msg
    assert f"copying {src / ('2-' + NAMES[2])} into the cache as {NAMES[2]} failed" in msg
    assert f"Imported before that, verified and kept in the cache: {NAMES[0]}, {NAMES[1]}" in msg
    assert f"not imported: {NAMES[2]}, {NAMES[3]}" in msg
    assert set(acquire.cached("toy")) == {NAMES[0], NAMES[1]}
    assert [p.name for p in cache.files_dir("toy").iterdir() if p.name.startswith(".")] == []
    assert server.log == []


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temporaries_of_dead_processes_are_cleaned_and_verify_reports_them(toy, server,
                                                                          tmp_path):
    from dlsets.store import atomic

    acquire.fetch("toy", files=[NAMES[0]])
    d = cache.dataset_dir("toy")
    dead = _dead_pid()
    me = f"{atomic.HOST}@{os.getpid()}"
    junk = {
        d / "files" / f".{NAMES[1]}.import-{atomic.HOST}@{dead}": 5000,  # fetch --from
        d / "files" / f".{NAMES[2]}.import-{dead}": 300,  # the same, named by dlsets 0.1
        d / "prepared" / f".x.npy.{atomic.HOST}@{dead}-7.tmp": 20,  # an atomic write
        d / "prepared" / "hdf5" / f".uint8.h5.{dead}-7.tmp": 4000,  # 0.1's atomic write
    }
    alive = d / "files" / f".{NAMES[3]}.import-{me}"  # this process: live, never touched
    other = d / "files" / f".{NAMES[3]}.import-elsewhere@{dead}"  # another host's: unknown
    for p, n in {**junk, alive: 10, other: 10}.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\0" * n)
    results = acquire.verify(["toy"], repair=False)
    left = {r.path: r for r in results if r.state == "leftover"}
    assert set(left) == {*junk, other} and all(p.exists() for p in junk)
    assert f"5,000 bytes left by process {dead} on this host, which is gone" in \
        left[next(iter(junk))].detail
    assert "host elsewhere" in left[other].detail and left[other].detail.endswith("; kept")
    assert all(r.ok for r in results if r.state == "leftover")
    results = acquire.verify(["toy"])
    assert {r.path for r in results if r.state == "cleaned"} == set(junk)
    assert not any(p.exists() for p in junk) and alive.exists() and other.exists()
    # The next fetch that has work to do cleans the dataset's folders too.
    stale = [d / "files" / f".{NAMES[1]}.import-{atomic.HOST}@{dead}",
             d / f".verified.json.{atomic.HOST}@{dead}-7.tmp"]
    for p in stale:
        p.write_bytes(b"x")
    acquire.fetch("toy", files=[NAMES[1]])
    assert not any(p.exists() for p in stale) and alive.exists()
