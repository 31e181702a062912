"""Augmented batches for training loops: framework-neutral batches and sample ids, and the
PyTorch, Keras and tf.data adapters (``dlsets.torch``, ``dlsets.keras``, ``dlsets.tfdata``),
each imported only when used."""

from .batching import Batches, Feed, batches, check_rank, epoch_order, sample_ids, shard

__all__ = ["Batches", "Feed", "batches", "check_rank", "epoch_order", "sample_ids", "shard"]
