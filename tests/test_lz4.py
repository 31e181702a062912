"""lz4-compressed HDF5 (hdf5plugin's LZ4 filter, the ``lz4`` extra): written by every HDF5
writer, read by every reader (the filter registered on first need, in any process), and a
clear error where hdf5plugin or a file's filter is missing."""

import json
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

import dlsets
from dlsets.errors import MissingDependencyError, OptionError

pytestmark = pytest.mark.extra  # hdf5plugin
LZ4 = 32004


def _digits(n=300, seed=0):
    """MNIST-like: strokes on black, which lz4 shrinks several times."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        r, c = rng.integers(4, 20, 2)
        x[i, r:r + 6, c:c + 3] = rng.integers(100, 255)
    return x, (np.arange(n) % 10).astype(np.uint8)


def _filters(dset) -> list[int]:
    plist = dset.id.get_create_plist()
    return [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]


def _python(code: str, block_hdf5plugin: bool = False, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter (nothing imported: no filter registered yet), with
    ``env`` added to the environment; it sets ``out``, returned as JSON."""
    head = "import json, sys\nout = {}\n"
    if block_hdf5plugin:
        head += "sys.modules['hdf5plugin'] = None  # import hdf5plugin: ImportError\n"
    script = head + textwrap.dedent(code) + "\nprint(json.dumps(out))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_lz4_expansion_reads_back_as_the_uncompressed_one_and_is_smaller(tmp_path):
    x, y = _digits()
    aug = dlsets.Augmenter(rotate=10, seed=0)
    plain = dlsets.expand_to_hdf5(x, y, 3000, tmp_path / "plain.h5", augmenter=aug,
                                  progress=False)
    small = dlsets.expand_to_hdf5(x, y, 3000, tmp_path / "lz4.h5", augmenter=aug,
                                  compression="lz4", progress=False)
    with h5py.File(small) as f:
        assert _filters(f["train/images"]) == [LZ4] and _filters(f["train/labels"]) == [LZ4]
        stored = f["train/images"].id.get_storage_size()
    assert stored < x[0].size * 3000 / 3
    with dlsets.load(plain) as a, dlsets.load(small) as b:
        assert np.array_equal(a.train.images[:], b.train.images[:])
        assert np.array_equal(a.train.labels[:], b.train.labels[:])
        # a shuffled epoch takes the chunk-aware order, as for lzf, and reads every row once
        feed = dlsets.batches(b.train.images, b.train.labels, batch_size=256, seed=1)
        seen = np.concatenate([yb for _, yb in feed])
        assert sorted(seen.tolist()) == sorted(a.train.labels[:].tolist())
        from dlsets.data.chunkorder import rows_per_chunk

        assert rows_per_chunk(b.train.images) is not None


def test_a_fresh_process_reads_lz4_files_and_shards_without_importing_hdf5plugin(tmp_path):
    x, y = _digits(200)
    m = (x > 0).astype(np.uint8)
    aug = dlsets.Augmenter(rotate=10, seed=0)
    path = dlsets.expand_to_hdf5(x, y, 1000, tmp_path / "a.h5", augmenter=aug,
                                 compression="lz4", masks=m, progress=False)
    folder = tmp_path / "shards"
    dlsets.expand_to_shards(x, y, 1000, folder, shards=3, augmenter=aug, compression="lz4",
                            progress=False)
    with dlsets.load(path) as ds:
        want = [int(ds.train.images[:].sum()), int(ds.train.masks[:].sum())]
    shards = dlsets.load_shards(folder)
    want_shards = int(shards.images[:].sum())
    code = f"""
        import dlsets
        with dlsets.load({str(path)!r}) as ds:
            out["file"] = [int(ds.train.images[:].sum()), int(ds.train.masks[:].sum())]
        out["plugin_imported"] = "hdf5plugin" in sys.modules
        out["shards"] = int(dlsets.load_shards({str(folder)!r}).images[:].sum())
    """
    # as it comes; and as importing TensorFlow leaves it: HDF5's own plugin loading disabled
    for env in ({"HDF5_PLUGIN_PATH": ""}, {"HDF5_PLUGIN_PATH": "disable"}):
        got = _python(code, **env)
        assert got == {"file": want, "plugin_imported": True, "shards": want_shards}, env
    assert want_shards == want[0]  # the same samples, one file or three shards


def test_without_hdf5plugin_lz4_is_refused_before_work_and_lz4_files_name_the_extra(tmp_path):
    x, y = _digits(50)
    path = dlsets.expand_to_hdf5(x, y, 50, tmp_path / "a.h5", compression="lz4",
                                 progress=False)
    got = _python(f"""
        import os, dlsets
        for what, call in (
                ("expand", lambda: dlsets.expand_to_hdf5(
                    __import__("numpy").zeros((4, 8, 8), "uint8"), [0, 1, 0, 1], 4,
                    {str(tmp_path / "new.h5")!r}, compression="lz4")),
                ("load", lambda: dlsets.load({str(path)!r}))):
            try:
                call()
                out[what] = "no error"
            except dlsets.DlsetsError as exc:
                out[what] = [type(exc).__name__, str(exc)]
        out["written"] = os.path.exists({str(tmp_path / "new.h5")!r})
    """, block_hdf5plugin=True, HDF5_PLUGIN_PATH="")
    for what in ("expand", "load"):
        kind, text = got[what]
        assert kind == "MissingDependencyError", got
        assert "hdf5plugin" in text and "pip install 'dlsets[lz4]'" in text, text
    assert "filter 32004" in got["load"][1] and str(path) in got["load"][1]
    assert got["written"] is False


def test_a_filter_nobody_provides_is_a_format_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv("HDF5_PLUGIN_PATH", raising=False)  # no folder HDF5 might load it from
    x, y = _digits(50)
    path = dlsets.expand_to_hdf5(x, y, 50, tmp_path / "a.h5", compression="lz4",
                                 progress=False)
    # renumber the LZ4 filter in the file's filter pipeline messages (id, name length, flags,
    # values, then the name): a filter id that no library registers
    raw = bytearray(path.read_bytes())
    name = b"HDF5 lz4 filter"
    at = [i for i in range(len(raw)) if raw.startswith(name, i)]
    assert at
    for i in at:
        assert int.from_bytes(raw[i - 8:i - 6], "little") == LZ4
        raw[i - 8:i - 6] = (32099).to_bytes(2, "little")
    path.write_bytes(bytes(raw))
    with pytest.raises(dlsets.FormatError, match="filter 32099 .*neither HDF5 nor hdf5plugin"):
        dlsets.load(path)


def test_every_hdf5_writer_takes_lz4_and_refuses_unknown_compressions(tmp_path, capsys):
    x, y = _digits(60)
    ds = dlsets.Dataset("d", dlsets.Split(x, y), dlsets.Split(x[:10], y[:10]), ())
    out = ds.to_hdf5(tmp_path / "d.h5", compression="lz4")
    with h5py.File(out) as f:
        assert _filters(f["train/images"]) == [LZ4] and _filters(f["test/images"]) == [LZ4]
        assert np.array_equal(f["test/images"][:], x[:10])
    for call in (lambda: ds.to_hdf5(tmp_path / "e.h5", compression="zstd"),
                 lambda: dlsets.expand_to_hdf5(x, y, 100, tmp_path / "f.h5",
                                               compression="zstd"),
                 lambda: dlsets.expand_to_shards(x, y, 100, tmp_path / "g", compression="zstd")):
        with pytest.raises(OptionError, match="'lz4'"):
            call()
    with pytest.raises(OptionError, match="for webdataset shards"):
        dlsets.expand_to_shards(x, y, 100, tmp_path / "h", compression="lz4",
                                format="webdataset")
    assert not any(tmp_path.glob("[efgh]*"))
    assert issubclass(MissingDependencyError, ImportError)


def test_batches_of_an_lz4_file_pickled_to_a_fresh_process_read_there(tmp_path):
    """What a spawned DataLoader or Keras worker gets: the feed reopens the file itself."""
    import pickle

    x, y = _digits(100)
    path = dlsets.expand_to_hdf5(x, y, 600, tmp_path / "a.h5", compression="lz4",
                                 augmenter=dlsets.Augmenter(rotate=10, seed=0), progress=False)
    with dlsets.load(path) as ds:
        feed = dlsets.batches(ds.train.images, ds.train.labels, batch_size=64, seed=2)
        (tmp_path / "feed.pkl").write_bytes(pickle.dumps(feed))
        want = [int(xb.sum()) for xb, _ in feed]
    got = _python(f"""
        import pickle
        feed = pickle.loads(open({str(tmp_path / "feed.pkl")!r}, "rb").read())
        out["sums"] = [int(xb.sum()) for xb, _ in feed]
    """)
    assert got["sums"] == want and len(want) == 10


def test_the_cli_exports_lz4(capsys, tmp_path):
    from dlsets.cli import main
    from tests.imagefolders import class_folder

    root = class_folder(tmp_path / "pets", {"cat": 6, "dog": 6})
    out = tmp_path / "p.h5"
    code = main(["export", str(root), "--size", "8", "8", "--compression", "lz4", "--out",
                 str(out)])
    assert code == 0, capsys.readouterr().err
    with h5py.File(out) as f:
        assert _filters(f["train/images"]) == [LZ4] and f["train/images"].shape[1:] == (8, 8, 3)
    with dlsets.load(out) as ds:
        assert len(ds.train.images) + len(ds.test.images) == 12


def _damage_chunk(path, dataset="train/images", k=1):
    """Overwrite the middle of the k-th stored chunk of ``dataset`` with other bytes."""
    with h5py.File(path) as f:
        info = f[dataset].id.get_chunk_info(k)
    raw = bytearray(path.read_bytes())
    a = info.byte_offset + info.size // 3
    raw[a:a + 64] = bytes((b ^ 0x5A) for b in raw[a:a + 64])
    path.write_bytes(bytes(raw))


def test_a_damaged_lz4_chunk_is_a_format_error_naming_the_file_and_verify_finds_it(
        tmp_path, capsys):
    from dlsets.cli import main

    x, y = _digits(400)
    path = dlsets.expand_to_hdf5(x, y, 4000, tmp_path / "a.h5", compression="lz4",
                                 augmenter=dlsets.Augmenter(rotate=10, seed=0), progress=False)
    assert main(["verify", str(path)]) == 0
    assert "a.h5: ok (every dataset read whole)" in capsys.readouterr().out
    _damage_chunk(path)
    with dlsets.load(path) as ds:
        with pytest.raises(dlsets.FormatError, match=r"a\.h5: /train/images rows .*damaged"):
            for _ in dlsets.batches(ds.train.images, ds.train.labels, batch_size=256):
                pass
    code = main(["verify", str(path)])
    out = capsys.readouterr()
    assert code == 1 and "Traceback" not in out.err
    assert "/train/images rows" in out.out and "damaged" in out.out, out.out


def test_a_plugin_folder_without_the_filter_still_names_the_extra(tmp_path):
    x, y = _digits(50)
    path = dlsets.expand_to_hdf5(x, y, 50, tmp_path / "a.h5", compression="lz4",
                                 progress=False)
    (tmp_path / "plugins").mkdir()  # as a conda environment may set it: a folder, no LZ4
    got = _python(f"""
        import dlsets
        try:
            dlsets.load({str(path)!r})
            out["load"] = "no error"
        except dlsets.DlsetsError as exc:
            out["load"] = [type(exc).__name__, str(exc)]
    """, block_hdf5plugin=True, HDF5_PLUGIN_PATH=str(tmp_path / "plugins"))
    assert got["load"][0] == "MissingDependencyError", got
    assert "pip install 'dlsets[lz4]'" in got["load"][1]


def test_the_cli_augments_to_lz4_files_and_shards(capsys, tmp_path):
    from dlsets.cli import main
    from tests.imagefolders import class_folder

    root = class_folder(tmp_path / "pets", {"cat": 6, "dog": 6})
    for out in (tmp_path / "a.h5", f"{tmp_path / 'shards'}/"):
        code = main(["augment", str(root), "--size", "8", "8", "--target", "40", "--rotate",
                     "5", "--compression", "lz4", "--out", str(out)])
        assert code == 0, capsys.readouterr().err
    with h5py.File(tmp_path / "a.h5") as f:
        assert _filters(f["train/images"]) == [LZ4]
    shard = next((tmp_path / "shards").glob("*.h5"))
    with h5py.File(shard) as f:
        assert _filters(f["train/images"]) == [LZ4]
    assert len(dlsets.load_shards(tmp_path / "shards")) == 40
