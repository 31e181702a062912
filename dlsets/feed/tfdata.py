"""Augmented batches as a ``tf.data.Dataset`` (``pip install 'dlsets[tensorflow]'``).

Named ``tfdata`` so that ``import tensorflow`` inside dlsets still means TensorFlow.
"""

from __future__ import annotations

try:
    import tensorflow as tf
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without tensorflow
    raise ImportError("dlsets.tfdata needs TensorFlow: pip install 'dlsets[tensorflow]'") from exc

import numpy as np

from .batching import Batches

__all__ = ["dataset"]


def dataset(images, labels=None, batch_size: int = 32, *, parallel: int | None = None,
            **options) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of augmented batches: ``(images, labels)`` tensors, or
    ``(images, masks)`` with masks (segmentation targets), for ``model.fit`` or a custom loop.

    ``images``/``labels`` and the keyword ``options`` are those of :func:`dlsets.batches`
    (``augmenter``, ``shuffle``, ``seed``, ``epoch``, ``masks``, ``drop_last``, ``rank``,
    ``world_size``, ``pad``, ``dtype``, ``channels``, ``normalize``), with the defaults
    ``dtype="float32"`` and ``channels="last"``; or pass a :class:`~dlsets.feed.Batches`
    made by :func:`dlsets.batches` as ``images`` (and nothing else), to keep its
    ``set_epoch``. Each iteration over the dataset (each Keras epoch) is the next epoch.
    Batches are made on ``parallel`` tf.data threads (default: AUTOTUNE) in order; the
    dataset knows its length (``cardinality``), the number of batches per epoch.
    """
    if isinstance(images, Batches):
        if labels is not None or options:
            raise TypeError("give a Batches object alone, or arrays and options")
        stream = images
    else:
        options.setdefault("dtype", "float32")
        options.setdefault("channels", "last")
        stream = Batches(images, labels, batch_size, **options)
    feed = stream.feed
    count = len(stream)
    masks = feed.masks is not None
    probe = stream.batch(0, stream.epoch)
    probe = (probe[0], probe[-1]) if masks else probe
    signature = tuple(tf.TensorSpec((None, *a.shape[1:]), tf.as_dtype(a.dtype)) for a in probe)

    def passes():
        e = stream.next_epoch()
        for i in range(count):
            yield np.int64(e), np.int64(i)

    def make(e, i):
        batch = stream.batch(int(i), int(e))
        return (batch[0], batch[-1]) if masks else batch

    def load(e, i):
        out = tf.numpy_function(make, [e, i], [s.dtype for s in signature], stateful=False)
        return tuple(tf.ensure_shape(t, s.shape) for t, s in zip(out, signature, strict=True))

    steps = tf.data.Dataset.from_generator(
        passes, output_signature=(tf.TensorSpec((), tf.int64), tf.TensorSpec((), tf.int64)))
    ds = steps.map(load, num_parallel_calls=parallel or tf.data.AUTOTUNE, deterministic=True)
    if len(signature) == 1:
        ds = ds.map(lambda x: x)
    ds = ds.apply(tf.data.experimental.assert_cardinality(count))
    return ds.prefetch(tf.data.AUTOTUNE)
