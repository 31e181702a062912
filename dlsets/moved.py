"""Import paths of modules that moved into stage subpackages in 0.2, kept working.

``import dlsets.shards`` or ``from dlsets.loaders import load`` still work: the old name is an
alias of the moved module (the same object, so a monkeypatch on either reaches both). The
user-facing adapters ``dlsets.torch``, ``dlsets.keras``, ``dlsets.tfdata`` and ``dlsets.ray``
are reached this way too.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys

# old path -> new path, both under dlsets
MOVED = {
    "acquire": "sources.acquire",
    "archive": "formats.archive",
    "atomic": "store.atomic",
    "cache": "store.cache",
    "caffe": "outputs.caffe",
    "chunkorder": "data.chunkorder",
    "cli_text": "cli.text",
    "config": "common.config",
    "convnetjs": "outputs.convnetjs",
    "dataset": "data.dataset",
    "deadline": "common.deadline",
    "decode_pool": "sources.decode_pool",
    "display": "common.display",
    "download": "sources.download",
    "elsewhere": "store.elsewhere",
    "export": "outputs.export",
    "fastread": "data.fastread",
    "folder_survey": "sources.folder_survey",
    "folders": "sources.folders",
    "h5": "formats.h5",
    "h5file": "sources.h5file",
    "ids": "feed.ids",
    "inflate": "formats.inflate",
    "jsontext": "common.jsontext",
    "kaggle": "sources.kaggle",
    "kaggle_auth": "sources.kaggle_auth",
    "kaggle_verify": "sources.kaggle_verify",
    "keras": "feed.keras",
    "limits": "formats.limits",
    "loaders": "sources.loaders",
    "locks": "store.locks",
    "names": "store.names",
    "palette": "formats.palette",
    "prepared": "store.prepared",
    "progress": "common.progress",
    "ray": "scale.ray",
    "readers": "formats",
    "readers.cifar": "formats.cifar",
    "readers.emnist": "formats.emnist",
    "readers.idx": "formats.idx",
    "readers.image": "formats.image",
    "readers.notmnist": "formats.notmnist",
    "readers.npz": "formats.npz",
    "readers.stl10": "formats.stl10",
    "readers.svhn": "formats.svhn",
    "readers.unpickle": "formats.unpickle",
    "registry": "sources.registry",
    "regular": "store.regular",
    "removal": "store.removal",
    "scratch": "store.scratch",
    "shard_claim": "scale.shard_claim",
    "shard_index": "scale.shard_index",
    "shard_reader": "scale.shard_reader",
    "shard_verify": "scale.shard_verify",
    "shards": "scale.shards",
    "space": "store.space",
    "splits": "data.splits",
    "stamps": "store.stamps",
    "stats": "data.stats",
    "tarshards": "scale.tarshards",
    "tensorboard": "outputs.tensorboard",
    "tensors": "common.tensors",
    "tfdata": "feed.tfdata",
    "torch": "feed.torch",
    "unpack": "formats.unpack",
    "workermem": "feed.workermem",
}


class _Alias:  # a meta path finder and its loader (importlib.abc costs 10 ms at import)
    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith("dlsets.") or fullname[7:] not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        module = importlib.import_module(f"dlsets.{MOVED[spec.name[7:]]}")
        spec.loader_state = module.__spec__  # the import system sets the alias's spec on it
        return module

    def exec_module(self, module) -> None:
        # the moved module ran when create_module imported it; give it back its own spec
        module.__spec__ = module.__spec__.loader_state

    def get_code(self, fullname):
        """``python -m dlsets.<old>`` (runpy asks for the code): run the new path as ``python
        -m dlsets.<new>`` would, in its own package (its relative imports need it), with the
        same messages (a package cannot be run, ...); not a traceback."""
        new = f"dlsets.{MOVED[fullname[7:]]}"
        return compile(
            "import runpy\n"
            "if hasattr(runpy, '_run_module_as_main'):  # what `python -m` itself calls\n"
            f"    runpy._run_module_as_main({new!r})\n"
            "else:\n"
            f"    runpy.run_module({new!r}, run_name='__main__', alter_sys=True)\n",
            f"<{fullname}: moved to {new}>", "exec")


def install() -> None:
    """Make the old paths importable (once per process)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        # first: the path finder would otherwise find dlsets/readers/x.py's new home through
        # the aliased package's __path__ and run a second copy of the module
        sys.meta_path.insert(0, _Alias())
