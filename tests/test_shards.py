"""Sharded expansion: shards as the unit of work, the job-array CLI, tar shards, the reader."""

import hashlib
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import tarfile
import textwrap
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dlsets.augment import Augmenter, expand, expand_to_hdf5  # noqa: E402
from dlsets.cli import main  # noqa: E402
from dlsets.errors import FormatError, OptionError  # noqa: E402
from dlsets.scale.shard_reader import load_shards  # noqa: E402
from dlsets.scale.shards import expand_shard, expand_to_shards, read_index, verify_shards  # noqa: E402
from tests.formats import mnist_like  # noqa: E402

AUG = dict(rotate=15, shift=0.1, elastic=(8, 2), seed=4)


def _data(n=(50, 10, 5), side=12, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(n)), n).astype(np.uint8)
    rng.shuffle(y)
    return rng.integers(0, 256, (len(y), side, side), dtype=np.uint8), y


def _read(folder, doc=None):
    """Every shard's images and labels, concatenated in shard order, read without dlsets."""
    doc = doc or json.loads((folder / "index.json").read_text())
    xs, ys = [], []
    for e in doc["shards"]:
        if doc["format"] == "hdf5":
            with h5py.File(folder / e["file"], "r") as f:
                xs.append(f["train/images"][...])
                ys.append(f["train/labels"][...])
        else:
            import webdataset as wds

            for s in wds.WebDataset(str(folder / e["file"]), shardshuffle=False).decode():
                xs.append(s["npy"][None])
                ys.append([s["cls"]])
    return np.concatenate(xs), np.concatenate(ys)


def _state(folder):
    """name -> (inode, mtime_ns, sha256) of every file: what 'not rewritten' means."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns,
                     hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("format", ["hdf5", pytest.param("webdataset", marks=pytest.mark.extra)])
def test_shards_in_order_are_exactly_what_expand_returns(tmp_path, format):
    x, y = _data()
    aug = Augmenter(**AUG)
    ex, ey = expand(x, y, 301, augmenter=aug, seed=1)
    for n in (1, 4, 7):
        folder = tmp_path / f"n{n}"
        # one shard at a time, in reverse order, in small chunks: none of it changes a bit
        entries = [expand_shard(x, y, 301, folder, shard=i, shards=n, augmenter=aug, seed=1,
                                format=format, chunk_size=13, classes="abc")
                   for i in reversed(range(n))][::-1]
        doc = read_index(folder)
        gx, gy = _read(folder, doc)
        assert np.array_equal(gx, ex) and np.array_equal(gy, ey)
        ext = ".h5" if format == "hdf5" else ".tar"
        assert doc["files"] == [f"augmented-{i:05d}-of-{n:05d}{ext}" for i in range(n)]
        assert [e["rows"] for e in entries] == [[i * 301 // n, (i + 1) * 301 // n]
                                                for i in range(n)]
        assert doc["shards"] == entries and doc["count"] == 301
        assert doc["class_counts"] == np.bincount(ey).tolist()
        assert sorted(doc["class_counts"]) == [100, 100, 101]
        assert doc["classes"] == ["a", "b", "c"] and doc["originals"] == 65
        for e in entries:
            lo, hi = e["rows"]
            assert e["class_counts"] == np.bincount(ey[lo:hi], minlength=3).tolist()
            assert e["images_sha256"] == hashlib.sha256(ex[lo:hi].tobytes()).hexdigest()
            assert e["sha256"] == hashlib.sha256((folder / e["file"]).read_bytes()).hexdigest()
        # the folder lists the shards and the index only (entries are hidden files)
        visible = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        assert visible == sorted([*doc["files"], "index.json"])
    # channels-first colour, stored in the layout given
    xc = np.stack([x, x[::-1], x // 3], axis=1)
    ex, ey = expand(xc, y, 150, augmenter=aug, channels="first")
    expand_to_shards(xc, y, 150, tmp_path / "first", shards=3, augmenter=aug,
                     channels="first", format=format)
    gx, gy = _read(tmp_path / "first")
    assert gx.shape == (150, 3, 12, 12) and np.array_equal(gx, ex) and np.array_equal(gy, ey)
    assert read_index(tmp_path / "first")["channels"] == "first"


def test_hdf5_shards_hold_the_single_files_datasets_under_the_same_keys(tmp_path):
    x, y = _data()
    aug = Augmenter(**AUG)
    one = expand_to_hdf5(x, y, 200, tmp_path / "one.h5", augmenter=aug, progress=False)
    expand_to_shards(x, y, 200, tmp_path / "d", shards=2, augmenter=aug, progress=False)

    def keys(path):
        with h5py.File(path, "r") as f:
            names = []
            f.visit(names.append)
            return names, {k: f[k].dtype for k in names if isinstance(f[k], h5py.Dataset)}, \
                set(f.attrs)

    names, dtypes, attrs = keys(one)
    for i in range(2):
        s_names, s_dtypes, s_attrs = keys(tmp_path / "d" / f"augmented-0000{i}-of-00002.h5")
        assert s_names == names and s_dtypes == dtypes and attrs <= s_attrs
    with h5py.File(tmp_path / "d" / "augmented-00001-of-00002.h5", "r") as f:
        assert (f.attrs["shard"], f.attrs["first_row"], f.attrs["originals"]) == (1, 100, 0)


def make_digits(tmp_path, monkeypatch):
    """A 'digits' dataset like MNIST, imported into this test's cache (no network)."""
    src, reg, arrays = mnist_like(tmp_path, "digits", 60, 10)
    monkeypatch.setenv("DLSETS_REGISTRY", str(reg))
    assert main(["-q", "fetch", "digits", "--from", str(src)]) == 0
    return arrays


@pytest.fixture
def digits(tmp_path, monkeypatch):
    return make_digits(tmp_path, monkeypatch)


ARGS = ["--target", "500", "--rotate", "12", "--shift", "0.1", "--seed", "3"]


def test_job_array_shards_in_separate_processes_in_any_order(tmp_path, digits, capsys):
    assert main(["-q", "augment", "digits", *ARGS, "--out", str(tmp_path / "one.h5")]) == 0
    with h5py.File(tmp_path / "one.h5", "r") as f:
        want_x, want_y = f["train/images"][...], f["train/labels"][...]
    out = tmp_path / "array"
    order = [2, 0, 3, 1]
    random.Random(7).shuffle(order)
    for k, i in enumerate(order):
        assert not (out / "index.json").exists()
        done = subprocess.run(
            [sys.executable, "-m", "dlsets", "augment", "digits", *ARGS, "--shards", "4",
             "--shard", str(i), "--out", f"{out}/"], capture_output=True, text=True,
            timeout=120)
        assert done.returncode == 0, done.stderr
        assert f"shard {i} of 4" in done.stdout
        assert ("wrote" in done.stdout and "index.json" in done.stdout) == (k == 3)
    gx, gy = _read(out)
    assert np.array_equal(gx, want_x) and np.array_equal(gy, want_y)
    doc = read_index(out)
    assert doc["dataset"] == "digits" and doc["settings"]["seed"] == 3
    assert doc["files"][0] == "digits-00000-of-00004.h5"
    # running the whole array again locally keeps every shard, and verify agrees
    before = _state(out)
    capsys.readouterr()
    assert main(["augment", "digits", *ARGS, "--shards", "4", "--out", f"{out}/"]) == 0
    assert _state(out) == before
    # so does the same expansion from Python, by dataset name: the very same settings
    expand_to_shards("digits", None, 500, out, shards=4, seed=3,
                     augmenter=Augmenter(rotate=12, shift=0.1, seed=3))
    assert _state(out) == before
    assert main(["verify", f"{out}/"]) == 0
    assert "4 of 4 shards verified; index.json: ok" in capsys.readouterr().out


STALL = textwrap.dedent("""
    import sys, time
    import numpy as np
    from dlsets.augment import Augmenter
    from dlsets.scale.shards import expand_shard
    from tests.test_shards import AUG, _data

    class Stall(Augmenter):  # works like Augmenter (same repr), then stalls mid-shard
        def __call__(self, images, masks=None, *, start=None, channels=None):
            if start >= int(sys.argv[3]):
                open(sys.argv[2], "w").close()
                time.sleep(120)
            return super().__call__(images, masks, start=start, channels=channels)

    x, y = _data()
    expand_shard(x, y, 400, sys.argv[1], shard=2, shards=4, augmenter=Stall(**AUG),
                 format=sys.argv[4], chunk_size=10)
""")


@pytest.mark.parametrize("format", ["hdf5", pytest.param("webdataset", marks=pytest.mark.extra)])
def test_a_killed_shard_leaves_nothing_under_its_name_and_a_rerun_writes_only_it(
        tmp_path, format):
    x, y = _data()
    aug = Augmenter(**AUG)
    out = tmp_path / "out"
    for i in (0, 1, 3):
        expand_shard(x, y, 400, out, shard=i, shards=4, augmenter=aug, format=format)
    assert not (out / "index.json").exists()
    signal_file = tmp_path / "stalled"
    script = tmp_path / "stall.py"
    script.write_text(STALL)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(signal_file), "240",
                             format], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not signal_file.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the shard writer never got going"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    ext = ".h5" if format == "hdf5" else ".tar"
    name = f"augmented-00002-of-00004{ext}"
    temps = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert temps and all(t.startswith(f".{name}.") for t in temps)  # the partial one
    assert not (out / name).exists() and not (out / f".{name}.json").exists()
    assert not (out / "index.json").exists()
    assert main(["-q", "verify", f"{out}/"]) == 1  # incomplete
    before = _state(out)
    expand_to_shards(x, y, 400, out, shards=4, augmenter=aug, format=format)
    after = _state(out)
    changed = {k for k in before.keys() & after.keys() if before[k] != after[k]}
    assert changed == set() and set(after) - set(before) == {name, f".{name}.json",
                                                            "index.json"}
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # the dead one's too
    ex, ey = expand(x, y, 400, augmenter=aug)
    gx, gy = _read(out)
    assert np.array_equal(gx, ex) and np.array_equal(gy, ey)

    # a damaged shard (same size, one byte changed) and a truncated one: verify says so,
    # and a rerun rewrites exactly those two
    damaged, cut = out / f"augmented-00001-of-00004{ext}", out / f"augmented-00003-of-00004{ext}"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    cut.write_bytes(cut.read_bytes()[:1000])
    report = verify_shards(out)
    assert report.damaged == [damaged.name, cut.name] and len(report.ok) == 2
    before = _state(out)
    expand_to_shards(x, y, 400, out, shards=4, augmenter=aug, format=format)
    after = _state(out)
    assert {k for k in before if before[k] != after[k]} == {damaged.name, cut.name}
    assert verify_shards(out).complete


@pytest.mark.extra  # needs an optional extra
def test_webdataset_and_tarfile_read_the_tar_shards(tmp_path):
    x, y = _data(side=9)
    x = np.stack([x, x // 2, 255 - x], axis=-1)  # colour, (H, W, 3)
    y = (y * 100).astype(np.uint16)  # labels of 1 to 3 digits
    aug = Augmenter(**AUG)
    ex, ey = expand(x, y, 150, augmenter=aug)
    expand_to_shards(x, y, 150, tmp_path, shards=2, augmenter=aug, format="webdataset",
                     name="colour")
    import webdataset as wds

    urls = str(tmp_path / "colour-{00000..00001}-of-00002.tar")
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode())
    assert [s["__key__"] for s in samples] == [f"{i:010d}" for i in range(150)]
    assert np.array_equal(np.stack([s["npy"] for s in samples]), ex)
    assert [s["cls"] for s in samples] == ey.tolist()
    # byte for byte what Python's tarfile writes for these members
    mine = (tmp_path / "colour-00000-of-00002.tar").read_bytes()
    with tarfile.open(tmp_path / "colour-00000-of-00002.tar") as t:
        members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
    assert len(members) == 150 and members[1][0].name == "0000000000.npy"
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for m, data in members:
            info = tarfile.TarInfo(m.name)
            info.size, info.mode, info.mtime = len(data), 0o444, 0
            t.addfile(info, io.BytesIO(data))
    assert buf.getvalue() == mine


def test_bad_shard_options_are_option_errors_and_nothing_is_overwritten(
        tmp_path, digits, capsys):
    x, y = _data()
    aug = Augmenter(**AUG)
    with pytest.raises(OptionError, match="shard=4 is not allowed.*0..3"):
        expand_shard(x, y, 100, tmp_path / "a", shard=4, shards=4, augmenter=aug)
    with pytest.raises(OptionError, match="shards=101 is more than the target of 100"):
        expand_shard(x, y, 100, tmp_path / "a", shard=0, shards=101, augmenter=aug)
    with pytest.raises(OptionError, match="name="):
        expand_shard(x, y, 100, tmp_path / "a", shard=0, shards=1, augmenter=aug, name="../x")
    assert not (tmp_path / "a").exists()
    out = tmp_path / "b"
    expand_to_shards(x, y, 100, out, shards=2, augmenter=aug)
    before = _state(out)
    for change, what in ((dict(seed=1), "seed 0 there, 1 here"), (dict(shards=3), "shards 2"),
                         (dict(augmenter=Augmenter(rotate=5)), "augmenter"),
                         (dict(format="webdataset"), "format 'hdf5' there")):
        kw = dict(shards=2, augmenter=aug) | change
        with pytest.raises(OptionError, match=f"another expansion.*{what}"):
            expand_to_shards(x, y, 100, out, **kw)
        with pytest.raises(OptionError, match="another expansion"):
            expand_shard(x, y, 100, out, shard=0, **kw)
    with pytest.raises(OptionError, match="another expansion.*images_sha256"):
        expand_to_shards(x[::-1].copy(), y[::-1].copy(), 100, out, shards=2, augmenter=aug)
    assert _state(out) == before

    def cli(*argv):
        code = main(["augment", "digits", *ARGS, *argv])
        return code, capsys.readouterr().err

    d = f"{tmp_path / 'c'}/"
    for argv, message in (
        (["--shards", "4", "--shard", "4", "--out", d], "--shard 4 is outside 0..3"),
        (["--shards", "4", "--shard", "-1", "--out", d], "--shard -1 is outside 0..3"),
        (["--shards", "501", "--out", d], "--shards 501 is more than --target 500"),
        (["--shard", "1", "--out", d], "--shard I needs --shards N"),
        (["--shards", "2", "--shard", "1", "--engine", "ray", "--out", d], "one or the other"),
        (["--shards", "2", "--out", str(tmp_path / "x.h5")], "shards go into a folder"),
        (["--format", "webdataset", "--out", str(tmp_path / "x.tar")], "into a folder"),
    ):
        code, err = cli(*argv)
        assert code == 1 and message in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "c").exists()
    assert main(["-q", "augment", "digits", *ARGS, "--shards", "2", "--out", d]) == 0
    before = _state(tmp_path / "c")
    code, err = cli("--shards", "2", "--seed", "4", "--out", d)
    assert code == 1 and "another expansion" in err and "seed 3 there, 4 here" in err
    assert _state(tmp_path / "c") == before


@pytest.mark.parametrize("format", ["hdf5", pytest.param("webdataset", marks=pytest.mark.extra)])
def test_load_shards_gives_each_rank_an_equal_disjoint_share(tmp_path, format):
    x, y = _data()
    aug = Augmenter(**AUG)
    ex, ey = expand(x, y, 301, augmenter=aug)
    expand_to_shards(x, y, 301, tmp_path, shards=4, augmenter=aug, format=format)
    parts = [load_shards(tmp_path, rank=r, world_size=3) for r in range(3)]
    assert [len(p) for p in parts] == [100, 100, 100]  # 301 // 3; row 300 is in none
    assert np.array_equal(np.concatenate([np.asarray(p.images) for p in parts]), ex[:300])
    assert np.array_equal(np.concatenate([p.labels for p in parts]), ey[:300])
    images = parts[1].images
    assert images.shape == (100, 12, 12) and images.dtype == np.uint8 and len(images) == 100
    idx = np.array([99, 0, 50, 50, 3, 74, 76])  # across a shard boundary (row 150), repeated
    assert np.array_equal(images[idx], ex[100 + idx])
    assert np.array_equal(images[-1], ex[199]) and np.array_equal(images[5, 2:4], ex[105, 2:4])
    assert np.array_equal(images[10:20:3], ex[110:120:3])
    assert np.array_equal(pickle.loads(pickle.dumps(images))[idx], ex[100 + idx])
    whole = load_shards(tmp_path)
    assert len(whole) == 301 and np.array_equal(whole.labels, ey)
    with pytest.raises(OptionError, match="rank=3"):
        load_shards(tmp_path, rank=3, world_size=3)
    with pytest.raises(OptionError, match="fewer than world_size"):
        load_shards(tmp_path, rank=0, world_size=302)
    (tmp_path / "index.json").unlink()
    with pytest.raises(FormatError, match="not complete"):
        load_shards(tmp_path)


@pytest.mark.extra  # needs an optional extra
def test_a_ranks_shards_feed_the_batch_stream_and_a_torch_dataloader(tmp_path):
    """load_shards' lazy Split goes straight into dlsets.batches and dlsets.torch, and reaches
    DataLoader workers (the shard files reopened there) with the same rows."""
    import torch
    from torch.utils.data import DataLoader

    import dlsets
    from dlsets.feed.torch import AugmentedDataset

    x, y = _data()
    aug = Augmenter(**AUG)
    ex, ey = expand(x, y, 160, augmenter=aug)
    expand_to_shards(x, y, 160, tmp_path, shards=3, augmenter=aug)
    part = load_shards(tmp_path, rank=1, world_size=2)  # rows 80..159
    seen = np.concatenate([b for b, _ in dlsets.batches(part, batch_size=32, shuffle=False)])
    assert np.array_equal(seen, ex[80:])
    shuffled = np.concatenate([b for b, _ in dlsets.batches(part, batch_size=25, seed=1)])
    # the same rows (each once), in another order
    assert sorted(map(bytes, shuffled)) == sorted(map(bytes, ex[80:]))
    assert not np.array_equal(shuffled, ex[80:])
    ds = AugmentedDataset(part, dtype="uint8", channels="last")
    loader = DataLoader(ds, batch_size=16, shuffle=False, num_workers=2,
                        multiprocessing_context="fork")
    xs, ys = zip(*loader, strict=True)
    assert np.array_equal(torch.cat(xs).numpy(), ex[80:, ..., None])  # (B, H, W, 1)
    assert np.array_equal(torch.cat(ys).numpy(), ey[80:])


def test_load_shards_of_a_missing_folder_or_a_file_says_so(tmp_path):
    with pytest.raises(OptionError, match="no such folder"):
        load_shards(tmp_path / "nope")
    (tmp_path / "one.h5").write_bytes(b"")
    with pytest.raises(OptionError, match="not a folder of shards"):
        load_shards(tmp_path / "one.h5")


@pytest.mark.parametrize("rank", [0, 1])
def test_compressed_shard_folders_are_read_in_the_chunk_aware_order(tmp_path, rank):
    # a full shuffle of compressed shards decodes a chunk for nearly every row (27x the RAM
    # epoch measured): the shards' chunks give the epoch its units, as for one compressed file
    from dlsets.data import chunkorder
    from dlsets.feed.batching import batches

    x, y = _data()
    folder = tmp_path / "s"
    expand_to_shards(x, y, 300, folder, shards=3, augmenter=Augmenter(**AUG),
                     compression="gzip", chunk_size=7)
    plain = tmp_path / "p"
    expand_to_shards(x, y, 300, plain, shards=3, augmenter=Augmenter(**AUG))
    split = load_shards(folder, rank=rank, world_size=2)
    with h5py.File(folder / read_index(folder)["shards"][0]["file"], "r") as f:
        rows = chunkorder.rows_per_chunk(f["train/images"])
    assert rows and split.images.chunk_rows == rows
    # units follow each shard's chunks: none spans two shards or two chunks
    starts = split.images.chunk_starts
    edges = {p[0] for p in split.images._pieces}
    assert starts[0] == 0 and edges <= set(starts.tolist()) and np.all(np.diff(starts) > 0)
    for pos, _, row, count, _ in split.images._pieces:
        inside = starts[(starts >= pos) & (starts < pos + count)]
        assert np.all((inside[1:] - pos + row) % rows == 0)
        assert np.all(np.diff(np.append(inside, pos + count)) <= rows)
    assert load_shards(plain).images.chunk_rows is None  # maps: the full shuffle
    want = load_shards(plain, rank=rank, world_size=2)
    n = len(split)
    b = batches(split.images, split.labels, 32, seed=5)
    for e in range(2):
        order = b.indices(e)
        assert np.array_equal(order, chunkorder.epoch_order(n, rows, e, seed=5, starts=starts))
        assert np.array_equal(np.sort(order), np.arange(n))
        got = np.concatenate([b.batch(i, e)[0] for i in range(len(b))])
        assert np.array_equal(got, want.images[order[:len(got)]])
