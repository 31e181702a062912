"""The cache decision and the HTTP transport, against loopback servers (no network)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from dlsets.errors import ChecksumError, DlsetsError, DownloadError, OptionError
from dlsets.sources import acquire, download, http_transfer
from dlsets.store import cache
from tests.formats import idx_gz_bytes
from tests.httpserver import Server, file_entry, write_registry

ROOT = Path(__file__).resolve().parents[1]


def payload(seed: int, n: int = 60) -> bytes:
    """A real gzip'd IDX file of random pixels (~n * 800 bytes; random bytes barely compress)."""
    rng = np.random.default_rng(seed)
    return idx_gz_bytes(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))


@pytest.fixture
def register(tmp_path, monkeypatch):
    """register(files={name: entry}) -> writes a user registry with dataset 'toy' and enables it."""

    def make(files: dict, name: str = "toy") -> str:
        reg = write_registry(tmp_path, {name: {"like": "mnist", "files": files}})
        monkeypatch.setenv("DLSETS_REGISTRY", str(reg))
        return name

    return make


def cached_file(name: str, file: str) -> Path:
    return cache.file_path(name, file)


# --- the decision, alone -------------------------------------------------------------------

SHA = "a" * 64
REC = {"size": 10, "mtime_ns": 5, "sha256": SHA}


@pytest.mark.parametrize(
    ("kw", "want"),
    [
        ({"present": True, "stat": (10, 5), "record": REC}, cache.USE),
        ({"present": True, "stat": (10, 6), "record": REC}, cache.REHASH),  # touched since
        ({"present": True, "stat": (11, 5), "record": REC}, cache.REHASH),  # grew since
        ({"present": True, "stat": (10, 5), "record": None}, cache.REHASH),  # never verified
        ({"present": True, "stat": (10, 5), "record": {**REC, "sha256": "b" * 64}}, cache.REHASH),
        ({"present": True, "stat": (10, 5), "record": REC, "expected_sha256": None},
         cache.REHASH),  # md5-only file not pinned yet
        ({"present": False, "stat": None, "record": REC}, cache.DOWNLOAD),
        ({"present": False, "stat": None, "record": None, "part_exists": True}, cache.RESUME),
        ({"present": False, "stat": None, "record": None, "network": False}, cache.MISSING),
        ({"present": True, "stat": (10, 5), "record": REC, "network": False}, cache.USE),
    ],
)
def test_cache_action(kw, want):
    args = {"expected_sha256": SHA, "part_exists": False, "network": True, **kw}
    assert cache.cache_action(**args) == want


def test_write_json_is_atomic_and_read_json_tolerates_garbage(tmp_path, monkeypatch):
    p = tmp_path / "d" / "state.json"
    cache.write_json(p, {"x": 1})
    assert json.loads(p.read_text()) == {"x": 1}
    assert [q.name for q in p.parent.iterdir()] == ["state.json"]
    # A write that fails half-way (here: text that cannot be encoded) leaves the old content:
    # a plain write_text would have truncated the file before failing.
    monkeypatch.setattr(cache.json, "dumps", lambda *a, **k: '{"x": 2, "y": "\ud800"}')
    with pytest.raises(UnicodeEncodeError):
        cache.write_json(p, {"x": 2})
    monkeypatch.undo()
    assert json.loads(p.read_text()) == {"x": 1}
    assert [q.name for q in p.parent.iterdir()] == ["state.json"]
    p.write_text("{not json")
    assert cache.read_json(p) == {}
    assert cache.read_json(tmp_path / "absent.json") == {}


# --- transport through fetch() --------------------------------------------------------------


def test_success_writes_verified_file_and_record(server, register):
    body = payload(1)
    url = server.add("/a.gz", body)
    name = register({"a.gz": file_entry(body, [url], md5=True)})
    paths = acquire.fetch(name, progress=False)
    assert paths == {"a.gz": cached_file(name, "a.gz")}
    assert paths["a.gz"].read_bytes() == body
    assert not cache.part_path(paths["a.gz"]).exists()
    rec = cache.read_json(cache.verified_path(name))["a.gz"]
    assert rec["sha256"] == hashlib.sha256(body).hexdigest()
    assert rec["size"] == len(body)
    assert server.count("/a.gz") == 1
    acquire.fetch(name, progress=False)  # second call: from the cache, no request
    assert len(server.requests("/a.gz")) == 1


def test_503_then_success(server, register):
    body = payload(2)
    url = server.add("/a.gz", body, statuses=[503, 503])
    name = register({"a.gz": file_entry(body, [url])})
    assert acquire.fetch(name)["a.gz"].read_bytes() == body
    assert [r.status for r in server.requests("/a.gz")] == [503, 503, 200]


def test_retry_after_is_honoured_within_the_cap(server, register, monkeypatch):
    body = payload(3, n=5)
    url = server.add("/a.gz", body, statuses=[429], retry_after="1")
    name = register({"a.gz": file_entry(body, [url])})
    t0 = time.monotonic()
    acquire.fetch(name)
    assert time.monotonic() - t0 >= 0.9
    monkeypatch.setattr(download, "RETRY_AFTER_CAP", 0.05)
    acquire.remove(name)
    server.add("/a.gz", body, statuses=[503], retry_after="3600")
    t0 = time.monotonic()
    acquire.fetch(name)
    assert time.monotonic() - t0 < 2


def test_all_sources_failing_gives_one_error_listing_each(server, register):
    body = payload(4, n=5)
    u1 = server.add("/m1/a.gz", body, status=503)
    u2 = server.add("/m2/a.gz", status=404)
    name = register({"a.gz": file_entry(body, [u1, u2])})
    with pytest.raises(DownloadError) as ei:
        acquire.fetch(name)
    msg = str(ei.value)
    assert f"{u1}: HTTP 503" in msg and f"({download.MAX_ATTEMPTS} attempts)" in msg
    assert f"{u2}: HTTP 404" in msg
    assert hashlib.sha256(body).hexdigest() in msg and f"{len(body):,} bytes" in msg
    for hint in ("--mirror URL", "--from DIR", "DLSETS_MIRROR"):
        assert hint in msg
    assert len(server.requests("/m1/a.gz")) == download.MAX_ATTEMPTS
    assert len(server.requests("/m2/a.gz")) == 1  # a 404 is not retried
    assert not cached_file(name, "a.gz").exists()


def test_404_on_first_mirror_moves_on(server, register):
    body = payload(5)
    u1 = server.add("/m1/a.gz", status=404)
    u2 = server.add("/m2/a.gz", body)
    name = register({"a.gz": file_entry(body, [u1, u2])})
    assert acquire.fetch(name)["a.gz"].read_bytes() == body
    assert len(server.requests("/m1/a.gz")) == 1 and server.count("/m2/a.gz") == 1


def test_wrong_bytes_on_first_mirror_right_on_second(server, register):
    body = payload(6)
    u1 = server.add("/m1/a.gz", payload(7))
    u2 = server.add("/m2/a.gz", body)
    name = register({"a.gz": file_entry(body, [u1, u2], md5=True)})
    assert acquire.fetch(name)["a.gz"].read_bytes() == body
    assert server.count("/m1/a.gz") == 1 and server.count("/m2/a.gz") == 1


def test_wrong_bytes_everywhere_never_appear_under_the_final_name(server, register):
    body, bad = payload(8), payload(9)
    u1 = server.add("/a.gz", bad)
    entry = {**file_entry(body, [u1]), "size": len(bad)}  # same size: only the hash can tell
    name = register({"a.gz": entry})
    with pytest.raises(DownloadError, match="checksum mismatch") as ei:
        acquire.fetch(name)
    assert hashlib.sha256(bad).hexdigest() in str(ei.value)
    dest = cached_file(name, "a.gz")
    assert not dest.exists() and not cache.part_path(dest).exists()


def test_dropped_connection_resumes_with_range(server, register, monkeypatch):
    body = payload(10)
    cut = len(body) // 3
    url = server.add("/a.gz", body, drop_after=cut)
    name = register({"a.gz": file_entry(body, [url])})
    rehashed = []
    real_feed = http_transfer._feed
    monkeypatch.setattr(http_transfer, "_feed", lambda h, f: rehashed.append(f) or real_feed(h, f))
    assert acquire.fetch(name)["a.gz"].read_bytes() == body
    assert rehashed == []  # in the same process the prefix's hashes are carried over
    reqs = server.requests("/a.gz")
    assert [r.range for r in reqs] == [None, f"bytes={cut}-"]
    assert [r.status for r in reqs] == [200, 206]
    assert [r.sent for r in reqs] == [cut, len(body) - cut]  # only the rest was sent again


def test_server_ignoring_range_starts_over(server, register):
    body = payload(11)
    cut = len(body) // 2
    url = server.add("/a.gz", body, drop_after=cut, ignore_range=True)
    name = register({"a.gz": file_entry(body, [url])})
    assert acquire.fetch(name)["a.gz"].read_bytes() == body
    reqs = server.requests("/a.gz")
    assert [r.range for r in reqs] == [None, f"bytes={cut}-"]
    assert [r.status for r in reqs] == [200, 200] and reqs[1].sent == len(body)


def test_206_at_the_wrong_offset_is_not_appended(server, register):
    body = payload(21)
    cut = len(body) // 2
    url = server.add("/a.gz", body, drop_after=cut, range_shift=100)
    name = register({"a.gz": file_entry(body, [url])})
    assert acquire.fetch(name)["a.gz"].read_bytes() == body
    reqs = server.requests("/a.gz")
    assert [r.range for r in reqs] == [None, f"bytes={cut}-", None]  # refused, then from 0
    assert reqs[1].status == 206 and reqs[2].status == 200


def test_resumed_prefix_with_bad_bytes_is_redone_from_zero(server, register):
    # A .part left by an earlier run is only trusted as far as the final hash: when that fails,
    # the whole file is fetched again from byte 0 before the URL is given up.
    body = payload(12)
    url = server.add("/a.gz", body)
    name = register({"a.gz": file_entry(body, [url])})
    dest = cached_file(name, "a.gz")
    dest.parent.mkdir(parents=True)
    cache.part_path(dest).write_bytes(b"\0" * 100)  # wrong prefix: the hash will fail
    assert acquire.fetch(name)["a.gz"].read_bytes() == body
    reqs = server.requests("/a.gz")
    assert reqs[0].range == "bytes=100-" and reqs[-1].range is None  # started over from 0


def test_short_body_is_an_interrupted_transfer_never_a_finished_one(server, tmp_path):
    # No size or hash to compare with: only Content-Length says the body is short.
    body = payload(13)
    url = server.add("/a.gz", body, extra_length=1000)
    dest = tmp_path / "a.gz"
    with pytest.raises(DownloadError, match=r"416|interrupted|closed after"):
        download.download_file([url], dest, sha256=None, progress_bar=False)
    assert not dest.exists()
    assert server.requests("/a.gz")[0].sent == len(body)  # all bytes came, yet not "finished"
    assert len(server.requests("/a.gz")) <= download.MAX_ATTEMPTS + 1


def test_content_length_longer_than_registry_size_is_refused(server, register):
    body = payload(14)
    u1 = server.add("/m1/a.gz", body, extra_length=10)
    u2 = server.add("/m2/a.gz", body)
    name = register({"a.gz": file_entry(body, [u1, u2])})
    assert acquire.fetch(name)["a.gz"].read_bytes() == body
    assert len(server.requests("/m1/a.gz")) == 1  # the announced size is wrong: no retry


def test_stalled_server_times_out(server, register, monkeypatch):
    monkeypatch.setenv("DLSETS_TIMEOUT", "0.2")
    body = payload(15)
    u1 = server.add("/m1/a.gz", body, stall=30)
    u2 = server.add("/m2/a.gz", body)
    name = register({"a.gz": file_entry(body, [u1, u2])})
    t0 = time.monotonic()
    assert acquire.fetch(name)["a.gz"].read_bytes() == body
    assert time.monotonic() - t0 < 10
    stalled = server.requests("/m1/a.gz")
    assert len(stalled) == download.MAX_ATTEMPTS and all(r.sent == 0 for r in stalled)
    with pytest.raises(DownloadError, match=r"read timed out .*DLSETS_TIMEOUT"):
        download.download_file([u1], cached_file(name, "b.gz"), sha256=None)


@pytest.fixture
def https_server(tmp_path, monkeypatch):
    with Server(https=True) as srv:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", srv.ca_bundle(tmp_path))
        yield srv


def test_https_download(https_server, register):
    body = payload(16)
    url = https_server.add("/a.gz", body, drop_after=1000)
    assert url.startswith("https://")
    name = register({"a.gz": file_entry(body, [url])})
    assert acquire.fetch(name)["a.gz"].read_bytes() == body
    assert https_server.ranges("/a.gz") == [None, "bytes=1000-"]


def test_https_to_http_redirect_is_refused(https_server, server, register):
    body = payload(17)
    plain = server.add("/a.gz", body)
    secure = https_server.add("/a.gz", redirect=plain)
    name = register({"a.gz": file_entry(body, [secure])})
    with pytest.raises(DownloadError) as ei:
        acquire.fetch(name)
    msg = str(ei.value)
    assert "refused the redirect" in msg and secure in msg and plain in msg
    assert server.requests("/a.gz") == []  # nothing was fetched over http
    assert not cached_file(name, "a.gz").exists()


def test_http_redirects_are_followed(server, register):
    body = payload(18)
    target = server.add("/real/a.gz", body)
    url = server.add("/old/a.gz", redirect=target)
    name = register({"a.gz": file_entry(body, [url])})
    assert acquire.fetch(name)["a.gz"].read_bytes() == body


def test_proxy_from_the_environment_is_used(server, register, monkeypatch):
    for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url(""))
    body = payload(22)
    server.add("/a.gz", body)
    url = "http://dataset-host.invalid/a.gz"  # resolvable only by the proxy
    name = register({"a.gz": file_entry(body, [url])})
    assert acquire.fetch(name)["a.gz"].read_bytes() == body
    assert [r.target for r in server.requests("/a.gz")] == [url]


def test_unreachable_host_is_retried_then_reported(register, monkeypatch):
    with Server() as srv:
        dead = srv.url("/a.gz")  # the port is closed once the server is gone
    body = payload(19, n=2)
    name = register({"a.gz": file_entry(body, [dead])})
    with pytest.raises(DownloadError, match=rf"{dead}: .*\({download.MAX_ATTEMPTS} attempts\)"):
        acquire.fetch(name)


def _no_proxy(monkeypatch):
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def test_unresolvable_host_costs_one_attempt_and_moves_on(server, tmp_path, monkeypatch, caplog):
    # A DNS failure does not heal in seconds: no retries, no backoff, on to the next URL.
    # Name resolution fails here by itself (no resolver asked, so no DNS timing involved).
    import socket

    _no_proxy(monkeypatch)
    monkeypatch.setenv("DLSETS_RETRY_BASE", "1")  # a retry would also show as a long wait
    real = socket.getaddrinfo
    lookups = []

    def getaddrinfo(host, *args, **kwargs):
        if host == "dlsets-test.invalid":
            lookups.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    body = payload(26, n=2)
    good = server.add("/a.gz", body)
    nowhere = "http://dlsets-test.invalid/a.gz"
    sha = hashlib.sha256(body).hexdigest()
    with caplog.at_level("INFO", logger="dlsets"):
        h = download.download_file([nowhere, good], tmp_path / "a.gz", sha256=sha)
    assert h.size == len(body)
    assert lookups == ["dlsets-test.invalid"]  # one attempt, not retried
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
    with pytest.raises(DownloadError) as ei:
        download.download_file([nowhere], tmp_path / "b.gz", sha256=sha)
    msg = str(ei.value)
    assert f"{nowhere}: cannot resolve dlsets-test.invalid" in msg and "attempts" not in msg
    assert "check the connection" not in msg  # no hint given here, none invented
    assert len(lookups) == 2


def test_each_failure_is_logged_at_info_and_reported_once(server, register, caplog):
    u1 = server.add("/m1/a.gz", status=404)
    u2 = server.add("/m2/a.gz", status=410)
    name = register({"a.gz": file_entry(payload(27, n=2), [u1, u2])})
    with caplog.at_level("INFO", logger="dlsets"), pytest.raises(DownloadError) as ei:
        acquire.fetch(name)
    assert f"{u1}: HTTP 404" in str(ei.value) and f"{u2}: HTTP 410" in str(ei.value)
    loud = [r.getMessage() for r in caplog.records if r.levelname != "INFO"]
    assert not [m for m in loud if u1 in m or u2 in m], loud  # said once: in the error
    quiet = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
    assert [m for m in quiet if u1 in m] and [m for m in quiet if u2 in m]  # with --verbose


def test_wrong_bytes_from_every_source_is_a_checksum_error(server, register, tmp_path):
    body = payload(28)
    u1 = server.add("/m1/a.gz", payload(29))
    u2 = server.add("/m2/a.gz", payload(29, n=3))  # other size: announced, refused at once
    name = register({"a.gz": file_entry(body, [u1, u2])})
    with pytest.raises(ChecksumError) as ei:
        acquire.fetch(name)
    msg = str(ei.value)
    assert hashlib.sha256(body).hexdigest() in msg  # expected...
    assert hashlib.sha256(payload(29)).hexdigest() in msg  # ...and got
    assert f"{u2}: announces" in msg
    assert "other bytes than the registry expects" in msg and "changed upstream" in msg
    assert "proxy" in msg and f"dlsets fetch {name} --from DIR" in msg
    assert str(tmp_path / "registry.json") in msg and "sha256" in msg.split("What you can do")[1]
    assert "check the connection" not in msg
    # One source failing otherwise: the connection may be the problem, the usual hint stays.
    server.add("/m2/a.gz", status=503)
    with pytest.raises(DownloadError) as ei:
        acquire.fetch(name)
    assert not isinstance(ei.value, ChecksumError) and "check the connection" in str(ei.value)


_DISK_FULL = textwrap.dedent("""
    import json, resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so a write past the limit raises EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
    from dlsets.errors import DlsetsError
    from dlsets.sources.acquire import fetch
    try:
        fetch("toy", progress=False)
    except DlsetsError as exc:
        print(json.dumps([type(exc).__name__, str(exc)]))
    else:
        print(json.dumps(["none", ""]))
""")


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_disk_full_leaves_nothing_under_the_final_name(server, register):
    body = payload(20, n=100)
    assert len(body) > 40000
    url = server.add("/a.gz", body)
    name = register({"a.gz": file_entry(body, [url])})
    out = subprocess.run([sys.executable, "-c", _DISK_FULL], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    kind, msg = json.loads(out.stdout.strip().splitlines()[-1])
    assert kind == "DlsetsError"
    assert "writing" in msg and "File too large" in msg and "nothing was written" in msg
    dest = cached_file(name, "a.gz")
    assert not dest.exists() and not cache.part_path(dest).exists()
    assert server.count("/a.gz") == 1  # a write error is not retried, nor tried elsewhere


def test_hashes_one_pass_matches_hashlib(tmp_path):
    data = os.urandom(3 * download.CHUNK + 17)
    p = tmp_path / "x"
    p.write_bytes(data)
    h = download.hash_file(p, md5=True)
    assert (h.sha256, h.md5, h.size) == (
        hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest(), len(data))
    assert download.hash_file(p).md5 is None


def test_retry_base_reads_the_environment(monkeypatch):
    monkeypatch.setenv("DLSETS_RETRY_BASE", "0.25")
    assert download.retry_base() == 0.25
    monkeypatch.setenv("DLSETS_RETRY_BASE", "junk")
    with pytest.raises(OptionError, match="DLSETS_RETRY_BASE='junk' is not a number"):
        download.retry_base()
    monkeypatch.setenv("DLSETS_RETRY_BASE", "1")
    assert download._delay(3, None) <= 4 * 1.5
    assert download._delay(1, 1e9) == download.RETRY_AFTER_CAP


def test_errors_are_dlsets_errors():
    assert issubclass(DownloadError, DlsetsError)
    assert issubclass(ChecksumError, DownloadError)  # `except DownloadError` still catches it


def test_a_mirror_that_is_not_an_http_url_fails_at_once(server, register, monkeypatch):
    body = payload(23, n=2)
    url = server.add("/a.gz", body)
    name = register({"a.gz": file_entry(body, [url])})
    monkeypatch.setenv("DLSETS_RETRY_BASE", "5")  # a retry would show as a long wait
    t0 = time.monotonic()
    with pytest.raises(OptionError, match=r"--mirror 'example.com/data' is not an http\(s\)"):
        acquire.fetch(name, mirrors=["example.com/data"])
    monkeypatch.setenv("DLSETS_MIRROR", "ftp://example.com/data")
    with pytest.raises(OptionError, match="DLSETS_MIRROR 'ftp://example.com/data'"):
        acquire.fetch(name)
    assert server.log == [] and time.monotonic() - t0 < 2
    monkeypatch.delenv("DLSETS_MIRROR")
    acquire.fetch(name)
    monkeypatch.setenv("DLSETS_MIRROR", "ftp://example.com/data")
    assert acquire.fetch(name)  # cached: a bad mirror setting does not matter


def test_a_url_without_http_scheme_is_skipped_not_retried(server, tmp_path, monkeypatch):
    body = payload(24, n=2)
    url = server.add("/a.gz", body)
    monkeypatch.setenv("DLSETS_RETRY_BASE", "5")
    t0 = time.monotonic()
    h = download.download_file(["example.com/a.gz", "file:///etc/passwd", url],
                               tmp_path / "a.gz", sha256=hashlib.sha256(body).hexdigest())
    assert h.size == len(body) and time.monotonic() - t0 < 2


_ON_A_TERMINAL = textwrap.dedent("""
    import sys
    from dlsets.sources.acquire import fetch
    assert sys.stderr.isatty()
    fetch("toy", files=["quiet.gz"], progress=False)
    fetch("toy", files=["shown.gz"])  # progress=None: a bar, as stderr is a terminal
""")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_progress_bar_on_a_terminal_only(server, register, capfd):
    import fcntl
    import pty
    import struct
    import termios

    bodies = {f: payload(30 + i, n=20) for i, f in enumerate(("quiet.gz", "shown.gz", "pipe.gz"))}
    name = register({f: file_entry(b, [server.add(f"/{f}", b)]) for f, b in bodies.items()})
    leader, follower = pty.openpty()
    # A terminal 100 columns wide (a fresh pseudo-terminal has 0, and tqdm draws nothing).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = subprocess.run([sys.executable, "-c", _ON_A_TERMINAL], cwd=ROOT, stderr=follower,
                              stdout=subprocess.PIPE, timeout=60, env=os.environ.copy())
        os.close(follower)
        follower = -1
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal has no writer left
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert proc.returncode == 0, shown.decode(errors="replace")
    text = shown.decode(errors="replace")
    assert f"{name}/shown.gz" in text and "B/s" in text
    assert "quiet.gz" not in text
    capfd.readouterr()
    acquire.fetch(name, files=["pipe.gz"])  # stderr captured by pytest: not a terminal
    assert capfd.readouterr().err == ""


def test_a_failed_rename_keeps_the_verified_part_and_says_what_to_do(server, tmp_path):
    body = payload(25, n=3)
    url = server.add("/a.gz", body)
    dest = tmp_path / "a.gz"
    (dest / "in-the-way").mkdir(parents=True)  # a non-empty folder under the final name
    sha = hashlib.sha256(body).hexdigest()
    with pytest.raises(DlsetsError, match=r"could not move .*kept there.*free the name") as ei:
        download.download_file([url], dest, sha256=sha, size=len(body))
    assert str(dest) in str(ei.value)
    assert cache.part_path(dest).read_bytes() == body
    (dest / "in-the-way").rmdir()
    dest.rmdir()
    download.download_file([url], dest, sha256=sha, size=len(body))
    assert dest.read_bytes() == body and server.count("/a.gz") == 1  # the part was used


# --- slow and stalling sources, deadlines, settings ------------------------------------------


@pytest.fixture
def second_server():
    """Another loopback server: another host, as far as leaving a slow source goes."""
    with Server() as srv:
        yield srv


def _slow_policy(monkeypatch, rate="50000", window="0.5", timeout="0.2"):
    monkeypatch.setenv("DLSETS_MIN_RATE", rate)
    monkeypatch.setenv("DLSETS_RATE_WINDOW", window)
    monkeypatch.setenv("DLSETS_TIMEOUT", timeout)


def _leaving(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelname == "WARNING" and "leaving" in r.getMessage()]


def test_a_mirror_that_trickles_then_stalls_is_left_and_tried_last(
        server, second_server, register, monkeypatch, caplog):
    # 1 KiB per request, then silence past the read timeout: every try "makes progress", so
    # only the rate over the window can tell that this source will never deliver.
    _slow_policy(monkeypatch)
    bodies = {f: payload(40 + i, n=20) for i, f in enumerate(("a.gz", "b.gz"))}
    for f, b in bodies.items():
        server.add(f"/{f}", b, stall_after=1024, stall=30)
        second_server.add(f"/{f}", b)
    name = register({f: file_entry(b, [server.url(f"/{f}"), second_server.url(f"/{f}")])
                     for f, b in bodies.items()})
    t0 = time.monotonic()
    with caplog.at_level("WARNING", logger="dlsets"):
        paths = acquire.fetch(name, progress=False)
    assert time.monotonic() - t0 < 10
    assert {f: p.read_bytes() for f, p in paths.items()} == bodies
    stalled = server.requests("/a.gz")
    assert 1 <= len(stalled) <= 4, [(r.range, r.sent) for r in stalled]  # not 50 tries
    # The next source continued the partial file instead of starting over.
    assert second_server.ranges("/a.gz") == [f"bytes={1024 * len(stalled)}-"]
    # Left once, said once (at warning level, so the CLI shows it), with the reason.
    said = _leaving(caplog)
    assert len(said) == 1 and server.url("/a.gz") in said[0] and "too slow" in said[0]
    assert second_server.url("/a.gz") in said[0]
    # For the next file of the same fetch, the slow host comes last: it is never asked.
    assert server.requests("/b.gz") == [] and second_server.count("/b.gz") == 1


def test_a_crawling_mirror_is_left_after_one_window(server, second_server, register,
                                                   monkeypatch, caplog):
    _slow_policy(monkeypatch)
    body = payload(42, n=50)  # ~40 KB: 4 s at the crawl's 10 kB/s
    crawl = server.add("/a.gz", body, trickle=(500, 0.05))
    good = second_server.add("/a.gz", body)
    name = register({"a.gz": file_entry(body, [crawl, good])})
    t0 = time.monotonic()
    with caplog.at_level("WARNING", logger="dlsets"):
        got = acquire.fetch(name, progress=False)
    assert time.monotonic() - t0 < 3
    assert got["a.gz"].read_bytes() == body
    outcome = got.details["a.gz"]  # both sources' bytes came over the network now
    assert outcome.received == len(body) and outcome.source == good and not outcome.note
    [slow] = server.requests("/a.gz")
    [rest] = second_server.requests("/a.gz")
    start = int(rest.range.removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= slow.sent < len(body)
    said = _leaving(caplog)
    assert len(said) == 1 and "too slow" in said[0] and f"from byte {start:,}" in said[0]


def test_a_slow_only_source_fails_in_bounded_time_keeping_the_part(server, register,
                                                                  monkeypatch):
    _slow_policy(monkeypatch)
    body = payload(43, n=50)
    url = server.add("/a.gz", body, trickle=(500, 0.05))
    name = register({"a.gz": file_entry(body, [url])})
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as ei:
        acquire.fetch(name, progress=False)
    assert time.monotonic() - t0 < 3
    msg = str(ei.value)
    part = cache.part_path(cached_file(name, "a.gz"))
    assert f"{url}: too slow" in msg and "DLSETS_MIN_RATE" in msg
    assert f"kept in {part}" in msg and "lower DLSETS_MIN_RATE (0 accepts any rate)" in msg
    assert 0 < part.stat().st_size < len(body)


@pytest.mark.parametrize("drop_after, tries, words", [
    (100, download.MAX_ATTEMPTS, "({} attempts)"),  # trivial progress: each try a failure
    (download.MIN_PROGRESS + 1000, download.MAX_TRIES, "broke off {} times"),  # no end
])
def test_a_source_that_keeps_breaking_off_is_left(server, second_server, register, caplog,
                                                  drop_after, tries, words):
    body = os.urandom(drop_after * (download.MAX_TRIES + 1))
    flaky = server.add("/a.gz", body, drop_after=drop_after, drop_times=1000)
    good = second_server.add("/a.gz", body)
    name = register({"a.gz": file_entry(body, [flaky, good])})
    with caplog.at_level("WARNING", logger="dlsets"):
        assert acquire.fetch(name, progress=False)["a.gz"].read_bytes() == body
    assert download.MAX_TRIES <= 10 and len(server.requests("/a.gz")) == tries
    assert second_server.ranges("/a.gz") == [f"bytes={drop_after * tries}-"]
    [said] = _leaving(caplog)
    assert words.format(tries) in said and good in said


def test_a_stalling_mirror_costs_a_few_timeouts_per_fetch_beside_one_on_its_host(
        server, register, monkeypatch, caplog):
    """1 KiB per request, then silence: each try's trivial progress is no progress, and the
    mirror is demoted by its base URL, so the good mirror on the same host goes first next."""
    _slow_policy(monkeypatch, window="600")  # the rate rule alone would allow 10 tries a file
    bodies = {f: payload(50 + i, n=20) for i, f in enumerate(("a.gz", "b.gz", "c.gz"))}
    for f, b in bodies.items():
        server.add(f"/slow/{f}", b, stall_after=1024, stall=30)
        server.add(f"/good/{f}", b)
    name = register({f: file_entry(b, [server.url(f"/slow/{f}"), server.url(f"/good/{f}")])
                     for f, b in bodies.items()})
    with caplog.at_level("WARNING", logger="dlsets"):
        paths = acquire.fetch(name, progress=False)
    assert {f: p.read_bytes() for f, p in paths.items()} == bodies
    slow = [r for r in server.log if r.path.startswith("/slow/")]
    assert len(slow) == download.MAX_ATTEMPTS and {r.path for r in slow} == {"/slow/a.gz"}
    assert all(server.count(f"/good/{f}") == 1 for f in bodies)
    [said] = _leaving(caplog)
    assert f"{download.MAX_ATTEMPTS} attempts" in said and "timed out" in said


def test_a_deadline_stops_the_fetch_and_the_next_one_continues(server, register, monkeypatch,
                                                              capsys):
    from dlsets.cli import main
    from dlsets.errors import DeadlineError

    monkeypatch.setenv("DLSETS_MIN_RATE", "0")  # a crawl that no rate rule would stop
    body = payload(45, n=50)
    url = server.add("/a.gz", body, trickle=(500, 0.05))
    name = register({"a.gz": file_entry(body, [url])})
    part = cache.part_path(cached_file(name, "a.gz"))
    t0 = time.monotonic()
    with pytest.raises(DeadlineError) as ei:
        acquire.fetch(name, progress=False, deadline=0.4)
    assert 0.35 < time.monotonic() - t0 < 3
    assert isinstance(ei.value, DownloadError)
    have = part.stat().st_size
    msg = str(ei.value)
    assert "deadline of 0.4 s" in msg and f"the {have:,} bytes received are kept in {part}" in msg
    monkeypatch.setenv("DLSETS_DEADLINE", "0.3")  # the same from the environment...
    with pytest.raises(DeadlineError, match="deadline of 0.3 s"):
        acquire.fetch(name, progress=False)
    monkeypatch.delenv("DLSETS_DEADLINE")
    t0 = time.monotonic()  # ...and from the command line, without a traceback
    assert main(["fetch", name, "-q", "--deadline", "0.3"]) == 1
    err = capsys.readouterr().err
    assert time.monotonic() - t0 < 3
    assert err.startswith("dlsets: error:") and "deadline of 0.3 s" in err
    assert "Traceback" not in err
    have = part.stat().st_size
    server.add("/a.gz", body)  # healthy now: the next fetch continues the part
    assert acquire.fetch(name, progress=False)["a.gz"].read_bytes() == body
    assert server.ranges("/a.gz")[-1] == f"bytes={have}-"


def test_a_deadline_also_bounds_the_wait_for_another_process(server, register):
    from filelock import FileLock

    from dlsets.errors import DeadlineError

    body = payload(46, n=2)
    name = register({"a.gz": file_entry(body, [server.add("/a.gz", body)])})
    dest = cached_file(name, "a.gz")
    dest.parent.mkdir(parents=True)
    other = FileLock(cache.lock_path(dest))  # its own descriptor: another holder
    other.acquire()
    try:
        t0 = time.monotonic()
        with pytest.raises(DeadlineError, match="while waiting for another process"):
            acquire.fetch(name, progress=False, deadline=0.3)
        assert time.monotonic() - t0 < 3
    finally:
        other.release()
    assert server.log == []


@pytest.mark.parametrize(("var", "value"), [
    ("DLSETS_TIMEOUT", "nan"), ("DLSETS_TIMEOUT", "inf"), ("DLSETS_TIMEOUT", "-1"),
    ("DLSETS_TIMEOUT", "1e300"), ("DLSETS_RETRY_BASE", "junk"), ("DLSETS_RETRY_BASE", "nan"),
    ("DLSETS_RETRY_BASE", "1e6"), ("DLSETS_MIN_RATE", "-5"), ("DLSETS_MIN_RATE", "inf"),
    ("DLSETS_RATE_WINDOW", "0"), ("DLSETS_RATE_WINDOW", "nan"), ("DLSETS_DEADLINE", "0"),
    ("DLSETS_DEADLINE", "inf"), ("DLSETS_DEADLINE", "soon"),
])
def test_every_number_setting_is_checked_before_anything_is_downloaded(server, register,
                                                                      monkeypatch, var, value):
    body = payload(47, n=2)
    name = register({"a.gz": file_entry(body, [server.add("/a.gz", body)])})
    monkeypatch.setenv(var, value)
    with pytest.raises(OptionError, match=f"{var}='{value}'"):
        acquire.fetch(name, progress=False)
    assert server.log == []


def test_bad_numbers_from_the_command_line_or_environment_are_one_message(capsys, register,
                                                                         monkeypatch):
    from dlsets.cli import main

    name = register({"a.gz": file_entry(b"x", ["http://127.0.0.1:9/a.gz"])})
    monkeypatch.setenv("DLSETS_TIMEOUT", "nan")
    assert main(["fetch", name]) == 1
    err = capsys.readouterr().err
    assert "DLSETS_TIMEOUT='nan'" in err and "Traceback" not in err
    monkeypatch.delenv("DLSETS_TIMEOUT")
    for bad in ("nan", "inf", "0", "-3"):
        with pytest.raises(SystemExit) as e:
            main(["fetch", name, "--deadline", bad])
        assert e.value.code == 2
    with pytest.raises(OptionError, match="deadline=nan"):
        acquire.fetch(name, deadline=float("nan"))


def test_a_download_whose_folder_is_removed_says_nothing_was_kept(server, tmp_path):
    import shutil
    import threading

    from tests.httpserver import wait_for

    body = payload(48, n=20)
    url = server.add("/a.gz", body, trickle=(2048, 0.02))
    dest = tmp_path / "gone" / "a.gz"
    part = cache.part_path(dest)
    t = threading.Thread(target=lambda: wait_for(part.exists, timeout=10)
                         and shutil.rmtree(dest.parent))
    t.start()
    with pytest.raises(DlsetsError) as ei:
        download.download_file([url], dest, sha256=hashlib.sha256(body).hexdigest(),
                               size=len(body), progress_bar=False)
    t.join(10)
    msg = str(ei.value)
    assert "kept there" not in msg and "the next fetch uses it" not in msg
    assert "removed" in msg and "Nothing was kept" in msg
    assert not part.exists() and not dest.exists()


def test_md5_is_hashed_only_for_files_without_a_sha256(server, register, monkeypatch, tmp_path):
    import dataclasses

    from dlsets.sources import registry

    body = payload(49, n=5)
    name = register({"a.gz": file_entry(body, [server.add("/a.gz", body)], md5=True)})
    md5 = hashlib.md5(body).hexdigest()
    made = []
    real_md5 = hashlib.md5
    monkeypatch.setattr(hashlib, "md5", lambda *a, **k: made.append(1) or real_md5(*a, **k))
    path = acquire.fetch(name, progress=False)["a.gz"]
    os.utime(path, ns=(0, 10**9))  # touched: the next look re-hashes it
    assert acquire.verify([name])[0].state == "ok"
    src = tmp_path / "src"
    src.mkdir()
    (src / "copy.gz").write_bytes(body)
    acquire.remove(name)
    acquire.fetch(name, source_dir=src)
    assert made == []  # the registry has a sha256: its md5 adds nothing
    # notMNIST-like: md5 and size only. Its first download needs the md5 (and pins a sha256)...
    spec = dataclasses.replace(registry.get("mnist"), name="md5-only", builtin=False,
                               files={"a.gz": registry.FileSpec(
                                   "a.gz", None, md5, len(body),
                                   (server.url("/a.gz"),))},
                               file_sets=(("a.gz",),))
    real_all = registry._all
    monkeypatch.setattr(registry, "_all", lambda: {**real_all(), spec.name: spec})
    path = acquire.fetch("md5-only", progress=False)["a.gz"]
    assert made and acquire.status("md5-only")[0].pinned_sha256
    # ...and from then on the pinned sha256 is enough.
    made.clear()
    os.utime(path, ns=(0, 10**9))
    assert acquire.verify(["md5-only"])[0].state == "ok" and made == []
