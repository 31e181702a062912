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
        "import dlsets.acquire, dlsets.cli, dlsets.loaders, dlsets.augment\n"
        "import dlsets\n"
        "from dlsets import fetch, load, expand\n"
        "assert fetch is dlsets.acquire.fetch and callable(dlsets.fetch)\n"
        "assert load is dlsets.loaders.load and callable(expand)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
