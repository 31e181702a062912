"""Per-channel mean and standard deviation of image sets, for normalisation.

Values are in the units of ``dtype="float32"`` images, [0, 1], whatever the stored dtype, so
``(x / 255 - mean) / std`` standardises uint8 images. The built-in datasets carry the usual
published values of their train split in the registry; any other set is measured here.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import OptionError

CHUNK_VALUES = 1 << 22  # values read per chunk when measuring (bounded memory)


class Stats(NamedTuple):
    """Per-channel ``mean`` and ``std`` (tuples, one value for greyscale), in [0, 1] units."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


def measure(images) -> Stats:
    """Mean and standard deviation per channel of (N, H, W) or (N, H, W, C) images (NumPy, a
    memory map or an HDF5 dataset), read in chunks; uint8 and uint16 are scaled to [0, 1]."""
    shape = tuple(images.shape)
    if len(shape) not in (3, 4) or shape[0] == 0:
        raise OptionError(f"images of shape {shape}: expected a non-empty (N, H, W) or "
                          "(N, H, W, C) set")
    dtype = np.dtype(images.dtype)
    scale = 1.0 / np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    channels = shape[3] if len(shape) == 4 else 1
    per_image = int(np.prod(shape[1:]))
    step = max(1, CHUNK_VALUES // per_image)
    total = np.zeros(channels)
    squares = np.zeros(channels)
    for s in range(0, shape[0], step):
        chunk = np.asarray(images[s:s + step], dtype=np.float64).reshape(-1, channels)
        total += chunk.sum(axis=0)
        squares += np.einsum("ij,ij->j", chunk, chunk)
    count = shape[0] * per_image // channels
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    return Stats(tuple(float(v) for v in mean * scale), tuple(float(v) for v in std * scale))


def from_registry(entry: dict | None) -> Stats | None:
    """The ``stats`` of a registry entry ({"mean": [...], "std": [...]}), or None."""
    if not entry:
        return None
    return Stats(tuple(float(v) for v in entry["mean"]), tuple(float(v) for v in entry["std"]))
