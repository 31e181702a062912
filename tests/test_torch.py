"""dlsets.torch on real DataLoader workers (fork and spawn), DDP on two gloo ranks, and the
README's PyTorch examples."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import dlsets
from dlsets import Augmenter
from dlsets.errors import OptionError, ReplayError
from dlsets.feed.torch import AugmentedDataset, AugmentedIterableDataset
from tests.feedfixtures import GUIDE, readme_snippet, tiny_mnist

N = 48


def _same_image_data():
    # one image everywhere: two equal outputs can only mean two equal transforms
    img = np.zeros((20, 20), np.uint8)
    img[4:16, 8:12] = 255
    img[4:8, 4:16] = 160
    return np.repeat(img[None], N, axis=0), np.arange(N), img


def _collect(loader, epochs, set_epoch=None):
    got = {}
    for e in range(epochs):
        if set_epoch is not None:
            set_epoch(e)
        for x, y in loader:
            for xi, yi in zip(x, y, strict=True):
                got[(e, int(yi))] = xi.numpy()
    return got


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_never_repeat_transforms_and_runs_match_whatever_the_workers(context):
    x, y, img = _same_image_data()
    aug = Augmenter(rotate=15, shift=0.1, seed=7)
    want = {(e, j): aug.image(img, id=e * N + j)[None] for e in (0, 1) for j in range(N)}

    def run(**kw):
        ds = AugmentedDataset(x, y, aug, dtype="uint8")
        loader = DataLoader(ds, batch_size=8, shuffle=True, **kw)
        return ds, loader

    # two epochs, no set_epoch: the second fetch of a sample is its second epoch
    _, loader = run(num_workers=2, multiprocessing_context=context, persistent_workers=True,
                    generator=torch.Generator().manual_seed(1))
    got = _collect(loader, 2)
    assert len(got) == 2 * N
    outputs = {v.tobytes() for v in got.values()}
    assert len(outputs) == 2 * N, "some transforms repeated across workers or epochs"
    assert all(np.array_equal(got[k], want[k]) for k in want), "not the documented ids"
    if context == "spawn":
        del loader  # shut its workers down now
        return  # spawned workers are slow to start: one run proves them
    # the same tensors with no workers, other shuffling, fresh workers each epoch
    _, loader = run(num_workers=0)
    assert all(np.array_equal(v, want[k]) for k, v in _collect(loader, 2).items())
    _, loader = run(num_workers=2, multiprocessing_context=context)
    assert all(np.array_equal(v, want[k]) for k, v in _collect(loader, 2).items())
    # set_epoch reaches persistent workers that already run
    ds, loader = run(num_workers=2, multiprocessing_context=context, persistent_workers=True)
    got = _collect(loader, 2, set_epoch=lambda e: ds.set_epoch(5 * e))
    assert all(np.array_equal(got[(1, j)], aug.image(img, id=5 * N + j)[None]) for j in range(N))
    assert all(np.array_equal(got[(0, j)], want[(0, j)]) for j in range(N))


def test_iterable_form_splits_batches_across_workers_in_order():
    x, y, img = _same_image_data()
    masks = (x > 100).astype(np.uint8)
    aug = Augmenter(rotate=15, shift=0.1, seed=7)
    ds = AugmentedIterableDataset(x, y, aug, batch_size=10, masks=masks, dtype="uint8")
    assert len(ds) == 5
    seen = []
    for workers in (0, 2):
        ds.set_epoch(0)
        loader = DataLoader(ds, batch_size=None, num_workers=workers)
        epochs = [[(b[0].clone(), b[1].clone(), b[2].clone()) for b in loader]
                  for _ in range(2)]
        seen.append(epochs)
        for e, batches in enumerate(epochs):
            assert [len(b[1]) for b in batches] == [10, 10, 10, 10, 8]
            idx = np.concatenate([b[1].numpy() for b in batches])
            assert np.array_equal(idx, ds.batches.indices(e))
            for xb, yb, mb in batches:
                assert xb.dtype == torch.uint8 and tuple(xb.shape[1:]) == (1, 20, 20)
                assert mb.dtype == torch.int64 and tuple(mb.shape[1:]) == (20, 20)
                assert ((xb[:, 0] > 100) == (mb == 1)).float().mean() > 0.97
                want = aug(x[yb.numpy()], ids=e * N + yb.numpy())
                assert np.array_equal(xb[:, 0].numpy(), want)
    # the same batches in the same order with and without workers
    for a, b in zip(seen[0], seen[1], strict=True):
        assert all(torch.equal(p, q) for s, t in zip(a, b, strict=True)
                   for p, q in zip(s, t, strict=True))


def test_iterable_form_gives_each_worker_its_own_chunks_of_a_compressed_file(tmp_path,
                                                                               monkeypatch):
    import h5py

    from dlsets.data import chunkorder

    # a unit of the chunk-aware order is one chunk of 8 rows: 512 units, two windows of 256
    monkeypatch.setattr(chunkorder, "UNIT_BYTES", 8 * 8 * 8)  # forked workers inherit it
    n = 8 * 2 * chunkorder.WINDOW
    x = np.random.default_rng(0).integers(0, 255, (n, 8, 8), dtype=np.uint8)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(8, 8, 8), compression="lzf")
    with h5py.File(tmp_path / "c.h5") as f:
        ds = AugmentedIterableDataset(f["x"], np.arange(n), Augmenter(rotate=10, seed=3),
                                      batch_size=64, dtype="uint8", seed=1)
        assert ds.batches.chunked and len(ds) == 64
        one = [(b[0].clone(), b[1].clone()) for b in DataLoader(ds, batch_size=None)]
        ds.set_epoch(0)
        two = [(b[0].clone(), b[1].clone())
               for b in DataLoader(ds, batch_size=None, num_workers=2)]
    # the same batches (rows and transforms), delivered as the two workers' runs interleave:
    # worker 0 makes batches 0..31 (the first window), worker 1 batches 32..63 (the second)
    assert [int(b[1][0]) for b in two] == [int(one[i][1][0]) for k in range(32)
                                           for i in (k, 32 + k)]
    pairs = {int(b[1][0]): b for b in one}
    for xb, yb in two:
        want_x, want_y = pairs[int(yb[0])]
        assert torch.equal(xb, want_x) and torch.equal(yb, want_y)
    chunks = [set((b[1].numpy() // 8).tolist()) for b in one]
    assert not set().union(*chunks[:32]) & set().union(*chunks[32:])  # no chunk read twice


def test_hdf5_datasets_feed_forked_workers(tmp_path):
    import h5py

    x, y, _ = _same_image_data()
    x = x + np.arange(N, dtype=np.uint8)[:, None, None]  # distinct images
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"], f["y"] = x, y
    aug = Augmenter(rotate=15, seed=7)
    with h5py.File(tmp_path / "d.h5", "r") as f:
        ds = AugmentedDataset(f["x"], f["y"], aug, dtype="uint8")
        loader = DataLoader(ds, batch_size=8, shuffle=True, num_workers=2)
        for xb, yb in loader:  # each worker reopens the file by name, read-only
            j = yb.numpy()
            assert np.array_equal(xb[:, 0].numpy(), aug(x[j], ids=j))


class _Naive(torch.utils.data.Dataset):
    """What users write by hand: the augmenter's counter inside __getitem__."""

    def __init__(self, x, aug):
        self.x, self.aug = x, aug

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return torch.from_numpy(self.aug(self.x[i][None])[0])


def test_a_naive_augmenter_in_forked_workers_fails_loudly_with_the_fix():
    x, _, _ = _same_image_data()
    aug = Augmenter(rotate=15, seed=7)
    batches = iter(DataLoader(_Naive(x, aug), batch_size=8, num_workers=2))
    errors = []
    while True:  # every batch of both workers fails (draining them lets the workers stop)
        try:
            next(batches)
        except StopIteration:
            break
        except ReplayError as exc:
            errors.append(str(exc))
    assert len(errors) == N // 8
    assert all(re.search(r"forked from process .*ids=.*AugmentedDataset", e) for e in errors)
    assert len(list(DataLoader(_Naive(x, aug), batch_size=8))) == N // 8  # no workers: fine


def test_bad_input_fails_before_any_worker_and_single_items_work():
    x, y, _ = _same_image_data()
    with pytest.raises(OptionError, match="48 images but 3 labels"):
        AugmentedDataset(x, y[:3])
    with pytest.raises(OptionError, match="rank=3"):
        AugmentedIterableDataset(x, y, rank=3, world_size=2)
    with pytest.raises(OptionError, match="batch_size=0"):
        AugmentedIterableDataset(x, y, batch_size=0)
    ds = AugmentedDataset(x, y, Augmenter(rotate=10), normalize=(0.5, 0.25))
    image, label = ds[3]
    assert image.shape == (1, 20, 20) and image.dtype == torch.float32 and int(label) == 3
    images, labels = ds[[1, 2]]
    assert images.shape == (2, 1, 20, 20) and labels.tolist() == [1, 2]
    with pytest.raises(IndexError):
        ds[N]


def test_readme_pytorch_example_runs(tmp_path, monkeypatch):
    tiny_mnist(tmp_path, monkeypatch)
    scope = {}
    exec(compile(readme_snippet("torch", page=GUIDE), GUIDE, "exec"), scope)
    x, y, train = scope["x"], scope["y"], scope["train"]
    assert x.dtype == torch.float32 and tuple(x.shape[1:]) == (1, 28, 28)
    assert y.dtype == torch.int64 and len(train) == len(scope["ds"].train) == 58
    assert train.epoch == 1 and len(scope["val"]) == 6
    assert abs(float(scope["val"][[0, 1, 2, 3, 4, 5]][0].mean())) < 1  # normalised


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readme_ddp_example_on_two_gloo_ranks(tmp_path, monkeypatch):
    tiny_mnist(tmp_path, monkeypatch, n_train=61)
    script = tmp_path / "train.py"
    check = (
        "\nimport numpy as np\n"
        "np.save(f'{OUT}/rank{train.rank}.npy', np.stack([np.sort(train.batches.indices(e))"
        " for e in (0, 1)]))\n"
        "torch.save(model.module.state_dict(), f'{OUT}/model{train.rank}.pt')\n"
    ).replace("{OUT}", str(tmp_path))
    script.write_text(readme_snippet("ddp", page=GUIDE) + check)
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "WORLD_SIZE": "2", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    ranks = [subprocess.Popen([sys.executable, str(script)], env={**env, "RANK": str(r),
                                                                   "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(2)]
    outs = [p.communicate(timeout=100)[0] for p in ranks]
    assert [p.returncode for p in ranks] == [0, 0], outs
    shares = [np.load(tmp_path / f"rank{r}.npy") for r in range(2)]
    for e in (0, 1):
        a, b = shares[0][e], shares[1][e]
        assert len(a) == len(b) == 30 and not set(a) & set(b)  # equal and disjoint; 1 left out
    assert not np.array_equal(shares[0][0], shares[0][1])  # a new order each epoch
    weights = [torch.load(tmp_path / f"model{r}.pt") for r in range(2)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # kept in sync


def test_missing_frameworks_name_the_extra_to_install():
    code = ("import sys\n"
            "for mod, block in (('torch', 'torch'), ('keras', 'keras'), "
            "('tfdata', 'tensorflow')):\n"
            "    sys.modules[block] = None\n"
            "    try:\n"
            "        __import__('dlsets.' + mod)\n"
            "    except ImportError as exc:\n"
            "        print(mod, '|', exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "torch | dlsets.torch needs PyTorch: pip install 'dlsets[torch]'" in out
    assert "keras | dlsets.keras needs Keras 3: pip install 'dlsets[keras]'" in out
    assert "tfdata | dlsets.tfdata needs TensorFlow: pip install 'dlsets[tensorflow]'" in out
    assert dlsets.Augmenter  # the core itself never needs them


def test_getting_started_page_runs(tmp_path, monkeypatch):
    tiny_mnist(tmp_path, monkeypatch)
    scope = {}
    code = readme_snippet("getting-started", page="docs/getting-started.md")
    exec(compile(code, "docs/getting-started.md", "exec"), scope)
    assert len(scope["x_big"]) == 2 * len(scope["ds"].train) == len(scope["y_big"])
    assert len(scope["losses"]) == -(-len(scope["train"]) // 64)
    assert all(np.isfinite(scope["losses"]))


def test_readme_training_example_runs(tmp_path, monkeypatch):
    tiny_mnist(tmp_path, monkeypatch)
    scope = {}
    exec(compile(readme_snippet("readme-train"), "README.md", "exec"), scope)
    assert tuple(scope["x"].shape[1:]) == (1, 28, 28) and scope["y"].dtype == torch.int64
