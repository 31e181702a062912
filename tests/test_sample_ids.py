"""The id rule (dlsets.feed.ids) and the fetch counts of dlsets.torch on real DataLoader workers:
samplers that draw with replacement, padding, concurrent workers, bounds on epochs and ranks."""

import multiprocessing
import os

import dlsets.torch
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler

import dlsets
from dlsets import Augmenter
from dlsets.common.tensors import MAX_ID
from dlsets.errors import DlsetsError, OptionError, ReplayError
from dlsets.feed.ids import FETCHES, REPEATS, check_epoch, fetch_ids, max_epoch
from dlsets.feed.keras import AugmentedPyDataset
from dlsets.feed.torch import AugmentedDataset, AugmentedIterableDataset, distributed_rank

N = 48


def _same_images(n=N):
    # one image everywhere: two equal outputs can only mean two equal transforms
    img = np.zeros((20, 20), np.uint8)
    img[4:16, 8:12] = 255
    img[4:8, 4:16] = 160
    return np.repeat(img[None], n, axis=0), np.arange(n), img


def test_ids_of_every_fetch_are_distinct_and_below_the_limit():
    for n in (1, 7, 60_000):
        top = max_epoch(n)
        assert top >= 0 and (top + 1) * FETCHES * n <= REPEATS < (top + 2) * FETCHES * n
        j = np.array([0, n - 1] * 3)
        for e in (0, 1, top):
            k = np.array([0, 0, 1, 1, FETCHES - 1, FETCHES - 1])
            ids = fetch_ids(e, j, k, n)
            assert np.array_equal(ids[:2], e * n + j[:2])  # the first fetch: e * n + j
            assert (ids[2:] >= REPEATS).all() and ids.max() < MAX_ID
    # small n, every (epoch, fetch, sample) of a range of epochs: no id twice
    n = 5
    k, j = (a.ravel() for a in np.meshgrid(np.arange(40), np.arange(n)))
    ids = np.concatenate([fetch_ids(e, j, k, n) for e in range(6)])
    assert len(np.unique(ids)) == ids.size
    with pytest.raises(ReplayError, match="fetched 16,385 times in epoch 2"):
        fetch_ids(2, [3], [FETCHES], n)


@pytest.mark.parametrize("value", [-1, 2**62, 2**63, 2**64, 1.0, True, "1"])
def test_epochs_past_the_id_space_fail_where_given(value):
    x, y, _ = _same_images()
    ds = AugmentedDataset(x, y, Augmenter(rotate=10))
    it = AugmentedIterableDataset(x, y, Augmenter(rotate=10), batch_size=8, rank=0,
                                  world_size=1)
    stream = dlsets.batches(x, y, 8)
    keras_ds = AugmentedPyDataset(x, y, batch_size=8)
    top = f"0 to {max_epoch(N):,}"
    for set_epoch in (ds.set_epoch, it.set_epoch, stream.set_epoch, keras_ds.set_epoch,
                      lambda e: stream.batch(0, e), lambda e: dlsets.sample_ids(e, 0, N),
                      lambda e: AugmentedDataset(x, y, epoch=e),
                      lambda e: dlsets.batches(x, y, 8, epoch=e)):
        with pytest.raises(OptionError, match=f"epoch={value!r} .*{top}"):
            set_epoch(value)
    ds.set_epoch(max_epoch(N))  # the last epoch works, further fetches included
    assert ds.ids([3, 3]).max() < MAX_ID
    assert stream.batch(0, np.int64(max_epoch(N)))[0].shape == (8, 20, 20)


def _fetched(ds, loader, epochs):
    """Every augmented sample the loader delivers over ``epochs`` with set_epoch, as
    (epoch, sample) -> list of images."""
    got = {}
    for e in range(epochs):
        ds.set_epoch(e)
        for xb, yb in loader:
            for xi, yi in zip(xb, yb, strict=True):
                got.setdefault((e, int(yi)), []).append(xi[0].numpy())
    return got


@pytest.mark.parametrize("sampler", ["weighted", "random"])
def test_samplers_with_replacement_get_a_new_transform_at_every_fetch(sampler):
    x, y, img = _same_images()
    aug = Augmenter(rotate=15, shift=0.1, seed=3)
    ds = AugmentedDataset(x, y, aug, dtype="uint8")
    g = torch.Generator().manual_seed(0)
    draw = (WeightedRandomSampler(np.where(y < 8, 4.0, 1.0), 2 * N, replacement=True,
                                  generator=g) if sampler == "weighted"
            else RandomSampler(ds, replacement=True, num_samples=2 * N, generator=g))
    loader = DataLoader(ds, batch_size=8, sampler=draw, num_workers=2, persistent_workers=True)
    got = _fetched(ds, loader, 3)
    images = [im.tobytes() for ims in got.values() for im in ims]
    assert len(images) == 3 * 2 * N
    assert any(len(ims) > 1 for ims in got.values()), "the sampler drew no sample twice"
    assert len(set(images)) == len(images), "a transform repeated across fetches or epochs"
    # the first fetch of sample j in epoch e is id e * N + j, whichever fetch came first
    for (e, j), ims in got.items():
        want = aug.image(img, id=e * N + j).tobytes()
        assert [im.tobytes() for im in ims].count(want) == 1


class _Ids(AugmentedDataset):
    """Hands out the ids of each fetch, counted one sample at a time, instead of images: the
    workers do little but count, all at once, on the same few samples."""

    def __getitems__(self, indices):
        return [torch.from_numpy(np.concatenate([self.ids([i]) for i in indices]))]


def test_concurrent_workers_never_get_one_id_twice():
    x, y, _ = _same_images(8)
    ds = _Ids(x, y)
    sampler = RandomSampler(ds, replacement=True, num_samples=20_000,
                            generator=torch.Generator().manual_seed(0))
    loader = DataLoader(ds, batch_size=500, sampler=sampler, num_workers=2,
                        collate_fn=lambda b: b[0])
    ds.set_epoch(1)
    ids = torch.cat(list(loader)).numpy()
    assert len(ids) == 20_000
    assert len(np.unique(ids)) == len(ids), "two fetches got one id"


def test_padding_repeats_get_transforms_of_their_own():
    x, y, img = _same_images(5)
    aug = Augmenter(rotate=15, shift=0.1, seed=3)
    outs, rows = [], []
    for rank in range(4):  # 5 samples padded to 8: 3 repeats on other ranks
        stream = dlsets.batches(x, y, 2, rank=rank, world_size=4, pad=True, augmenter=aug,
                                epoch=2, shuffle=False)
        for i in range(len(stream)):
            xb, yb = stream.batch(i)
            outs += [im.tobytes() for im in xb]
            rows += list(yb)
    assert sorted(rows) == [0, 0, 1, 1, 2, 2, 3, 4]
    assert len(set(outs)) == 8, "a padded repeat took its original's transform"
    assert {aug.image(img, id=2 * 5 + j).tobytes() for j in range(5)} <= set(outs)
    with pytest.raises(OptionError, match="pad=True with 20,000 ranks"):
        dlsets.batches(x[:1], y[:1], 1, rank=0, world_size=20_000, pad=True)


@pytest.mark.parametrize("env, match", [
    ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x' in the environment .* 0 to 1"),
    ({"RANK": "0", "WORLD_SIZE": "two"}, "WORLD_SIZE='two' .* 1 to 1,048,576"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK='2' .* 0 to 1"),
    ({"RANK": "0", "WORLD_SIZE": "0"}, "WORLD_SIZE='0'"),
    ({"RANK": "\u0663", "WORLD_SIZE": "4"}, "RANK="),
    ({"RANK": "1"}, "RANK='1' is set in the environment but WORLD_SIZE is not"),
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE='2' is set .* but RANK is not"),
])
def test_rank_variables_are_checked(monkeypatch, env, match):
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(OptionError, match=match):
        distributed_rank()
    x, y, _ = _same_images()
    with pytest.raises(OptionError, match=match):
        AugmentedIterableDataset(x, y, batch_size=8)


def test_rank_arguments_are_bounded(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert distributed_rank() == (1, 3)
    with pytest.raises(OptionError, match="world_size=2097152 .* 1 to 1,048,576"):
        distributed_rank(0, 2**21)
    with pytest.raises(OptionError, match="rank=3 .* 0..2"):
        distributed_rank(3, 3)
    assert check_epoch(np.int64(4), 10) == 4


def _die_holding(lock):
    lock.acquire()
    os._exit(0)  # as a worker killed while counting: the lock is never released


def test_a_worker_that_died_holding_the_count_lock_fails_the_next_fetch(monkeypatch):
    x, y, _ = _same_images()
    ds = AugmentedDataset(x, y)
    process = multiprocessing.get_context("spawn").Process(target=_die_holding,
                                                            args=(ds._lock,))
    process.start()
    process.join(60)
    assert process.exitcode == 0
    monkeypatch.setattr(dlsets.torch, "LOCK_TIMEOUT", 0.2)
    with pytest.raises(DlsetsError, match="stayed locked for 0.2 s: a worker process died"):
        ds.ids([1])
    with pytest.raises(DlsetsError, match="died while counting"):
        ds.set_epoch(1)
