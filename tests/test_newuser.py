"""What a new user meets first: the README's cache, the package's adapters, and the messages of
the first mistakes (a typo in a folder name or an option, one image given to a batch API)."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dlsets
from dlsets.cli.app import _FLIPS, _parser, bare_switches, main
from dlsets.cli.shared import _augmenter
from dlsets.errors import DownloadError, OfflineError, OptionError
from tests.formats import mnist_like
from tests.imagefolders import class_folder, save

DEAD = "http://127.0.0.1:9/never/"
ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- one cache ------------------------------------------------------------------------------


def test_the_readme_set_up_and_examples_share_one_cache():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = text.split("## Set-up", 1)[1].split("```sh", 1)[1].split("```", 1)[0].strip()
    assert setup.startswith("export DLSETS_CACHE=$PWD/cache && ")  # for what follows, too
    assert setup.endswith("dlsets fetch mnist") and "DLSETS_CACHE=cache " not in setup


@pytest.fixture
def in_dot_cache(tmp_path, monkeypatch):
    """A dataset fetched into ./cache (the README's set-up) while DLSETS_CACHE is elsewhere."""
    src, reg, _ = mnist_like(tmp_path, "tiny", 20, 10, seed=1, url=DEAD, size=False)
    monkeypatch.setenv("DLSETS_REGISTRY", str(reg))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["-q", "--cache-dir", "cache", "fetch", "tiny", "--from", str(src)]) == 0
    return work / "cache"


def test_a_dataset_only_in_dot_cache_is_named_in_the_not_cached_errors(in_dot_cache, capsys,
                                                                      monkeypatch):
    with pytest.raises(DownloadError) as e:
        dlsets.load("tiny", progress=False)
    assert f"tiny is in the cache {in_dot_cache}" in str(e.value)
    with pytest.raises(OfflineError, match=re.escape(f"DLSETS_CACHE={in_dot_cache}")):
        dlsets.load("tiny", download=False)
    code, _, err = run(capsys, "-q", "export", "tiny", "--out", "t.h5")
    assert code == 1 and f"--cache-dir {in_dot_cache}" in err, err
    code, out, err = run(capsys, "list")
    assert code == 0 and re.search(r"^tiny +\S+ +- \(in \./cache\)", out, re.M), out
    monkeypatch.setenv("DLSETS_OFFLINE", "1")
    with pytest.raises(OfflineError, match="README's set-up"):
        dlsets.fetch("tiny")
    # and nothing of the kind when ./cache is the cache in use
    ds = dlsets.load("tiny", cache_dir="cache", progress=False)
    assert len(ds.train) == 20


# --- the package ------------------------------------------------------------------------------


@pytest.mark.extra  # needs an optional extra
def test_adapters_are_attributes_that_import_their_framework_only_when_used():
    code = ("import sys, dlsets\n"
            "heavy = {'torch', 'keras', 'tensorflow', 'ray'} & set(sys.modules)\n"
            "assert not heavy, heavy\n"
            "assert {'torch', 'keras', 'tfdata', 'ray'} <= set(dir(dlsets))\n"
            "assert dlsets.torch.AugmentedDataset.__name__ == 'AugmentedDataset'\n"
            "assert 'torch' in sys.modules and dlsets.ray.expand_on_ray\n")
    env = {"PYTHONPATH": str(ROOT), "NO_ALBUMENTATIONS_UPDATE": "1",
           "RAY_DISABLE_USAGE_STATS": "1", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr


def test_one_greyscale_image_points_to_aug_image():
    aug = dlsets.Augmenter(rotate=10)
    x = np.zeros((3, 28, 28), np.uint8)
    with pytest.raises(OptionError, match=r"one \(H, W\) image.*aug\.image\(img\)"):
        aug(x[0])
    assert aug.image(x[0]).shape == (28, 28)


# --- the CLI's first mistakes -------------------------------------------------------------------


def test_a_folder_typo_says_no_such_folder_here(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    class_folder(tmp_path / "my-photos", {"a": 2, "b": 2}, size=(8, 8))
    code, _, err = run(capsys, "augment", "my-photoz", "--target", 10, "--out", "a.h5")
    assert code == 1 and "unknown dataset 'my-photoz'" in err
    assert f"Nor is there a folder my-photoz in {tmp_path}" in err and "./my-photoz" in err


def test_an_unknown_option_gets_the_commands_usage_and_the_nearest_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["augment", "mnist", "--target", "10", "--out", "a.h5", "--rotation", "15"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert "usage: dlsets augment" in err and "did you mean --rotate?" in err


@pytest.mark.parametrize("argv, hflip, vflip", [
    (["--hflip", "0.3", "mnist"], 0.3, False),
    (["--hflip", "mnist"], 0.5, False),  # bare: half of the time, as before
    (["mnist", "--hflip"], 0.5, False),
    (["mnist", "--vflip", "1", "--hflip"], 0.5, 1.0),
])
def test_flips_take_a_probability_or_none(argv, hflip, vflip):
    args = _parser().parse_args(bare_switches(["preview", *argv, "--out", "g.png"], _FLIPS))
    assert args.name == "mnist" and (args.hflip, args.vflip) == (hflip, vflip)
    want = dlsets.Augmenter(hflip=hflip, vflip=vflip)
    assert repr(_augmenter(args)) == repr(want)


def test_an_out_of_range_flip_is_said_as_the_option(tmp_path, capsys):
    photos = class_folder(tmp_path / "photos", {"a": 2, "b": 2}, size=(8, 8))
    code, _, err = run(capsys, "preview", photos, "--rows", 2, "--hflip", "1.5", "--out",
                       tmp_path / "g.png")
    assert code == 1 and "--hflip 1.5 is not allowed" in err, err


# --- messages: library terms turned into options, never inside a repr -------------------------


def test_size_hint_is_said_once_in_cli_terms(tmp_path, capsys):
    root = tmp_path / "mixed"
    save(root / "a" / "1.png", np.zeros((8, 8, 3), np.uint8))
    save(root / "b" / "2.png", np.zeros((9, 8, 3), np.uint8))
    code, _, err = run(capsys, "export", root, "--out", tmp_path / "m.h5")
    assert code == 1 and err.count("--size H W") == 1 and "CLI:" not in err, err


def test_a_shard_conflict_shows_the_augmenters_as_they_are(tmp_path, capsys):
    photos = class_folder(tmp_path / "photos", {"a": 3, "b": 3}, size=(8, 8))
    out = tmp_path / "shards"
    base = ("augment", photos, "--target", 12, "--shards", 2, "--out", f"{out}/", "-q")
    code, _, err = run(capsys, *base, "--rotate", 15)
    assert code == 0, err
    code, _, err = run(capsys, *base, "--rotate", 10)
    assert code == 1 and "RandomAffine(rotate=(-15.0, 15.0)" in err, err
    assert "--rotate -15" not in err
