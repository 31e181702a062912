"""dlsets: fetch, verify, load and augment the classic deep-learning image datasets.

Attributes are imported on first use, so ``import dlsets`` stays fast and touches no disk.
"""

import importlib as _importlib
import os as _os

# albumentations checks for updates over the network at import; offline that stalls.
_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from .errors import (  # noqa: E402
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

__version__ = "0.2.0"

# public name -> module (and attribute, where it differs)
_LAZY = {
    "list_datasets": ("registry", "names"),
    "describe": ("registry", "get"),
    "register_file": "registry",
    "fetch": "acquire",
    "verify": "acquire",
    "remove": "acquire",
    "load": "loaders",
    "load_mnist": "loaders",
    "load_fashion_mnist": "loaders",
    "load_kmnist": "loaders",
    "load_notmnist": "loaders",
    "load_cifar10": "loaders",
    "load_cifar100": "loaders",
    "load_emnist": "loaders",
    "load_svhn": "loaders",
    "load_stl10": "loaders",
    "Dataset": "dataset",
    "Split": "dataset",
    "Augmenter": "augment",
    "expand": "augment",
    "expand_to_hdf5": "augment",
    "take_subset": "augment",
    "preview_grid": "augment",
    "save_png": "augment",
    "expand_shard": "shards",
    "expand_to_shards": "shards",
    "verify_shards": "shards",
    "load_shards": "shard_reader",
    "expand_on_ray": "ray",
    "expand_ray_dataset": "ray",
    "write_caffe": "caffe",
    "expand_to_caffe": "caffe",
    "write_convnetjs": "convnetjs",
    "write_tensorboard": "tensorboard",
    "load_folder": "folders",
    "load_kaggle": "kaggle",
    "batches": "feed",
    "sample_ids": "feed",
    "train_val_split": "splits",
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
