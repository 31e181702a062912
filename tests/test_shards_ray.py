"""The expansion on a local Ray cluster (2 CPUs, one per module: Ray takes seconds to start)."""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import ray  # noqa: E402

from dlsets.augment import Augmenter, expand  # noqa: E402
from dlsets.cli import main  # noqa: E402
from dlsets.errors import OptionError  # noqa: E402
from dlsets.scale.shard_reader import load_shards  # noqa: E402
from dlsets.scale.shards import read_index  # noqa: E402
from tests.test_shards import ARGS, AUG, _data, _read, make_digits  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def digits(tmp_path, monkeypatch):
    return make_digits(tmp_path, monkeypatch)


def test_ray_tasks_write_exactly_what_expand_returns(cluster, tmp_path):
    from dlsets.scale.ray import expand_on_ray

    x, y = _data()
    aug = Augmenter(**AUG)
    ex, ey = expand(x, y, 333, augmenter=aug, seed=2)
    index = expand_on_ray(x, y, 333, tmp_path / "wds", shards=5, augmenter=aug, seed=2,
                          format="webdataset", chunk_size=20)
    assert index == (tmp_path / "wds" / "index.json").resolve()
    gx, gy = _read(tmp_path / "wds")
    assert np.array_equal(gx, ex) and np.array_equal(gy, ey)
    split = load_shards(tmp_path / "wds")
    assert np.array_equal(np.asarray(split.images), ex) and np.array_equal(split.labels, ey)
    # Ray Data reads the same shards without dlsets
    rows = ray.data.read_webdataset(str(tmp_path / "wds"), file_extensions=["tar"]).take_all()
    rows.sort(key=lambda r: r["__key__"])
    assert np.array_equal(np.stack([r["npy"] for r in rows]), ex)
    assert [int(r["cls"]) for r in rows] == ey.tolist()
    # a task's OptionError reaches the caller as itself, before anything is written
    with pytest.raises(OptionError, match="another expansion"):
        expand_on_ray(x, y, 333, tmp_path / "wds", shards=5, augmenter=aug, seed=3,
                      format="webdataset")


def test_cli_engine_ray_equals_the_single_file(cluster, tmp_path, digits, capsys):
    assert main(["-q", "augment", "digits", *ARGS, "--out", str(tmp_path / "one.h5")]) == 0
    out = f"{tmp_path / 'ray'}/"
    assert main(["augment", "digits", *ARGS, "--shards", "3", "--engine", "ray",
                 "--out", out]) == 0
    assert "holds 500 samples in 3 shards" in capsys.readouterr().out
    assert ray.is_initialized()  # the CLI leaves a cluster it did not start running
    with h5py.File(tmp_path / "one.h5", "r") as f:
        gx, gy = _read(tmp_path / "ray")
        assert np.array_equal(gx, f["train/images"][...])
        assert np.array_equal(gy, f["train/labels"][...])
    assert read_index(tmp_path / "ray")["files"][2] == "digits-00002-of-00003.h5"


def test_ray_dataset_rows_are_expands_rows(cluster):
    from dlsets.scale.ray import expand_ray_dataset

    x, y = _data()
    x = np.stack([x] * 3, axis=1)  # channels-first colour
    aug = Augmenter(**AUG)
    ex, ey = expand(x, y, 250, augmenter=aug, channels="first", balance=False)
    ds = expand_ray_dataset(x, y, 250, augmenter=aug, channels="first", balance=False,
                            batch_size=40)
    batches = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
    ids = np.concatenate([b["id"] for b in batches])
    order = np.argsort(ids)
    assert np.array_equal(ids[order], np.arange(250))
    assert np.array_equal(np.concatenate([b["image"] for b in batches])[order], ex)
    assert np.array_equal(np.concatenate([b["label"] for b in batches])[order], ey)
    # a shuffled dataset: rows stay whole
    row = ds.random_shuffle(seed=0).take(1)[0]
    assert np.array_equal(row["image"], ex[row["id"]]) and row["label"] == ey[row["id"]]


@pytest.mark.parametrize("format", ["hdf5", "webdataset"])
def test_ray_shards_and_rows_carry_masks_like_expand(cluster, tmp_path, format):
    from dlsets.scale.ray import expand_on_ray, expand_ray_dataset
    from tests.test_expand_masks import _seg

    x, y, m = _seg()
    aug = Augmenter(rotate=20, hflip=True, seed=3)
    ex, ey, em = expand(x, y, 90, augmenter=aug, masks=m)
    expand_on_ray(x, y, 90, tmp_path, shards=3, augmenter=aug, masks=m, format=format)
    split = load_shards(tmp_path)
    assert np.array_equal(np.asarray(split.images), ex)
    assert np.array_equal(np.asarray(split.masks), em) and np.array_equal(split.labels, ey)
    if format == "hdf5":
        return
    batches = list(expand_ray_dataset(x, y, 90, augmenter=aug, masks=m, batch_size=25)
                   .iter_batches(batch_size=None, batch_format="numpy"))
    order = np.argsort(np.concatenate([b["id"] for b in batches]))
    assert np.array_equal(np.concatenate([b["mask"] for b in batches])[order], em)
    assert np.array_equal(np.concatenate([b["image"] for b in batches])[order], ex)


def test_cli_keeps_rays_own_notices_for_verbose(tmp_path, digits):
    """Ray's token-authentication warning and "Started a local Ray instance" reached stderr."""
    import subprocess
    import sys

    env = {**os.environ, "RAY_ADDRESS": ""}
    r = subprocess.run([sys.executable, "-m", "dlsets", "augment", "digits", *ARGS, "--shards",
                        "2", "--engine", "ray", "--out", f"{tmp_path / 'out'}/"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert "holds 500 samples in 2 shards" in r.stdout
    assert r.stderr == "", r.stderr
