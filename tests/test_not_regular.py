"""Small files dlsets reads (an existing output, a registry file, a cached download, the
prepared manifest, cache JSON, credentials, a palette) that are a FIFO, a link to /dev/zero or
a symlink loop, or JSON nested thousands deep: refused or repaired, never waited on nor read
without end. Whatever could hang runs in a child process with a timeout and a memory cap, so
a regression fails instead of hanging (or filling the memory of) the test run."""

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dlsets
from dlsets.errors import AuthError, OptionError, RegistryError
from dlsets.formats import palette
from dlsets.sources import download, registry
from dlsets.store import cache, stamps
from tests.formats import mnist_like
from tests.test_kaggle import creds, flowers_zip, kg  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]
DEEP = "[" * 30_000 + "]" * 30_000  # under every size cap; far past the recursion limit

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"),
                                reason="needs FIFOs and /dev/zero")


def _cap():
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # /dev/zero read whole: fails


def _child(code: str, timeout: int = 90) -> str:
    """Run ``code`` in a fresh Python (this checkout first); its stdout. A hang is a failure."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=timeout, preexec_fn=_cap)
    except subprocess.TimeoutExpired:
        pytest.fail(f"blocked for {timeout} s (a FIFO waited on, or /dev/zero read without end)")
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def _specials(tmp_path: Path, name: str) -> list[Path]:
    """A FIFO (nobody writes to it) and a symlink to /dev/zero, both named ``name``."""
    (tmp_path / "fifo").mkdir()
    (tmp_path / "zero").mkdir()
    os.mkfifo(tmp_path / "fifo" / name)
    os.symlink("/dev/zero", tmp_path / "zero" / name)
    return [tmp_path / "fifo" / name, tmp_path / "zero" / name]


@pytest.mark.parametrize("name", ["o.h5", "o.npz", "o.png"])
def test_an_existing_output_that_is_a_fifo_or_device_is_refused_even_with_overwrite(
        tmp_path, name):
    paths = _specials(tmp_path, name)
    out = _child(f"""
        from dlsets import stamps
        from dlsets.errors import OptionError
        for p in {[str(p) for p in paths]!r}:
            print(stamps.written_by_dlsets(p))
            for overwrite in (False, True):
                try:
                    stamps.check_replace(p, overwrite, "--out")
                except OptionError as exc:
                    print(exc)
    """)
    lines = out.splitlines()
    assert lines[0::3] == ["False", "False"]
    for line in lines[1::3] + lines[2::3]:
        assert "not a regular file" in line and "left as it is" in line
    assert all(p.is_fifo() or p.is_symlink() for p in paths)  # left as they were


def test_the_cli_refuses_a_fifo_as_out_without_waiting(tmp_path):
    src, reg, _ = mnist_like(tmp_path / "m", "tiny", 20, 10)
    dlsets.register_file(reg)
    dlsets.fetch("tiny", source_dir=src)
    os.mkfifo(tmp_path / "o.h5")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DLSETS_REGISTRY": str(reg)}
    try:
        r = subprocess.run([sys.executable, "-m", "dlsets", "export", "tiny", "--out",
                            str(tmp_path / "o.h5")], env=env, capture_output=True, text=True,
                           timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("export waited on a FIFO given as --out")
    assert r.returncode != 0
    assert "not a regular file" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "o.h5").is_fifo()


def test_a_registry_file_that_is_a_fifo_device_loop_or_deep_json_is_a_registry_error(tmp_path):
    fifo, zero = _specials(tmp_path, "reg.json")
    os.symlink(tmp_path / "loopB", tmp_path / "loopA")
    os.symlink(tmp_path / "loopA", tmp_path / "loopB")
    (tmp_path / "deep.json").write_text(DEEP)
    out = _child(f"""
        from dlsets import registry
        from dlsets.errors import RegistryError
        for p in {[str(fifo), str(zero), str(tmp_path / "loopA"), str(tmp_path / "deep.json")]!r}:
            try:
                registry.register_file(p)
            except RegistryError as exc:
                print(exc)
    """)
    fifo_msg, zero_msg, loop_msg, deep_msg = out.splitlines()
    assert "not a regular file" in fifo_msg and "not a regular file" in zero_msg
    assert "symlink loop" in loop_msg
    assert "nested too deeply" in deep_msg


def test_dlsets_registry_naming_a_loop_or_fifo_leaves_the_builtins_working(
        tmp_path, monkeypatch):
    os.symlink(tmp_path / "loopB", tmp_path / "loopA")
    os.symlink(tmp_path / "loopA", tmp_path / "loopB")
    os.mkfifo(tmp_path / "r.fifo")
    def ring(*_):
        raise TimeoutError("waited on a FIFO named by DLSETS_REGISTRY")

    signal.signal(signal.SIGALRM, ring)  # the open of a FIFO is interrupted: a failure, no hang
    signal.alarm(60)
    try:
        for p in (tmp_path / "loopA", tmp_path / "r.fifo"):
            monkeypatch.setenv("DLSETS_REGISTRY", str(p))
            assert "mnist" in registry.names()  # a warning, not a RuntimeError (nor a hang)
            with pytest.raises(RegistryError, match="symlink loop|not a regular file"):
                registry.get("tiny")
    finally:
        signal.alarm(0)


def test_cache_json_that_is_a_fifo_device_or_deep_reads_as_empty(tmp_path):
    paths = _specials(tmp_path, "verified.json")
    (tmp_path / "deep.json").write_text(DEEP)
    (tmp_path / "ok.json").write_text(json.dumps({"a": 1}))
    out = _child(f"""
        from pathlib import Path
        from dlsets import cache
        for p in {[str(p) for p in paths] + [str(tmp_path / "deep.json")]!r}:
            print(cache.read_json(Path(p)))
    """)
    assert out.splitlines() == ["{}", "{}", "{}"]
    assert cache.read_json(tmp_path / "ok.json") == {"a": 1}


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_a_cached_file_that_is_not_regular_is_damaged_refused_offline_and_repaired(
        tmp_path, kind):
    src, reg, _ = mnist_like(tmp_path / "m", "tiny", 20, 10)
    dlsets.register_file(reg)
    paths = dlsets.fetch("tiny", source_dir=src)
    victim = paths["train-labels-idx1-ubyte.gz"]
    victim.unlink()
    if kind == "fifo":
        os.mkfifo(victim)
    else:
        os.symlink("/dev/zero", victim)
    out = _child(f"""
        import os
        import dlsets
        from dlsets.errors import DlsetsError
        dlsets.register_file({str(reg)!r})
        for r in dlsets.verify("tiny", repair=False):
            print(r.file, r.state, r.detail)
        os.environ["DLSETS_OFFLINE"] = "1"
        try:
            dlsets.load("tiny")
        except DlsetsError as exc:
            print("load:", type(exc).__name__, str(exc).splitlines()[0])
        dlsets.fetch("tiny", source_dir={str(src)!r})
        print(sorted(r.state for r in dlsets.verify("tiny", repair=False)))
        print(len(dlsets.load("tiny").train))
    """)
    lines = out.splitlines()
    bad = [line for line in lines if line.startswith("train-labels")]
    assert bad and "corrupt" in bad[0] and "not a regular file" in bad[0]
    assert any(line.startswith("load: OfflineError") for line in lines)
    assert lines[-2:] == [str(["ok"] * 4), "20"]
    assert victim.is_file() and not victim.is_symlink()  # replaced by a verified copy


def test_hash_file_reads_no_further_than_its_limit(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * 10_000)
    assert download.hash_file(p, limit=100).size == 101  # longer than expected: a mismatch
    assert download.hash_file(p, limit=10_000).size == 10_000
    assert download.hash_file(p).size == 10_000


def test_a_prepared_manifest_that_is_a_fifo_is_rebuilt_not_waited_on(tmp_path):
    src, reg, _ = mnist_like(tmp_path / "m", "tiny", 20, 10)
    dlsets.register_file(reg)
    dlsets.fetch("tiny", source_dir=src)
    dlsets.load("tiny")
    manifest = cache.prepared_dir("tiny") / "manifest.json"
    manifest.unlink()
    os.mkfifo(manifest)
    out = _child(f"""
        import dlsets
        dlsets.register_file({str(reg)!r})
        print(len(dlsets.load("tiny").train))
    """)
    assert out.split() == ["20"]
    assert manifest.is_file()


def test_deep_json_credentials_and_palettes_say_nested_too_deeply(tmp_path, monkeypatch):
    from dlsets.sources import kaggle_auth

    conf = tmp_path / "kaggle"
    conf.mkdir()
    (conf / "kaggle.json").write_text(DEEP)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(conf))
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(AuthError, match="nested too deeply"):
        kaggle_auth.credentials()
    (tmp_path / "pal.json").write_text(DEEP)
    with pytest.raises(OptionError, match="nested too deeply"):
        palette.read(tmp_path / "pal.json")


def test_written_by_dlsets_still_recognises_its_own_outputs(tmp_path):
    import h5py
    import numpy as np

    with h5py.File(tmp_path / "a.h5", "w") as f:
        stamps.stamp_hdf5(f)
    np.savez(tmp_path / "a.npz", x=np.zeros(3))
    stamps.stamp_npz(tmp_path / "a.npz")
    from PIL import Image

    Image.new("RGB", (2, 2)).save(tmp_path / "a.png", pnginfo=stamps.png_stamp())
    Image.new("RGB", (2, 2)).save(tmp_path / "b.png")
    assert [stamps.written_by_dlsets(tmp_path / n) for n in ("a.h5", "a.npz", "a.png", "b.png")
            ] == [True, True, True, False]


def test_read_bounded_reads_up_to_its_limit_and_refuses_more(tmp_path):
    from dlsets.store.regular import NotRegular, TooLarge, read_bounded

    p = tmp_path / "f"
    p.write_bytes(b"a" * 1000)
    assert read_bounded(p, 1000) == b"a" * 1000
    with pytest.raises(TooLarge, match="at most 999"):
        read_bounded(p, 999)
    with pytest.raises(NotRegular):
        read_bounded(tmp_path, 10)


def test_a_kaggle_archive_that_is_a_device_link_is_damaged_not_read(kg, creds):  # noqa: F811
    from dlsets.sources import kaggle

    kg.add("alice/flowers", {1: flowers_zip(2)})
    kaggle.fetch("kaggle:alice/flowers/versions/1")
    archive = kaggle.dataset_dir("kaggle:alice/flowers") / "files" / "v1.zip"
    archive.unlink()
    os.symlink("/dev/zero", archive)

    def ring(*_):
        raise TimeoutError("read /dev/zero as a Kaggle archive")

    signal.signal(signal.SIGALRM, ring)  # the hashing loop is interrupted: a failure, no hang
    signal.alarm(60)
    try:
        lines = kaggle.verify("kaggle:alice/flowers", repair=False)
    finally:
        signal.alarm(0)
    assert "not a regular file" in lines[0] and lines[0].endswith("not repaired")
