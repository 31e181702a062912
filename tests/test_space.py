"""Full and read-only disks, for real: a small tmpfs filled up, a tmpfs mounted read-only (in a
private mount namespace, `unshare -rm`, which needs no root where user namespaces are allowed),
and RLIMIT_FSIZE, which makes a write fail half-way on any Linux, the way a disk that fills up
while dlsets writes does. Every failure must be one DlsetsError naming the path, the bytes
needed and free; nothing may be left behind; and HDF5 must not crash the interpreter."""

import functools
import json
import shutil
import subprocess
import sys
import textwrap

import pytest

import dlsets
from dlsets.sources.acquire import fetch
from tests.formats import mnist_like


@functools.lru_cache(maxsize=1)
def _namespaces() -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


needs_mounts = pytest.mark.skipif(not _namespaces(), reason="needs `unshare -rm` (user and "
                                  "mount namespaces) to mount a small tmpfs without root")


@pytest.fixture
def digits(tmp_path, monkeypatch):
    """A 'digits' dataset like mnist (400 + 100 images, 392 KB prepared), imported and loaded
    once in tmp_path/cache; returns the cache folder."""
    src, reg, _ = mnist_like(tmp_path, "digits", 400, 100)
    monkeypatch.setenv("DLSETS_REGISTRY", str(reg))
    cache = tmp_path / "cache"
    fetch("digits", source_dir=src, cache_dir=cache)
    return cache


_PRELUDE = """
import contextlib, io, json, os, sys
from pathlib import Path
import dlsets
from dlsets.cli import main
from tests.formats import mnist_like

def cli(*argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    return [code, err.getvalue()]

def fill(folder, leave):
    st = os.statvfs(folder)
    with open(Path(folder) / "filler", "wb") as f:
        f.write(bytes(max(0, st.f_bavail * st.f_frsize - leave)))

def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))

out = {}
"""


def _run(script: str, mounts: dict | None = None, timeout: int = 90) -> dict:
    """Run ``script`` (after _PRELUDE) in a fresh Python; with ``mounts`` (path -> tmpfs
    options, possibly none) in its own mount namespace, those tmpfs mounted first, so that no
    mount the script makes outlives it. Returns the script's ``out``."""
    code = _PRELUDE + textwrap.dedent(script) + "\nprint(json.dumps(out))\n"
    argv = [sys.executable, "-c", code]
    if mounts is not None:
        setup = "".join(f"mount -t tmpfs -o {opts} tmpfs {path} && "
                        for path, opts in mounts.items())
        for path in mounts:
            path.mkdir(parents=True, exist_ok=True)
        argv = ["unshare", "-rm", "sh", "-c", f'{setup}exec "$0" "$@"', *argv]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (r.returncode, r.stderr[-3000:])  # 139 was h5py's segfault
    return json.loads(r.stdout.strip().splitlines()[-1])


@needs_mounts
def test_outputs_onto_a_full_or_read_only_folder_fail_with_one_message(digits, tmp_path):
    full, ro = tmp_path / "full", tmp_path / "ro"
    out = _run(f"""
        fill({str(full)!r}, 64 << 10)  # 64 KB left: less than any of the outputs below
        for name, argv in {{
            "augment": ["augment", "digits", "--target", "1000", "--rotate", "5", "--out"],
            "export-h5": ["export", "digits", "--out"], "export-npz": ["export", "digits", "--out"],
            "preview": ["preview", "digits", "--rotate", "5", "--copies", "40", "--scale", "8",
                        "--out"]}}.items():
            suffix = {{"augment": "new/a.h5", "export-h5": "x.h5", "export-npz": "x.npz",
                      "preview": "g.png"}}[name]
            out["full-" + name] = cli(*argv, {str(full)!r} + "/" + suffix,
                                      "--cache-dir", {str(digits)!r})
            out["ro-" + name] = cli(*argv, {str(ro)!r} + "/" + suffix,
                                    "--cache-dir", {str(digits)!r})
        out["left"] = listing({str(full)!r}) + listing({str(ro)!r})
    """, {full: "size=2m", ro: "ro,size=1m"})
    for name in ("augment", "export-h5", "export-npz", "preview"):
        code, err = out[f"full-{name}"]
        assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, (name, err)
        assert "not enough disk space in" in err and str(full) in err and "free" in err
        assert " bytes (" in err and "needed" in err, err
        code, err = out[f"ro-{name}"]
        assert code == 1 and "read-only file system" in err and str(ro) in err, (name, err)
    assert out["left"] == ["filler"]  # no temporary file, no folder made for the output


@needs_mounts
def test_preparing_and_hdf5_variants_on_a_full_disk(digits, tmp_path):
    """The cache itself on a small tmpfs: the prepared arrays, then an HDF5 variant, do not
    fit. h5py 3.14 segfaulted there after its OSError traceback."""
    disk = tmp_path / "disk"
    out = _run(f"""
        import shutil
        from dlsets import loaders
        cache = Path({str(disk)!r}) / "cache"
        shutil.copytree({str(digits)!r}, cache)
        fill({str(disk)!r}, 200 << 10)  # the arrays need 392 KB: they do not fit
        for key, kw in (("prepare", {{}}), ("hdf5", {{"format": "hdf5"}})):
            try:
                dlsets.load("digits", cache_dir=cache, **kw)
                out[key] = ["loaded", ""]
            except dlsets.DlsetsError as exc:
                out[key] = [type(exc).__name__, str(exc)]
            out[key + "-left"] = listing(cache / "digits" / "prepared")
            if key == "prepare":  # room for the arrays, not for a second copy in HDF5
                os.unlink(Path({str(disk)!r}) / "filler")
                fill({str(disk)!r}, 600 << 10)
                out["prepared"] = dlsets.load("digits", cache_dir=cache).train.images.shape
        out["verify"] = loaders.verify_prepared("digits", cache_dir=cache)
    """, {disk: "size=4m"})
    kind, msg = out["prepare"]
    assert kind == "SpaceError" and "digits: preparing its arrays" in msg, msg
    assert "not enough disk space" in msg and "DLSETS_CACHE" in msg
    assert not [p for p in out["prepare-left"] if p.endswith((".npy", ".tmp"))]
    assert out["prepared"] == [400, 28, 28]
    kind, msg = out["hdf5"]
    assert kind == "SpaceError" and "not enough disk space" in msg and ".h5" in msg, msg
    assert not [p for p in out["hdf5-left"] if p.startswith("hdf5/")]
    assert out["verify"] is None  # the arrays written before are intact


@needs_mounts
def test_a_read_only_cache_serves_prepared_arrays_but_cannot_make_them(digits, tmp_path):
    ro = tmp_path / "ro-cache"
    ro.mkdir()
    out = _run(f"""
        import subprocess
        subprocess.run(["mount", "--bind", {str(digits)!r}, {str(ro)!r}], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", {str(ro)!r}], check=True)
        out["export"] = cli("export", "digits", "--out", {str(tmp_path / "x.npz")!r},
                            "--cache-dir", {str(ro)!r})
    """, mounts={})
    code, err = out["export"]
    assert code == 1 and "Traceback" not in err and "digits: cannot prepare its arrays" in err
    assert "Read-only file system" in err and "DLSETS_CACHE" in err, err
    dlsets.load("digits", cache_dir=digits)  # prepared once, in the writable cache
    out = _run(f"""
        import subprocess
        subprocess.run(["mount", "--bind", {str(digits)!r}, {str(ro)!r}], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", {str(ro)!r}], check=True)
        out["shape"] = dlsets.load("digits", cache_dir={str(ro)!r}).train.images.shape
    """, mounts={})
    assert out["shape"] == [400, 28, 28]


def test_writes_that_fail_half_way_are_clean_errors_without_a_crash(digits, tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse to grow a file past 100 KB, the way a disk that
    fills up meanwhile does, after the free-space check passed: each writer must turn that into
    a SpaceError and remove its temporary file; HDF5 must close without crashing."""
    work = tmp_path / "w"
    work.mkdir()
    out = _run(f"""
        import resource, signal, shutil
        import numpy as np
        from dlsets.augment import Augmenter, expand_to_hdf5, save_png
        work = Path({str(work)!r})
        ds = dlsets.load("digits", cache_dir={str(digits)!r})
        cache = work / "cache"
        shutil.copytree({str(digits)!r}, cache)
        shutil.rmtree(cache / "digits" / "prepared")
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (100 << 10, 100 << 10))
        x, y = np.asarray(ds.train.images), np.asarray(ds.train.labels)
        jobs = {{
            "expand": lambda: expand_to_hdf5(x, y, 2000, work / "aug.h5",
                                             augmenter=Augmenter(rotate=5)),
            "to_hdf5": lambda: ds.to_hdf5(work / "x.h5"),
            "to_npz": lambda: ds.to_npz(work / "x.npz"),
            "png": lambda: save_png(np.random.default_rng(0).integers(0, 256, (300, 400), np.uint8),
                                    work / "g.png", scale=2),
            "prepare": lambda: dlsets.load("digits", cache_dir=cache),
        }}
        for key, job in jobs.items():
            try:
                job()
                out[key] = ["done", ""]
            except dlsets.DlsetsError as exc:
                out[key] = [type(exc).__name__, str(exc)]
        out["left"] = [p for p in listing(work) if not p.startswith("cache/digits/files")
                       and p not in ("cache", "cache/digits")]
    """)
    for key in ("expand", "to_hdf5", "to_npz", "png", "prepare"):
        kind, msg = out[key]
        assert kind == "SpaceError" and "refused to let it grow" in msg, (key, msg)
        assert "nothing was left behind" in msg or "DLSETS_CACHE" in msg, msg
    left = [p for p in out["left"] if not p.endswith((".lock", "verified.json", "prepared"))]
    assert left == [], left


@needs_mounts
@pytest.mark.extra  # needs an optional extra
def test_folder_outputs_onto_a_read_only_folder_fail_with_one_message(digits, tmp_path):
    """Caffe and ConvNetJS exports, shards and TensorBoard logs gave OSError tracebacks."""
    ro = tmp_path / "ro"
    out = _run(f"""
        cache = ["--cache-dir", {str(digits)!r}]
        for name, argv in {{
            "caffe": ["export", "digits", "--format", "caffe", "--out", "cf/"],
            "convnetjs": ["export", "digits", "--format", "convnetjs", "--out", "js/"],
            "augment-caffe": ["augment", "digits", "--target", "600", "--rotate", "5",
                              "--format", "caffe", "--out", "acf/"],
            "shards": ["augment", "digits", "--target", "600", "--rotate", "5", "--shards", "2",
                       "--out", "sh/"],
            "tensorboard": ["preview", "digits", "--rotate", "5", "--tensorboard", "tb"],
        }}.items():
            argv[-1] = {str(ro)!r} + "/" + argv[-1]
            out[name] = cli(*argv, *cache)
        out["left"] = listing({str(ro)!r})
    """, {ro: "ro,size=1m"})
    for name in ("caffe", "convnetjs", "augment-caffe", "shards", "tensorboard"):
        code, err = out[name]
        assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, (name, err)
        assert "read-only" in err.lower() and str(ro) in err, (name, err)
    assert out["left"] == []
