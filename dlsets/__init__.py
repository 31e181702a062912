"""dlsets: fetch, verify, load and augment the classic deep-learning image datasets.

Attributes are imported on first use, so ``import dlsets`` stays fast and touches no disk.
"""

from __future__ import annotations

import importlib
import os

# albumentations checks for updates over the network at import; offline that stalls.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from .errors import (  # noqa: E402
    ChecksumError,
    DlsetsError,
    DownloadError,
    FormatError,
    OfflineError,
    OptionError,
    RegistryError,
    UnsafeArchiveError,
    UnsafePickleError,
)

__version__ = "0.1.0"

_LAZY = {
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
    "Dataset": "dataset",
    "Split": "dataset",
    "Augmenter": "augment",
    "expand": "augment",
    "expand_to_hdf5": "augment",
    "take_subset": "augment",
}

__all__ = [
    "ChecksumError",
    "DlsetsError",
    "DownloadError",
    "FormatError",
    "OfflineError",
    "OptionError",
    "RegistryError",
    "UnsafeArchiveError",
    "UnsafePickleError",
    *_LAZY,
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dlsets' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
