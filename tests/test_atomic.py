import os
import threading
from pathlib import Path

import pytest

from dlsets.store.atomic import replacing


def test_success_replaces_and_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    with replacing(path) as tmp:
        tmp.write_bytes(b"one")
    assert path.read_bytes() == b"one"
    with pytest.raises(RuntimeError), replacing(path) as tmp:
        tmp.write_bytes(b"two, half-wri")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"one"
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]


def test_threads_writing_one_path_never_share_a_temp_file(tmp_path):
    path = tmp_path / "f.bin"
    seen, barrier = [], threading.Barrier(4)

    def write(i):
        with replacing(path) as tmp:
            seen.append(tmp)
            barrier.wait(timeout=10)  # all four temp files exist at once
            tmp.write_bytes(bytes([i]) * 1000)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 4
    data = path.read_bytes()
    assert len(data) == 1000 and len(set(data)) == 1


_WRITER = """
import sys, time
from dlsets.store.atomic import replacing
with replacing(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half of a big HDF5 file" * 1000)
    print(tmp, flush=True)
    time.sleep(60)
"""


def test_a_killed_writers_temp_goes_with_the_next_write_to_its_folder_a_live_ones_stays(
        tmp_path):
    import signal
    import subprocess
    import sys

    def writer(name):
        p = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path / name)],
                             stdout=subprocess.PIPE, text=True)
        return p, Path(p.stdout.readline().strip())

    killed, killed_tmp = writer("out.h5")
    live, live_tmp = writer("other.h5")
    try:
        os.kill(killed.pid, signal.SIGKILL)  # like kill -9 of `dlsets augment`
        killed.wait(10)
        assert killed_tmp.exists() and live_tmp.exists()
        from dlsets.store import atomic

        assert killed_tmp.name == f".out.h5.{atomic.HOST}@{killed.pid}-" + \
            killed_tmp.name.rsplit("-", 1)[1]
        with replacing(tmp_path / "grid.png") as tmp:  # any later write to that folder
            tmp.write_bytes(b"png")
        assert not killed_tmp.exists()
        assert live_tmp.exists()  # its process still runs: never touched
    finally:
        live.kill()
        live.wait(10)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["grid.png", live_tmp.name])


def test_which_temporaries_count_as_stale(tmp_path):
    import subprocess
    import sys

    from dlsets.store import atomic

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    me, host = os.getpid(), atomic.HOST
    names = {
        f".a.{host}@{dead.pid}-1.tmp": True,  # this host, process gone
        f".a.{host}@{me}-1.tmp": False,  # this process
        f".a.elsewhere@{dead.pid}-1.tmp": False,  # another host's: cannot tell, keep
        f".b.import-{host}@{dead.pid}": True,
        f".c.removing-{host}@{dead.pid}": True,
        f".a.{dead.pid}-1.tmp": None,  # dlsets 0.1's name: only inside the cache
        ".a.tmp": None, "a.1-2.tmp": None, f".a.{host}@x-1.tmp": None,  # not ours at all
    }
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    found = {x.path.name: x.stale for x in atomic.leftovers(tmp_path)}
    assert found == {n: s for n, s in names.items() if s is not None}
    legacy = {x.path.name: x.stale for x in atomic.leftovers(tmp_path, legacy=True)}
    assert legacy[f".a.{dead.pid}-1.tmp"] is True
    # A live pid whose process started after the temporary was last written reused the pid.
    reused = tmp_path / f".d.{host}@1-1.tmp"  # pid 1 is alive (init)
    reused.write_bytes(b"x")
    assert {x.path.name: x.stale for x in atomic.leftovers(tmp_path)}[reused.name] is False
    if atomic._proc_stat(1) is not None:  # Linux: its start time is known
        os.utime(reused, (0, 0))  # last written in 1970, long before pid 1 started
        assert {x.path.name: x.stale for x in atomic.leftovers(tmp_path)}[reused.name] is True
    removed = {x.path.name for x in atomic.clean(tmp_path)}
    assert removed >= {n for n, s in names.items() if s}
    assert all((tmp_path / n).exists() for n, s in names.items() if s is not True)
