"""Shuffled epochs read from HDF5 files and shard folders: the same pixels per sample id as
from RAM, in every layout (contiguous, chunked as written before, compressed), every sample
once per epoch per rank, seeded orders, and batches as mixed as a full shuffle."""

import pickle

import h5py
import numpy as np
import pytest

import dlsets
from dlsets import Augmenter
from dlsets.data import chunkorder
from dlsets.data.fastread import ChunkRows, JoinedRows, row_map, rows_of
from dlsets.errors import FormatError
from dlsets.feed.batching import batches, epoch_order
from dlsets.formats import h5

N, CLASSES = 300, 10


def _data():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (N, 8, 8, 3), dtype=np.uint8)
    y = np.repeat(np.arange(CLASSES), N // CLASSES).astype(np.uint8)  # grouped by class
    return x, y


def _old_chunks(count, row_shape, dtype, compression):
    """The layout files were written in before: chunks of whole rows (7 here, for many
    chunks in a small file), compressed or not."""
    return (min(count, 7), *row_shape) if count else None


def _write(path, x, y, layout, monkeypatch):
    """A file as dlsets writes it: ``new`` (today's writer), ``old`` (chunked, uncompressed,
    as written before) or ``gzip`` (compressed chunks)."""
    with monkeypatch.context() as m:
        if layout != "new":
            m.setattr(h5, "_chunks", _old_chunks)
        with h5.atomic_hdf5(path) as f:
            images, labels = h5.create_split(f, "train", len(x), x.shape[1:],
                                             compression="gzip" if layout == "gzip" else None)
            images[:], labels[:] = x, y
            h5.write_attrs(f, [str(c) for c in range(CLASSES)])
    return path


def _per_sample(b, epochs=(0, 1)):
    """Every epoch's output images indexed by sample row, and the epoch orders."""
    out, orders = {}, []
    for e in epochs:
        got = np.zeros((b.n, *b.feed.image_shape), b.feed.out_dtype)
        for i in range(len(b)):
            idx = b.batch_indices(i, e)
            xb, yb = b.batch(i, e)
            got[idx] = xb
        out[e] = got
        orders.append(b.indices(e).copy())
    return out, orders


@pytest.mark.parametrize("layout", ["new", "old", "gzip"])
def test_epochs_from_files_give_ram_pixels(tmp_path, monkeypatch, layout):
    x, y = _data()
    path = _write(tmp_path / "d.h5", x, y, layout, monkeypatch)
    aug = Augmenter(rotate=20, shift=0.1, seed=4)
    ram, ram_orders = _per_sample(batches(x, y, 32, augmenter=aug, seed=9))
    with h5py.File(path, "r") as f:
        d = f["train/images"]
        assert d.chunks is None if layout == "new" else d.chunks[0] == 7
        kind = {"new": np.ndarray, "old": ChunkRows, "gzip": chunkorder.ChunkCache}[layout]
        assert isinstance(rows_of(d), kind)
        disk, disk_orders = _per_sample(batches(d, f["train/labels"], 32, augmenter=aug, seed=9))
        for e in ram:
            assert np.array_equal(disk[e], ram[e])  # pixels per (epoch, sample id)
            assert np.array_equal(np.sort(disk_orders[e]), np.arange(N))
        if layout == "gzip":  # chunk-aware: another order, documented
            rows = chunkorder.rows_per_chunk(d)
            assert all(np.array_equal(o, chunkorder.epoch_order(N, rows, e, seed=9))
                       for e, o in enumerate(disk_orders))
        else:  # mapped: the full shuffle, as from RAM
            assert all(np.array_equal(a, b) for a, b in zip(disk_orders, ram_orders, strict=True))


def test_maps_only_plain_bytes(tmp_path):
    x, _ = _data()
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("cut", data=x, chunks=(4, 8, 4, 3))  # chunks cut rows
        f.create_dataset("lzf", data=x, chunks=(4, 8, 8, 3), compression="lzf")
        f.create_dataset("plain", data=x)
        f.create_dataset("empty", shape=x.shape, dtype=x.dtype)  # never written
        f.create_dataset("text", data=np.array([b"ab", b"cd"]))
    with h5py.File(tmp_path / "f.h5", "r") as f:
        assert isinstance(rows_of(f["cut"]), h5py.Dataset)  # read through h5py as before
        for name in ("cut", "lzf", "empty", "text"):
            assert row_map(f[name]) is None, name
        assert rows_of(f["empty"])[3].sum() == 0  # HDF5's fill value, through h5py
        m = row_map(f["plain"])
        assert not m.flags.writeable and np.array_equal(m[[5, 1, 5]], x[[5, 1, 5]])
        assert np.array_equal(rows_of(f["lzf"])[[9, 0, 299, 9]], x[[9, 0, 299, 9]])
    with h5py.File(tmp_path / "f.h5", "r+") as f:  # may still change: not mapped
        assert row_map(f["plain"]) is None


def test_chunk_rows_index_like_arrays(tmp_path, monkeypatch):
    x, y = _data()
    path = _write(tmp_path / "d.h5", x, y, "old", monkeypatch)
    with h5py.File(path, "r") as f:
        rows = row_map(f["train/images"])
        for key in (7, -1, slice(3, 40, 5), np.array([299, 0, 6, 7, 6])):
            assert np.array_equal(rows[key], x[key])
        with pytest.raises(IndexError):
            rows[np.array([300])]


def test_truncated_data_is_a_format_error(tmp_path, monkeypatch):
    x, y = _data()
    path = _write(tmp_path / "d.h5", x, y, "new", monkeypatch)
    with h5py.File(path, "r") as f:
        d = f["train/images"]
        monkeypatch.setattr("os.path.getsize", lambda p: d.id.get_offset() + 10)
        with pytest.raises(FormatError, match="truncated"):
            rows_of(d)


@pytest.mark.parametrize("layout", ["new", "old", "gzip"])
def test_every_sample_once_per_epoch_per_rank(tmp_path, monkeypatch, layout):
    x, y = _data()
    path = _write(tmp_path / "d.h5", x, y, layout, monkeypatch)
    with h5py.File(path, "r") as f:
        for e in (0, 3):
            shares = [batches(f["train/images"], f["train/labels"], 16, rank=r, world_size=7,
                              seed=2).indices(e) for r in range(7)]
            assert len({len(s) for s in shares}) == 1
            got = np.concatenate(shares)
            assert len(got) == N - N % 7 and len(np.unique(got)) == len(got)


def test_chunk_order_is_seeded():
    a = chunkorder.epoch_order(1000, 21, 0, seed=1)
    assert np.array_equal(a, chunkorder.epoch_order(1000, 21, 0, seed=1))
    assert np.array_equal(np.sort(a), np.arange(1000))
    assert not np.array_equal(a, chunkorder.epoch_order(1000, 21, 1, seed=1))
    assert not np.array_equal(a, chunkorder.epoch_order(1000, 21, 0, seed=2))


def test_chunk_order_with_units_of_their_own_lengths():
    # a shard folder's units: each shard's chunks, the last of each shard shorter
    starts = np.array([0, 21, 42, 50, 71, 92, 100, 121])
    n, window = 130, 3
    orders = []
    for e in range(3):
        order = chunkorder.epoch_order(n, 21, e, seed=4, window=window, starts=starts)
        assert np.array_equal(np.sort(order), np.arange(n))
        unit = np.searchsorted(starts, order, side="right") - 1
        for u in range(len(starts)):  # a unit's rows lie in one window of <= window units
            at = np.flatnonzero(unit == u)
            assert len(np.unique(unit[at.min():at.max() + 1])) <= window
        orders.append(order)
    assert not np.array_equal(orders[0], orders[1])
    # equal units from 0 give the single-file order
    assert np.array_equal(chunkorder.epoch_order(100, 10, 2, seed=1),
                          chunkorder.epoch_order(100, 10, 2, seed=1, starts=np.arange(0, 100, 10)))


@pytest.mark.parametrize("rows", [1, 21, 80])
@pytest.mark.parametrize("grouped", [True, False])
def test_chunk_order_mixes_like_a_full_shuffle(rows, grouped):
    n, batch = 60_000, 256
    y = np.arange(n) % 10
    if grouped:  # every chunk of one class: the hard case
        y = np.sort(y)
    full = chunkorder.batch_entropy(y, epoch_order(n, 0, seed=3), batch)
    for e in range(2):
        ours = chunkorder.batch_entropy(y, chunkorder.epoch_order(n, rows, e, seed=3), batch)
        assert ours >= 0.97 * full, (ours, full)
    assert chunkorder.batch_entropy(y, np.arange(n), batch) < (0.5 * full if grouped else 9e9)


def _never_whole(self, *a, **k):
    raise AssertionError("a batch read converted a whole dataset")


def test_shard_folders_of_each_layout_read_like_ram(tmp_path, monkeypatch):
    x, y = _data()
    for cls in (ChunkRows, chunkorder.ChunkCache):  # batches gather rows, never whole files
        monkeypatch.setattr(cls, "__array__", _never_whole, raising=False)
    aug = Augmenter(rotate=10, seed=1)
    ram, _ = _per_sample(batches(x, y, 32, augmenter=aug, seed=4), epochs=(0,))
    for layout, compression in (("new", None), ("old", None), ("old", "gzip")):
        with monkeypatch.context() as m:
            if layout == "old":
                m.setattr(h5, "_chunks", _old_chunks)
            dlsets.expand_to_shards(x, y, N, tmp_path / f"{layout}-{compression}", shards=3,
                                    balance=False, compression=compression, progress=False)
        split = dlsets.load_shards(tmp_path / f"{layout}-{compression}")
        assert np.array_equal(split.images[:], x) and np.array_equal(split.labels, y)
        disk, _ = _per_sample(batches(split, augmenter=aug, seed=4), epochs=(0,))
        assert np.array_equal(disk[0], ram[0]), (layout, compression)
        perm = np.random.default_rng(0).permutation(N)
        assert np.array_equal(split.images[perm], x[perm])


@pytest.mark.parametrize("layout", ["new", "old", "gzip", "tar"])
def test_a_batch_across_shards_is_one_gather_over_their_maps(tmp_path, monkeypatch, layout):
    """Shards stored plainly (new, old, tar) are read through one JoinedRows view of all
    their maps; compressed ones as before. Either way rows as in RAM, for a rank's share."""
    x, y = _data()
    with monkeypatch.context() as m:
        if layout in ("old", "gzip"):
            m.setattr(h5, "_chunks", _old_chunks)
        dlsets.expand_to_shards(x, y, N, tmp_path, shards=4, balance=False, progress=False,
                                compression="gzip" if layout == "gzip" else None,
                                format="webdataset" if layout == "tar" else "hdf5")
    images = dlsets.load_shards(tmp_path, rank=1, world_size=2).images  # rows 150..299
    idx = np.random.default_rng(3).integers(-150, 150, 400)  # every shard, repeats, negatives
    for copy in (images, pickle.loads(pickle.dumps(images))):
        assert np.array_equal(copy[idx], x[150 + idx % 150])
        assert isinstance(copy._joined, JoinedRows) == (layout != "gzip")
    images.close()  # files closed: the view goes with them, made again on the next read
    assert images._joined is None and np.array_equal(images[idx], x[150 + idx % 150])
    with pytest.raises(ValueError):  # rows of another size cannot share the view
        JoinedRows([np.zeros((2, 3), np.uint8), np.zeros((2, 4), np.uint8)])


@pytest.mark.extra  # torch
@pytest.mark.parametrize("layout", ["old", "gzip"])
def test_dataloader_workers_read_each_layout(tmp_path, monkeypatch, layout):
    from torch.utils.data import DataLoader

    from dlsets.feed.torch import AugmentedDataset

    x, _ = _data()
    x, y = x[:200], np.arange(200, dtype=np.uint8)  # labels name the rows
    path = _write(tmp_path / "d.h5", x, y, layout, monkeypatch)
    aug = Augmenter(rotate=15, seed=7)
    with h5py.File(path, "r") as f:
        ds = AugmentedDataset(f["train/images"], f["train/labels"], aug, dtype="uint8",
                              channels="last")
        seen = []
        for xb, yb in DataLoader(ds, batch_size=16, shuffle=True, num_workers=2):
            j = yb.numpy()
            assert np.array_equal(xb.numpy(), aug(x[j], ids=j))
            seen.append(j)
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(200))
