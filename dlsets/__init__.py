"""dlsets: fetch, verify, load and augment the classic deep-learning image datasets.

Attributes are imported on first use, so ``import dlsets`` stays fast and touches no disk.
"""

import importlib as _importlib
import os as _os

# albumentations checks for updates over the network at import; offline that stalls.
_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from .common.version import __version__  # noqa: E402, F401
from .errors import (
    AuthError,
    ChecksumError,
    DeadlineError,
    DlsetsError,
    DownloadError,
    FormatError,
    MissingDependencyError,
    OfflineError,
    OptionError,
    RegistryError,
    ReplayError,
    SpaceError,
    UnsafeArchiveError,
    UnsafePickleError,
    WriteError,
)
from .moved import install as _install_moved  # noqa: E402

_install_moved()  # old module paths (dlsets.loaders, dlsets.shards, ...) still import

# public name -> module (and attribute, where it differs)
_LAZY = {
    "list_datasets": ("sources.registry", "names"),
    "describe": ("sources.registry", "get"),
    "register_file": "sources.registry",
    "fetch": "sources.acquire",
    "verify": "sources.acquire",
    "remove": "sources.acquire",
    "load": "sources.loaders",
    "load_mnist": "sources.loaders",
    "load_fashion_mnist": "sources.loaders",
    "load_kmnist": "sources.loaders",
    "load_notmnist": "sources.loaders",
    "load_cifar10": "sources.loaders",
    "load_cifar100": "sources.loaders",
    "load_emnist": "sources.loaders",
    "load_svhn": "sources.loaders",
    "load_stl10": "sources.loaders",
    "Dataset": "data.dataset",
    "Split": "data.dataset",
    "Augmenter": "augment",
    "expand": "augment",
    "expand_to_hdf5": "augment",
    "take_subset": "augment",
    "preview_grid": "augment",
    "save_png": "augment",
    "expand_shard": "scale.shards",
    "expand_to_shards": "scale.shards",
    "verify_shards": "scale.shards",
    "load_shards": "scale.shard_reader",
    "expand_on_ray": "scale.ray",
    "expand_ray_dataset": "scale.ray",
    "write_caffe": "outputs.caffe",
    "expand_to_caffe": "outputs.caffe",
    "write_convnetjs": "outputs.convnetjs",
    "write_tensorboard": "outputs.tensorboard",
    "load_folder": "sources.folders",
    "load_kaggle": "sources.kaggle",
    "batches": "feed",
    "sample_ids": "feed",
    "train_val_split": "data.splits",
}

__all__ = [
    "AuthError",
    "ChecksumError",
    "DeadlineError",
    "DlsetsError",
    "DownloadError",
    "FormatError",
    "MissingDependencyError",
    "OfflineError",
    "OptionError",
    "RegistryError",
    "SpaceError",
    "ReplayError",
    "UnsafeArchiveError",
    "UnsafePickleError",
    "WriteError",
    *_LAZY,
]


# The framework adapters, imported as submodules on first use (``dlsets.torch.AugmentedDataset``)
# and never at ``import dlsets``: each imports its framework, which takes seconds.
_SUBMODULES = ("torch", "keras", "tfdata", "ray")


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = _importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'dlsets' has no attribute {name!r}")
    module, attr = target if isinstance(target, tuple) else (target, name)
    value = getattr(_importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, *_SUBMODULES, "__version__"])
