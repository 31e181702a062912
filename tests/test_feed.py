"""The framework-neutral batch stream: epoch plan, id rule, sharding, conversion, errors;
validation splits and dataset statistics."""

import h5py
import numpy as np
import pytest

import dlsets
from dlsets import Augmenter
from dlsets.data.dataset import Dataset, Split
from dlsets.data.splits import Rows, split_indices, train_val_split
from dlsets.errors import OptionError
from dlsets.feed.batching import batches, epoch_order, sample_ids

RNG = np.random.default_rng(3)


def _data(n=50, shape=(12, 12), classes=5):
    x = RNG.integers(0, 256, (n, *shape), dtype=np.uint8)
    y = (np.arange(n) % classes).astype(np.uint8)
    return x, y


def _aug():
    return Augmenter(rotate=20, shift=0.1, seed=4)


def test_batches_follow_the_id_rule_whatever_the_batch_size():
    x, y = _data()
    aug = _aug()
    for size in (7, 50):
        stream = batches(x, y, size, augmenter=aug, seed=1)
        for epoch in (0, 1):
            order = np.concatenate([stream.batch_indices(i, epoch) for i in range(len(stream))])
            assert sorted(order) == list(range(50))
            got = np.concatenate([stream.batch(i, epoch)[0] for i in range(len(stream))])
            want = aug(x[order], ids=epoch * 50 + order)
            assert np.array_equal(got, want)
            assert np.array_equal(np.concatenate(
                [stream.batch(i, epoch)[1] for i in range(len(stream))]), y[order])
    # the same (epoch, sample) pair gets the same transform in any order and batch
    a = batches(x, y, 7, augmenter=aug, seed=1).batch(0, 1)
    j = int(batches(x, y, 7, augmenter=aug, seed=1).batch_indices(0, 1)[0])
    assert np.array_equal(a[0][0], aug.image(x[j], id=sample_ids(1, j, 50)))
    assert aug.position == 0


def test_each_pass_is_a_new_epoch_and_set_epoch_chooses_it():
    x, y = _data(n=20)
    stream = batches(x, y, 8, augmenter=_aug())
    first = [b[0] for b in stream]
    second = [b[0] for b in stream]
    assert len(first) == len(stream) == 3 and [len(b) for b in first] == [8, 8, 4]
    assert not any(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    stream.set_epoch(0)
    assert all(np.array_equal(a, b[0]) for a, b in zip(first, stream, strict=True))
    assert not np.array_equal(epoch_order(20, 0, seed=0), epoch_order(20, 1, seed=0))
    assert np.array_equal(batches(x, y, 8, shuffle=False).indices(), np.arange(20))


def test_ranks_get_disjoint_equal_shares_of_every_epoch():
    x, y = _data(n=23)
    for pad in (False, True):
        shares = [batches(x, y, 4, rank=r, world_size=3, pad=pad).indices(epoch=2)
                  for r in range(3)]
        sizes = {len(s) for s in shares}
        every = np.concatenate(shares)
        if pad:
            assert sizes == {8} and set(every) == set(range(23))  # one repeat each of 1 sample
        else:
            assert sizes == {7} and len(set(every)) == 21  # disjoint, the last 2 left out
        assert {len(batches(x, y, 4, rank=r, world_size=3, pad=pad)) for r in range(3)} == {2}
    # a rank's transforms are those of the same samples on one process
    aug = _aug()
    one = batches(x, y, 4, augmenter=aug, rank=1, world_size=3)
    idx = one.batch_indices(1, 5)
    assert np.array_equal(one.batch(1, 5)[0], aug(x[idx], ids=5 * 23 + idx))


def test_conversion_layout_dtype_and_normalisation():
    x = RNG.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    y = np.arange(6)
    raw = batches(x, y, 6, shuffle=False).batch(0)[0]
    assert raw.dtype == np.uint8 and np.array_equal(raw, x)
    first = batches(x, y, 6, shuffle=False, channels="first", dtype="float32").batch(0)[0]
    assert first.shape == (6, 3, 8, 8) and first.flags.c_contiguous
    assert np.allclose(first, x.transpose(0, 3, 1, 2) / 255.0)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    norm = batches(x, y, 6, shuffle=False, normalize=(mean, std)).batch(0)[0]
    assert norm.dtype == np.float32
    assert np.allclose(norm, (x / 255.0 - mean) / std, atol=1e-5)
    cifar = batches(x, y, 6, shuffle=False, normalize="cifar10").batch(0)[0]
    stats = dlsets.sources.registry.get("cifar10").stats
    assert np.allclose(cifar, (x / 255.0 - stats["mean"]) / stats["std"], atol=1e-5)
    grey, gy = _data(n=4, shape=(5, 5))
    out = batches(grey, gy, 4, shuffle=False, channels="first", normalize=(0.1, 0.3)).batch(0)
    assert out[0].shape == (4, 1, 5, 5)
    assert np.allclose(out[0][:, 0], (grey / 255.0 - 0.1) / 0.3, atol=1e-5)
    assert batches(grey, gy, 4, channels="last").batch(0)[0].shape == (4, 5, 5, 1)


def test_masks_follow_their_images():
    x = np.zeros((10, 16, 16), np.uint8)
    x[:, 4:12, 6:10] = 200
    masks = (x > 100).astype(np.uint8)
    stream = batches(x, None, 5, masks=masks, augmenter=Augmenter(rotate=30, shift=0.2))
    for images, m in stream:
        assert images.shape == m.shape and m.dtype == np.uint8
        assert ((images > 100) == (m == 1)).mean() > 0.97
    # from a Split: labels and masks come along
    split = Split(x, np.arange(10) % 2, masks)
    images, labels, m = batches(split, batch_size=10, shuffle=False).batch(0)
    assert np.array_equal(labels, np.arange(10) % 2) and np.array_equal(m, masks)


def test_reads_hdf5_and_other_array_likes(tmp_path):
    x, y = _data(n=30)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"] = x
        f["y"] = y
    aug = _aug()
    want = [b[0] for b in batches(x, y, 8, augmenter=aug, seed=2)]
    with h5py.File(tmp_path / "d.h5", "r") as f:
        got = [b[0] for b in batches(f["x"], f["y"], 8, augmenter=aug, seed=2)]
        assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True))
        # a view of some rows, read on demand, in increasing order as h5py needs
        rows = Rows(f["x"], np.array([3, 1, 1, 20]))
        assert np.array_equal(rows[:], x[[3, 1, 1, 20]]) and np.array_equal(rows[2], x[1])
        assert np.array_equal(np.asarray(rows), x[[3, 1, 1, 20]])
        assert np.array_equal(rows[1:3, 2:4], x[[1, 1], 2:4])
        # HDF5 handles do not pickle: the stream reopens the file by name in a copy
        import pickle

        stream = pickle.loads(pickle.dumps(batches(f["x"], f["y"], 8, augmenter=aug, seed=2)))
        assert np.array_equal(stream.batch(0)[0], want[0])


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size=0"),
    ({"labels": np.zeros(7, np.uint8)}, "50 images but 7 labels"),
    ({"rank": 2, "world_size": 2}, "rank=2.*0..1"),
    ({"world_size": 0}, "world_size=0"),
    ({"masks": np.zeros((50, 11, 12), np.uint8)}, "masks have shape"),
    ({"dtype": "int8"}, "dtype='int8'"),
    ({"channels": "middle"}, "channels='middle'"),
    ({"normalize": (0.5, 0)}, "std"),
    ({"normalize": ((0.5, 0.5), 1)}, "1-channel"),
    ({"normalize": "notmnist-small"}, "no published mean"),
    ({"normalize": (0.5, 0.5), "dtype": "uint8"}, "float32"),
    ({"augmenter": "rotate"}, "augmenter="),
    ({"batch_size": 60, "drop_last": True}, "no batch"),
    ({"world_size": 60}, "cannot be shared"),
    ({"seed": -1}, "seed="),
    ({"shuffle": "yes"}, "shuffle="),
])
def test_bad_arguments_raise_option_error_at_once(kwargs, match):
    x, y = _data()
    kw = {"labels": y, **kwargs}
    with pytest.raises(OptionError, match=match):
        batches(x, kw.pop("labels"), kw.pop("batch_size", 8), **kw)


def test_bad_images_raise_option_error():
    with pytest.raises(OptionError, match="channels-first"):
        batches(np.zeros((5, 3, 8, 8), np.uint8), np.zeros(5, int))
    with pytest.raises(OptionError, match="expected"):
        batches(np.zeros((5, 8), np.uint8))
    with pytest.raises(OptionError, match="dtype int64"):
        batches(np.zeros((5, 8, 8), np.int64))


# ---------------------------------------------------------------- validation splits
def test_validation_split_is_stratified_seeded_and_a_partition():
    y = np.repeat(np.arange(4), [40, 30, 20, 10])
    RNG.shuffle(y)
    train, val = split_indices(y, 0.1, seed=0)
    assert len(val) == 10 and len(train) == 90
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(100))
    assert np.array_equal(np.bincount(y[val]), [4, 3, 2, 1])
    again, _ = split_indices(y, 0.1, seed=0)
    other = split_indices(y, 0.1, seed=1)[1]
    assert np.array_equal(again, train) and not np.array_equal(other, val)
    assert len(split_indices(y, 7)[1]) == 7
    # remainders: 7 of (40, 30, 20, 10) is 2.8, 2.1, 1.4, 0.7 -> 2, 2, 1, 0 plus the two
    # largest remainders (classes 0 and 3)
    assert np.array_equal(np.bincount(y[split_indices(y, 7)[1]], minlength=4), [3, 2, 1, 1])
    for bad in (0, 1.0, 100, -0.1, True, "0.1"):
        with pytest.raises(OptionError, match="val="):
            split_indices(y, bad)


def test_train_val_split_of_arrays_and_of_a_split():
    x, y = _data(n=40)
    (x_tr, y_tr), (x_val, y_val) = train_val_split(x, y, val=0.25, seed=3)
    tr, va = split_indices(y, 0.25, seed=3)
    assert np.array_equal(x_tr, x[tr]) and np.array_equal(y_val, y[va])
    masks = x // 128
    train, val = train_val_split(Split(x, y, masks), val=0.25, seed=3)
    assert np.array_equal(val.masks, masks[va]) and len(train) == 30


def test_load_with_val_carves_the_validation_split(tmp_path, monkeypatch):
    from tests.feedfixtures import tiny_mnist

    tiny_mnist(tmp_path, monkeypatch, n_train=60)
    ds = dlsets.load("tiny-mnist", val=0.2)
    full = dlsets.load("tiny-mnist")
    tr, va = split_indices(full.train.labels, 0.2, seed=0)
    assert ds.split_names == ("train", "test", "val") and len(ds.val) == 12
    assert np.array_equal(ds.val.images, full.train.images[va])
    assert np.array_equal(ds["train"].labels, full.train.labels[tr])
    assert ds.info["splits"]["val"]["images_shape"] == [12, 28, 28]
    assert sum(ds.info["splits"]["val"]["class_counts"].values()) == 12
    with dlsets.load("tiny-mnist", val=12, format="hdf5") as h5:
        assert isinstance(h5.val.images, Rows)
        assert np.array_equal(h5.val.images[:], full.train.images[va])
    with pytest.raises(OptionError, match="val="):
        dlsets.load("tiny-mnist", val=1.5)


def test_dataset_stats_published_or_measured(tmp_path, monkeypatch):
    from tests.feedfixtures import tiny_mnist

    tiny_mnist(tmp_path, monkeypatch)
    ds = dlsets.load("tiny-mnist")
    x = ds.train.images / 255.0
    assert np.allclose(ds.stats.mean, [x.mean()]) and np.allclose(ds.stats.std, [x.std()])
    rgb = Dataset("cifar10", Split(np.zeros((2, 4, 4, 3), np.uint8), np.zeros(2, np.uint8)),
                  Split(np.zeros((1, 4, 4, 3), np.uint8), np.zeros(1, np.uint8)), ("a",))
    assert rgb.stats.mean == (0.4914, 0.4822, 0.4465)


def test_albumentations_pipelines_get_the_same_ids():
    import albumentations as A

    from dlsets.augment.albu import AlbumentationsRunner

    x, y = _data(n=12)
    pipe = A.Affine(rotate=(-20, 20), p=1.0)
    stream = batches(x, y, 5, augmenter=pipe, seed=9)
    idx = stream.batch_indices(1, 3)
    want = AlbumentationsRunner(pipe, 9)(x[idx], ids=sample_ids(3, idx, 12))
    assert np.array_equal(stream.batch(1, 3)[0], want)
    assert not np.array_equal(want, AlbumentationsRunner(pipe, 9)(x[idx], ids=idx))


def test_a_segmentation_split_feeds_images_and_masks_in_every_adapter(tmp_path):
    """A folder of images and masks gave torch (x, all-zero y, mask) but Keras (x, mask)."""
    from tests.imagefolders import seg_folder

    seg_folder(tmp_path / "seg", 12)
    ds = dlsets.load_folder(tmp_path / "seg", test=0.25)
    assert ds.train.masks is not None and not ds.train.labels.any()
    b = batches(ds.train, batch_size=4, shuffle=False).batch(0)
    assert len(b) == 2 and b[1].shape == b[0].shape[:3]
    assert np.array_equal(b[1], ds.train.masks[:4])
    # labels given beside masks explicitly still come along
    assert len(batches(ds.train.images, ds.train.labels, 4, masks=ds.train.masks).batch(0)) == 3
