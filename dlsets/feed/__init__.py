"""Augmented batches for training loops: framework-neutral batches and sample ids, and the
PyTorch, Keras and tf.data adapters (``dlsets.torch``, ``dlsets.keras``, ``dlsets.tfdata``),
each imported only when used."""

from .batching import (  # noqa: F401  (DTYPES, MAX_WORLD_SIZE, RowReader: dlsets.feed's in 0.1)
    DTYPES,
    MAX_WORLD_SIZE,
    Batches,
    Feed,
    RowReader,
    batches,
    check_rank,
    epoch_order,
    sample_ids,
    shard,
)

__all__ = ["Batches", "Feed", "batches", "check_rank", "epoch_order", "sample_ids", "shard"]
