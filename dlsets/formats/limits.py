"""How much a reader may inflate and allocate: bounds derived from a dataset's layout.

A user registry vouches for a file's checksum, not for its sanity: a 6 MB gzip can claim (and
inflate to) 8,000,000 images. Every reader therefore takes a :class:`Limits` made from the
dataset's spec: images of the layout's shape, at most ``max_images`` per split (the registry's
``max_images``; a user entry may raise it), and checks what a file declares against it before
allocating or inflating anything. New readers call :func:`for_spec` and the checks below, and
read compressed data through :class:`dlsets.formats.inflate.Inflater` with a ``limit`` from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import FormatError

# The most images per split a layout holds unless its registry entry says otherwise: 17x MNIST's
# training set, twice notMNIST-large; 3 GB of CIFAR pixels.
DEFAULT_MAX_IMAGES = 1_000_000


@dataclass(frozen=True)
class Limits:
    """Bounds for one dataset's files: ``image_shape`` (per image), ``max_images`` per split;
    ``layout`` names the layout in messages (e.g. "an mnist-like dataset")."""

    image_shape: tuple[int, ...]
    max_images: int = DEFAULT_MAX_IMAGES
    layout: str = "this dataset"

    @property
    def image_bytes(self) -> int:
        """Bytes of one uint8 image."""
        return math.prod(self.image_shape)

    def images_bytes(self, extra_per_image: int = 0) -> int:
        """Bytes of the most images one split may hold (plus ``extra_per_image`` each)."""
        return self.max_images * (self.image_bytes + extra_per_image)

    def check_count(self, n: int, label: str, what: str = "images") -> None:
        """FormatError naming ``label`` when a file declares more than ``max_images``."""
        if n > self.max_images:
            raise FormatError(
                f"{label}: declares {n:,} {what}, but {self.layout} holds at most "
                f"{self.max_images:,} per split; the file is damaged or hostile (if it really "
                "is that large, raise 'max_images' in its registry entry)"
            )

    def check_shape(self, shape: tuple[int, ...], label: str) -> None:
        """FormatError when images of ``shape`` (N, ...) are not the layout's, or too many."""
        if tuple(shape[1:]) != tuple(self.image_shape):
            raise FormatError(
                f"{label}: holds images of shape {tuple(shape[1:])}, but {self.layout} has "
                f"{tuple(self.image_shape)} images"
            )
        self.check_count(shape[0], label)


def for_spec(spec) -> Limits:
    """The limits of a :class:`~dlsets.sources.registry.DatasetSpec`."""
    layout = f"a dataset like {spec.like}" if not spec.builtin else spec.name
    return Limits(tuple(spec.image_shape), getattr(spec, "max_images", DEFAULT_MAX_IMAGES),
                  layout)
