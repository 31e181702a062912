"""The module paths of 0.1 (dlsets.loaders, dlsets.readers.idx, ...) still import, as the
very module that holds the code now, and the names the docs showed at them are still there."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys

import pytest

from dlsets.moved import MOVED

# Importing these pulls in PyTorch, Keras/TensorFlow or Ray (seconds each): only found here.
FRAMEWORKS = {"torch", "keras", "tfdata", "ray"}


@pytest.mark.parametrize("old", sorted(set(MOVED) - FRAMEWORKS))
def test_old_path_is_the_moved_module(old):
    module = importlib.import_module(f"dlsets.{old}")
    target = importlib.import_module(f"dlsets.{MOVED[old]}")
    assert module is target
    assert sys.modules[f"dlsets.{old}"] is target
    assert module.__name__ == module.__spec__.name == f"dlsets.{MOVED[old]}"


@pytest.mark.parametrize("old", sorted(FRAMEWORKS))
def test_framework_adapter_paths_are_found_without_importing_them(old):
    assert importlib.util.find_spec(f"dlsets.{old}") is not None
    assert importlib.util.find_spec(f"dlsets.{MOVED[old]}") is not None


# (old module, names) as the reference pages and the README showed them in 0.1
DOCUMENTED = [
    ("acquire", ["fetch", "verify", "remove"]),
    ("registry", ["names", "get", "register_file", "DatasetSpec", "FileSpec"]),
    ("loaders", ["load", "load_mnist", "load_fashion_mnist", "load_kmnist", "load_notmnist",
                 "load_cifar10", "load_cifar100", "load_emnist", "load_svhn", "load_stl10"]),
    ("dataset", ["Dataset", "Split"]),
    ("splits", ["train_val_split"]),
    ("folders", ["load_folder"]),
    ("kaggle", ["load_kaggle"]),
    ("shards", ["expand_shard", "expand_to_shards", "verify_shards"]),
    ("shard_verify", ["verify_shards"]),
    ("shard_reader", ["load_shards"]),
    ("caffe", ["write_caffe", "expand_to_caffe"]),
    ("convnetjs", ["write_convnetjs"]),
    ("tensorboard", ["write_tensorboard"]),
    ("ids", ["sample_ids"]),
    ("feed", ["batches", "sample_ids"]),
    ("augment.transforms", ["Augmenter", "RandomAffine", "Rotate", "HFlip", "Elastic"]),
    ("augment.expand", ["expand", "expand_to_hdf5", "take_subset"]),
    ("augment.preview", ["preview_grid", "save_png"]),
    ("readers.idx", ["read_idx"]),
    ("cli", ["main"]),
]


@pytest.mark.parametrize(("old", "names"), DOCUMENTED, ids=[m for m, _ in DOCUMENTED])
def test_documented_names_import_from_their_old_paths(old, names):
    module = importlib.import_module(f"dlsets.{old}")
    for name in names:
        space = {}
        exec(f"from dlsets.{old} import {name}", space)
        assert space[name] is getattr(module, name)


def test_old_paths_import_first_in_a_fresh_interpreter():
    # An alias imported before anything else (or one whose module imports the module being
    # imported: shard_verify, a circle in 0.1) still resolves to the moved module.
    code = (
        "from dlsets.shard_verify import verify_shards\n"
        "import dlsets.scale.shard_verify as s; assert s.verify_shards is verify_shards\n"
        "from dlsets.loaders import load; import dlsets; assert dlsets.load is load\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_an_old_submodule_of_an_old_package_imported_first_is_the_moved_module():
    # the alias finder must come before the path finder, which would find formats/idx.py
    # through the aliased package's __path__ and run a second copy of it
    code = "import dlsets.readers.idx as a, dlsets.formats.idx as b; assert a is b"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _python_m(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("old", ["loaders", "shards", "config", "cli_text", "readers",
                                 "readers.idx"])
def test_python_m_an_old_path_does_what_python_m_its_new_path_does(old):
    """0.1's modules ran as scripts did nothing (none had a __main__ part); the alias had no
    get_code, so `python -m dlsets.loaders` ended in a traceback."""
    got, want = _python_m(f"dlsets.{old}"), _python_m(f"dlsets.{MOVED[old]}")
    assert "Traceback" not in got.stderr, got.stderr
    assert (got.returncode, got.stdout) == (want.returncode, want.stdout)
    assert got.stderr.replace(f"dlsets.{old}", f"dlsets.{MOVED[old]}") == want.stderr


def test_an_old_path_whose_module_has_a_main_part_runs_it():
    """An alias of a module with a __main__ part (the CLI's app.py) runs it, arguments too."""
    code = ("import sys, runpy, dlsets.moved as m; m.MOVED['oldcli'] = 'cli.app'; "
            "sys.argv[1:] = ['--version']; runpy._run_module_as_main('dlsets.oldcli')")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert got.returncode == 0 and got.stdout.startswith("dlsets "), got.stderr
