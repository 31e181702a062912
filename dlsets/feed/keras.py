"""A Keras 3 ``PyDataset`` of augmented batches (``pip install 'dlsets[keras]'`` plus a
backend: torch, tensorflow or jax), for ``model.fit`` on any backend.

Batch i of epoch e is a pure function of (i, e) (see :mod:`dlsets.feed`), so Keras' worker
threads and processes (``workers=``, ``use_multiprocessing=True``) may make batches in any
order and still give each (epoch, sample) pair its own transform.
"""

from __future__ import annotations

try:
    import keras
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without keras
    raise ImportError("dlsets.keras needs Keras 3: pip install 'dlsets[keras]' and a backend "
                      "('dlsets[torch]', 'dlsets[tensorflow]' or jax)") from exc

if int(keras.__version__.split(".")[0]) < 3:  # pragma: no cover
    raise ImportError(f"dlsets.keras needs Keras 3, found {keras.__version__}: "
                      "pip install 'dlsets[keras]'")

from .batching import Batches
from .ids import check_epoch

__all__ = ["AugmentedPyDataset"]


class AugmentedPyDataset(keras.utils.PyDataset):
    """Augmented batches for ``model.fit(ds)``, ``validation_data=`` and ``evaluate``.

    ``images``, ``labels`` (or a :class:`~dlsets.Split`), ``augmenter``, ``batch_size``,
    ``shuffle``, ``seed`` and the keyword arguments ``masks``, ``epoch``, ``drop_last``,
    ``rank``, ``world_size``, ``pad``, ``normalize`` are those of :func:`dlsets.batches`;
    the defaults suit Keras: ``dtype="float32"`` (in [0, 1]) and ``channels="last"``
    (B, H, W, C, greyscale included). Batches are NumPy ``(images, labels)``, or
    ``(images, masks)`` when masks are given (segmentation targets). Other keyword arguments
    go to ``keras.utils.PyDataset`` (``workers``, ``use_multiprocessing``, ``max_queue_size``).

    ``on_epoch_end`` (called by Keras after every epoch) moves on to the next epoch's order
    and transforms; ``set_epoch(e)`` sets it, e.g. when resuming. For a validation set, pass
    ``augmenter=None, shuffle=False`` (e.g. with ``dlsets.load(name, val=0.1).val``).
    """

    def __init__(self, images, labels=None, augmenter=None, batch_size: int = 32,
                 shuffle: bool = True, seed: int = 0, *, masks=None, epoch: int = 0,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1,
                 pad: bool = False, dtype="float32", channels: str | None = "last",
                 normalize=None, **pydataset_kwargs) -> None:
        # checked before Keras sees anything, so a bad argument fails here, not in a worker
        self._batches = Batches(images, labels, batch_size, masks=masks, shuffle=shuffle,
                                seed=seed, epoch=epoch, drop_last=drop_last,
                                augmenter=augmenter, rank=rank, world_size=world_size, pad=pad,
                                dtype=dtype, channels=channels, normalize=normalize)
        super().__init__(**pydataset_kwargs)
        self.epoch = self._batches.epoch

    @property
    def batches(self) -> Batches:
        """The batch stream behind this dataset."""
        return self._batches

    def __len__(self) -> int:
        return len(self._batches)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        batch = self._batches.batch(index, self.epoch)
        if self._batches.feed.masks is not None:
            return batch[0], batch[-1]  # segmentation: the masks are the targets
        return batch if len(batch) > 1 else batch[0]

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def set_epoch(self, epoch: int) -> None:
        """Make the coming batches those of epoch ``epoch``."""
        self.epoch = check_epoch(epoch, self._batches.n)
