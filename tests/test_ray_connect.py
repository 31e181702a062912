"""Ray with a cluster address that does not answer: bounded, one line naming the address, and
the folder the run would have claimed left as it was. Real sockets and a real ray.init."""

import os
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.extra  # needs Ray


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with ends: connections refused


def test_an_address_that_refuses_is_one_line_at_once(tmp_path):
    from tests.formats import mnist_like

    mnist_like(tmp_path / "m", "tiny", 40, 10)
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "DLSETS_CACHE": str(tmp_path / "cache"),
           "DLSETS_REGISTRY": str(tmp_path / "m" / "reg.json"), "RAY_DISABLE_USAGE_STATS": "1",
           "RAY_ADDRESS": f"127.0.0.1:{_closed_port()}", "DLSETS_DEADLINE": "30"}
    cli = [sys.executable, "-m", "dlsets"]
    fetched = subprocess.run([*cli, "-q", "fetch", "tiny", "--from", str(tmp_path / "m" / "src")],
                             env=env, capture_output=True, text=True, timeout=120)
    assert fetched.returncode == 0, fetched.stderr
    out = tmp_path / "shards"
    got = subprocess.run([*cli, "augment", "tiny", "--target", "80", "--rotate", "5", "--out",
                          f"{out}/", "--shards", "2", "--engine", "ray"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert got.returncode == 1
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and env["RAY_ADDRESS"] in lines[0], got.stderr
    assert "Traceback" not in got.stderr and "rpc_client" not in got.stderr
    assert not out.exists()  # nothing of the run left behind


def _silent_server():
    """A listening socket that accepts connections and never says a word."""
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    return srv, held, stop, t


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_address_that_accepts_but_never_answers_fails_in_bounded_time(scheme):
    import time

    from dlsets import DeadlineError
    from dlsets.scale.ray import _answers

    srv, held, stop, t = _silent_server()
    address = f"{scheme}127.0.0.1:{srv.getsockname()[1]}"
    try:
        began = time.monotonic()
        with pytest.raises(DeadlineError, match="did not answer as a Ray cluster") as got:
            _answers(address, 1.0)
        assert time.monotonic() - began < 30
        assert address in str(got.value) and held  # it connected, then gave up
    finally:
        stop.set()
        t.join()
        for c in held:
            c.close()
        srv.close()


def test_a_running_cluster_passes_the_handshake_check():
    import ray

    from dlsets.scale.ray import _answers

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        gcs = ray.get_runtime_context().gcs_address
        _answers(gcs, 10.0)  # raises if Ray's own GCS did not complete the handshake
    finally:
        ray.shutdown()
