"""A folder of images as a source: a path (or a bare word that is a folder and no registry
name) given to ``dlsets.load``, loaded by :func:`dlsets.load_folder` with its defaults."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import OptionError
from . import registry
from .table import Source, register


def is_folder(name) -> bool:
    """Whether ``name`` means a folder of images rather than a registry name: a path (a
    separator, or a leading "." or "~"), or a bare word that is no registry name but a
    folder."""
    if isinstance(name, os.PathLike):
        return True
    if not isinstance(name, str) or not name or name.startswith("kaggle:"):
        return False  # "" is no path (Path("") would be the current folder): an unknown name
    if "/" in name or os.sep in name or name.startswith((".", "~")):
        return True
    return name not in registry.names() and Path(name).is_dir()


class FolderSource(Source):
    """Image folders: ``load`` only (fetch, verify and remove are for registry names)."""

    order = 20
    kind = "folder"

    def claims(self, name) -> bool:
        return is_folder(name)

    def load(self, name, *, dtype="uint8", channels=None, cache_dir=None, download=True,
             format="numpy", label_mode="fine", progress=None, variant=None, extra=False,
             val=None, val_seed=0):
        from .folders import load_folder  # a folder of images, as on the command line

        if format != "numpy" or label_mode != "fine" or variant is not None or extra:
            raise OptionError(f"{name} is a folder of images: format=, label_mode=, variant= "
                              "and extra= apply to registry datasets; see dlsets.load_folder "
                              "for a folder's options (size=, color=, resize=, test=, ...)")
        return load_folder(name, dtype=dtype, channels=channels, cache_dir=cache_dir,
                           progress=progress, download=download, val=val, val_seed=val_seed)


    def place(self, name, *, cache_dir=None):
        from .folder_prepare import folder_slot

        return folder_slot(name, cache_dir)


register(FolderSource())
