"""Where things live in the cache (see cache/README.md for the layout)."""

from __future__ import annotations

import os
from pathlib import Path

from . import config


def dataset_dir(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache>/<name>``: everything dlsets keeps for one dataset."""
    return config.cache_root(cache_dir) / name


def files_dir(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache>/<name>/files``: verified downloads under their registry names."""
    return dataset_dir(name, cache_dir) / "files"


def prepared_dir(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache>/<name>/prepared``: arrays parsed by the loaders."""
    return dataset_dir(name, cache_dir) / "prepared"
