"""Augmentation engine: batch geometric transforms, dataset expansion, preview grids.

Importing this package imports neither OpenCV nor albumentations; they load on first use.
"""

from __future__ import annotations

import os

# albumentations checks for updates over the network at import; offline that stalls
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from .expand import expand, expand_to_hdf5, take_subset  # noqa: E402
from .preview import preview_grid, save_png  # noqa: E402
from .transforms import (
    Augmenter,
    Elastic,
    HFlip,
    Perspective,
    RandomAffine,
    Rotate,
    Shear,
    Shift,
    Transform,
    VFlip,
    Zoom,
)

__all__ = [
    "Augmenter",
    "Elastic",
    "HFlip",
    "Perspective",
    "RandomAffine",
    "Rotate",
    "Shear",
    "Shift",
    "Transform",
    "VFlip",
    "Zoom",
    "expand",
    "expand_to_hdf5",
    "preview_grid",
    "save_png",
    "take_subset",
]
