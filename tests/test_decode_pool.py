"""Cold folder loads that must not hang, orphan workers, blow up memory or fault on a full
disk: a FIFO in a file's place, kill -9 of the loading process (fork and spawn workers), big
images under a memory budget, a scratch file that does not fit the disk."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dlsets
from dlsets.formats import image as imgread
from dlsets.sources import decode_pool, folder_prepare, folders
from tests.imagefolders import class_folder
from tests.test_space import _run, needs_mounts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_settings(monkeypatch):
    monkeypatch.delenv("DLSETS_DECODE_MEMORY", raising=False)
    monkeypatch.delenv("DLSETS_DECODE_START", raising=False)


def _alarm(seconds: int):
    def ring(*_):
        raise TimeoutError(f"blocked for {seconds} s")
    signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("files", [6, 60])  # decoded in this process / on workers
def test_a_fifo_put_in_a_files_place_after_the_scan_is_skipped_not_waited_for(
        tmp_path, monkeypatch, files):
    root = class_folder(tmp_path / "d", {"a": files // 2, "b": files // 2}, size=(8, 8))
    real = folder_prepare.scan
    first = []

    def swapped(path):
        # the swap after the first listing; the listing after decoding is given the first
        # one's answer, so that the decode's own handling is what this test sees (a folder
        # seen changing is refused: test_folders' test_a_folder_rewritten_while_it_is_read)
        if not first:
            first.append(real(path))
            (root / "a" / "img001.png").unlink()
            os.mkfifo(root / "a" / "img001.png")  # nobody ever writes to it
        return first[0]

    monkeypatch.setattr(folder_prepare, "scan", swapped)
    _alarm(60)
    try:
        ds = dlsets.load_folder(root, size=8, workers=2)
    finally:
        signal.alarm(0)
    assert "not a regular file" in ds.info["skip_reasons"]["a/img001.png"]
    assert len(ds.train) + len(ds.test) == files - 1
    assert imgread.probe_size(str(root / "a" / "img001.png")) is None  # the header probe too


_ORPHANS = textwrap.dedent("""
    import os, sys, time
    from dlsets import folders
    from dlsets.formats import image as imgread

    def stuck(path, target, **kw):  # a decode that never ends (a slow disk, a huge image)
        open(os.path.join(sys.argv[2], str(os.getpid())), "w").close()
        time.sleep(600)

    imgread.decode_image = stuck  # at import: spawned workers import this file too

    if __name__ == "__main__":
        folders.load_folder(sys.argv[1], size=8, workers=2, progress=False)
""")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its reaper is missing


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_exit_when_the_loading_process_is_killed(tmp_path, method):
    root = class_folder(tmp_path / "d", {"a": 30, "b": 30}, size=(8, 8))
    (tmp_path / "pids").mkdir()
    script = tmp_path / "load.py"
    script.write_text(_ORPHANS)
    env = dict(os.environ, DLSETS_DECODE_START=method, PYTHONPATH=str(ROOT))
    parent = subprocess.Popen([sys.executable, str(script), str(root), str(tmp_path / "pids")],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(1200):  # both workers busy (spawn imports numpy and Pillow first)
            if len(list((tmp_path / "pids").iterdir())) == 2 or parent.poll() is not None:
                break
            time.sleep(0.05)
        workers = [int(p.name) for p in (tmp_path / "pids").iterdir()]
        assert len(workers) == 2 and parent.poll() is None
    finally:
        parent.kill()
        parent.wait()
    for _ in range(600):
        if not any(_alive(w) for w in workers):
            break
        time.sleep(0.05)
    left = [w for w in workers if _alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert left == []


def _deep_png(path: Path, side: int) -> Path:
    """A 16-bit greyscale PNG: a few KB on disk, 24 bytes per pixel to decode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((side, side), 1000, np.uint16)).save(path)
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_big_images_take_turns_within_the_memory_budget(tmp_path, monkeypatch, workers):
    root = class_folder(tmp_path / "d", {"a": 30, "b": 30}, size=(8, 8))
    for i in range(4):
        _deep_png(root / "ab"[i % 2] / f"big{i}.png", 300)
    monkeypatch.setattr(decode_pool, "SMALL", 1 << 20)  # 300x300 x 24 B = 2.2 MB is big here
    with Image.open(root / "a" / "big0.png") as im:
        need = imgread.peak_bytes(im, imgread.Target((8, 8)))
    assert need >= 300 * 300 * 24
    monkeypatch.setenv("DLSETS_DECODE_MEMORY", str(need * 3 // 2))  # room for one at a time
    ds = dlsets.load_folder(root, size=8, workers=workers)
    assert ds.info["skipped"] == [] and len(ds.train) + len(ds.test) == 64
    assert decode_pool.LAST_RUN["most"] == 1
    monkeypatch.setenv("DLSETS_DECODE_MEMORY", str(need // 2))  # room for none
    ds = dlsets.load_folder(root, size=8, workers=workers, cache_dir=tmp_path / "c2")
    assert sorted(ds.info["skipped"]) == ["a/big0.png", "a/big2.png", "b/big1.png",
                                          "b/big3.png"]
    why = ds.info["skip_reasons"]["a/big0.png"]
    assert "of memory" in why and "DLSETS_DECODE_MEMORY" in why
    monkeypatch.setenv("DLSETS_DECODE_MEMORY", str(decode_pool.SMALL))
    assert folders.default_workers() == 1  # room for one worker's ordinary images


def test_memory_and_start_settings_are_checked(monkeypatch):
    monkeypatch.setenv("DLSETS_DECODE_MEMORY", "lots")
    with pytest.raises(dlsets.OptionError, match="DLSETS_DECODE_MEMORY='lots'"):
        decode_pool.allowance()
    monkeypatch.setenv("DLSETS_DECODE_START", "vfork")
    with pytest.raises(dlsets.OptionError, match="DLSETS_DECODE_START='vfork'"):
        decode_pool.start_method()


@needs_mounts
def test_a_cold_load_that_does_not_fit_the_disk_is_a_space_error_not_sigbus(tmp_path):
    root = class_folder(tmp_path / "d", {"a": 30, "b": 30}, size=(8, 8))
    cache = tmp_path / "small"
    out = _run(f"""
        from dlsets import errors, folders, space
        from dlsets.sources import folder_prepare
        folder_prepare.MEMORY_LIMIT = 0  # every result goes through a scratch file
        for case in ("checked", "unknown free space"):
            if case != "checked":
                space.free_disk = lambda folder: None  # the check cannot see: allocation must
            try:
                folders.load_folder({str(root)!r}, size=(128, 128), workers=2, progress=False,
                                    cache_dir={str(cache)!r})
                out[case] = "loaded"
            except errors.SpaceError as exc:
                out[case] = str(exc)
        out["left"] = [p for p in listing({str(cache)!r}) if p.endswith(".scratch")]
        """, mounts={cache: "size=2m"})
    # 60 x 128 x 128 x 3 = 2.9 MB of pixels: not even the scratch file fits 2 MB
    assert "not enough disk space" in out["checked"] and "--size" in out["checked"]
    assert "disk filled up" in out["unknown free space"]
    assert out["left"] == []


_HALF_SENT = textwrap.dedent("""
    import concurrent.futures as cf, multiprocessing as mp, os, struct, sys, time
    from dlsets.sources import decode_pool

    def half_sent(_):
        # the header of a 1 MB result and 100 bytes of it, then nothing: a worker ended mid-send
        frame = sys._getframe()
        while "result_queue" not in frame.f_locals:
            frame = frame.f_back
        os.write(frame.f_locals["result_queue"]._writer.fileno(),
                 struct.pack("!i", 1 << 20) + b"x" * 100)
        open(sys.argv[1], "w").close()
        time.sleep(600)

    if __name__ == "__main__":
        pool = cf.ProcessPoolExecutor(1, mp_context=mp.get_context(sys.argv[2]))
        pool.submit(half_sent, None)
        for _ in range(1200):
            if os.path.exists(sys.argv[1]):
                break
            time.sleep(0.05)
        time.sleep(0.5)  # the pool's reader thread is inside the message now
        decode_pool._stop(pool, ok=False)  # what an interrupted or failed decode does
        print("stopped")
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and /proc")
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_worker_ended_mid_send_does_not_hang_the_exit(tmp_path, method):
    # Ctrl-C during a folder's decode once left `dlsets` hanging after its message: the
    # pool's reader thread waited for the rest of a result, and Python joins it at exit
    script = tmp_path / "half.py"
    script.write_text(_HALF_SENT)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "sending"), method],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the process did not exit after the pool was stopped")
    assert proc.returncode == 0 and out.strip() == "stopped", err
