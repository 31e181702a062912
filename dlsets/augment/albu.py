"""Run an albumentations pipeline where a dlsets augmenter is expected, one image at a time.

albumentations is imported by the pipeline's owner, never here: this module only calls it.
"""

from __future__ import annotations

import random

import numpy as np

from ..common.tensors import index, index_array
from ..errors import OptionError
from . import params
from .transforms import Augmenter, channels_back, channels_last


def is_albumentations(obj: object) -> bool:
    """True for an albumentations transform or Compose (including user subclasses)."""
    return any(c.__module__.split(".")[0] == "albumentations" for c in type(obj).__mro__)


class AlbumentationsRunner:
    """Batch front of an albumentations pipeline: same call as :class:`Augmenter`.

    Image ``start + i`` runs with the pipeline reseeded from (seed, start + i), so results do
    not depend on how a stream of images is cut into batches. It keeps no counter: its callers
    (expand, expand_to_hdf5, preview_grid) always pass ``start``. ``channels`` is as for
    :class:`Augmenter` (the pipeline always sees (H, W[, C]) images).
    """

    def __init__(self, pipeline, seed: int = 0) -> None:
        self.pipeline = pipeline
        self.seed = params.check_seed(seed)

    def __repr__(self) -> str:
        return f"AlbumentationsRunner({self.pipeline!r}, seed={self.seed})"

    def _reseed(self, index: int) -> None:
        s = int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])
        if hasattr(self.pipeline, "set_random_seed"):  # albumentations >= 1.4.19
            self.pipeline.set_random_seed(s)
        else:  # older releases draw from the global generators
            random.seed(s)
            np.random.seed(s)

    def __call__(self, images: np.ndarray, masks: np.ndarray | None = None, *, start: int = 0,
                 ids=None, channels: str | None = None):
        """Augment (N, H, W[, C]) images (and masks) image by image; shapes and dtypes kept.
        Image i runs as sample ``start + i``, or ``ids[i]``."""
        images = channels_last("images", np.asarray(images), channels)
        if masks is not None:
            masks = channels_last("masks", np.asarray(masks), channels or "last")
        if ids is None:
            ids = np.arange(index("start", start), index("start", start) + len(images))
        else:
            ids = index_array("ids", ids, len(images))
        out = np.empty_like(images)
        mask_out = None if masks is None else np.empty_like(masks)
        for i in range(len(images)):
            self._reseed(int(ids[i]))
            if masks is None:
                result = self.pipeline(image=images[i])
            else:
                result = self.pipeline(image=images[i], mask=masks[i])
                mask_out[i] = _same("mask", result["mask"], masks[i])
            out[i] = _same("image", result["image"], images[i])
        out = channels_back(out, channels)
        return out if masks is None else (out, channels_back(mask_out, channels))


def _same(what: str, got: np.ndarray, like: np.ndarray) -> np.ndarray:
    got = np.asarray(got)
    if got.dtype != like.dtype:  # storing it would cast, e.g. floats in [0, 1] to uint8 zeros
        raise OptionError(f"the albumentations pipeline turned a {like.dtype} {what} into "
                          f"{got.dtype}; expansion needs pipelines that keep the dtype (leave "
                          "ToFloat, Normalize and the like to training time)")
    if got.shape != like.shape:
        if got.size == like.size:  # e.g. a (H, W, 1) result for an (H, W) input
            return got.reshape(like.shape)
        raise OptionError(f"the albumentations pipeline turned an {what} of shape {like.shape} "
                          f"into {got.shape}; expansion needs pipelines that keep the shape")
    return got


def as_batch_augmenter(augmenter: object, seed: int):
    """An Augmenter as is; an albumentations pipeline wrapped; anything else is an error."""
    if isinstance(augmenter, (Augmenter, AlbumentationsRunner)):
        return augmenter
    if is_albumentations(augmenter):
        return AlbumentationsRunner(augmenter, seed)
    raise OptionError(f"augmenter={augmenter!r} is not allowed: give a dlsets Augmenter or an "
                      "albumentations transform or Compose")
