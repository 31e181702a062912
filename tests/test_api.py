"""The public surface of ``import dlsets``."""

import subprocess
import sys

import dlsets


def test_every_public_name_resolves():
    for name in dlsets.__all__:
        assert getattr(dlsets, name) is not None, name
    assert issubclass(dlsets.OfflineError, dlsets.DlsetsError)


def test_fetch_is_the_function_whatever_was_imported_first():
    # A submodule named like a lazily exported function would shadow it once imported.
    code = (
        "import dlsets.sources.acquire, dlsets.cli.app, dlsets.sources.loaders, dlsets.augment\n"
        "import dlsets.acquire, dlsets.loaders, dlsets.cli  # the paths of 0.1 too\n"
        "import dlsets\n"
        "from dlsets import fetch, load, expand\n"
        "assert fetch is dlsets.sources.acquire.fetch and callable(dlsets.fetch)\n"
        "assert load is dlsets.sources.loaders.load and callable(expand)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dir_lists_the_public_api_only():
    names = dir(dlsets)
    assert "fetch" in names and "load_cifar10" in names and "Augmenter" in names
    assert not {"os", "importlib", "annotations"} & set(names)


def test_list_and_describe_datasets():
    assert "cifar100" in dlsets.list_datasets()
    spec = dlsets.describe("cifar100")
    assert len(spec.classes) == 100 and spec.image_shape == (32, 32, 3)
