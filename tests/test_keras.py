"""dlsets.keras on the torch and tensorflow backends (each in its own process: Keras picks its
backend at import), and dlsets.tfdata; the README's Keras and tf.data examples."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.feedfixtures import GUIDE, readme_snippet, tiny_mnist

ROOT = Path(__file__).resolve().parent.parent

# Run after the README example: what model.fit is fed, with Keras' own worker processes.
CHECK_FIT = '''
import numpy as np
from dlsets.errors import ReplayError

img = np.zeros((20, 20), np.uint8)
img[4:16, 8:12] = 255
n = 40
x, y = np.repeat(img[None], n, axis=0), np.arange(n)
aug = dlsets.Augmenter(rotate=15, shift=0.1, seed=3)
seen = []

class Spy(keras.layers.Layer):
    def call(self, t):
        seen.append(keras.ops.convert_to_numpy(t))
        return t

data = AugmentedPyDataset(x, y, aug, batch_size=8, dtype="uint8", workers=2,
                          use_multiprocessing=True)
spy = keras.Sequential([keras.Input((20, 20, 1)), Spy(), keras.layers.Flatten(),
                        keras.layers.Dense(1)])
spy.compile("sgd", "mse", run_eagerly=True)
spy.fit(data, epochs=2, verbose=0)
# (Keras first builds the model on a batch of ones)
got = np.concatenate([b for b in seen if not (b == 1).all()])[..., 0].astype(np.uint8)
want = {aug.image(img, id=e * n + j).tobytes(): (e, j) for e in range(4) for j in range(n)}
found = [want[g.tobytes()] for g in got]  # KeyError: not a documented transform
assert len(found) == len(set(found)) == 2 * n, "repeated or missing samples"
# every (epoch, sample) pair once at most; new transforms as the epochs go on. (On the torch
# and jax backends Keras builds the model on one batch of its enqueuer first, and that
# enqueuer hands the batches it already made to the next epoch: epochs overlap by a batch.)
assert len({e for e, _ in found}) >= 2, found

class Naive(keras.utils.PyDataset):
    def __len__(self):
        return 5
    def __getitem__(self, i):
        return aug(x[i * 8:(i + 1) * 8]).astype("float32")[..., None], y[i * 8:(i + 1) * 8]

try:
    spy.fit(Naive(workers=2, use_multiprocessing=True), epochs=1, verbose=0)
    raise AssertionError("a naive augmenter in Keras' worker processes was not refused")
except Exception as exc:  # the tensorflow backend wraps it in an error of its own
    assert isinstance(exc, ReplayError) or "ReplayError" in str(exc), exc
    assert "ids=" in str(exc)
print("FIT-OK", keras.backend.backend())
'''

CHECK_TFDATA = '''
import numpy as np
import tensorflow as tf
assert x.dtype == tf.float32 and tuple(x.shape[1:]) == (28, 28, 1) and y.dtype == tf.uint8
assert int(train.cardinality()) == 1
aug2 = dlsets.Augmenter(rotate=15, shift=0.1, seed=3)
xs, ys = ds.train.images, ds.train.labels
stream = dlsets.batches(ds.train, batch_size=7, augmenter=aug2, dtype="float32")
tfds = dlsets.tfdata.dataset(stream)
first = [(a.numpy(), b.numpy()) for a, b in tfds]
second = [(a.numpy(), b.numpy()) for a, b in tfds]
for e, epoch in enumerate((first, second)):
    order = np.concatenate([stream.batch_indices(i, e) for i in range(len(stream))])
    imgs = np.concatenate([a for a, _ in epoch])
    assert np.array_equal(np.concatenate([b for _, b in epoch]), ys[order])
    assert np.allclose(imgs, aug2(xs[order], ids=e * len(xs) + order) / 255.0)
assert not np.array_equal(first[0][0], second[0][0])
# TensorFlow tensors in: integer scalars for start, images back as tensors
img = tf.constant(xs[:6])
got = aug2(img, start=tf.constant(3))
assert isinstance(got, tf.Tensor) and np.array_equal(got.numpy(), aug2(xs[:6], start=3))
assert np.array_equal(aug2(xs[:6], ids=tf.range(3, 9)), aug2(xs[:6], start=3))
print("TFDATA-OK")
'''


def _run(tmp_path, backend, code):
    script = tmp_path / f"check_{backend}.py"
    script.write_text(code)
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=110)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done.stdout


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_readme_keras_example_and_what_fit_is_fed(tmp_path, monkeypatch, backend):
    tiny_mnist(tmp_path, monkeypatch, n_train=120)
    code = readme_snippet("keras", page=GUIDE) + CHECK_FIT
    if backend == "tensorflow":  # one TensorFlow start for both checks
        code += "\n" + readme_snippet("tfdata", page=GUIDE) + CHECK_TFDATA
    out = _run(tmp_path, backend, code)
    assert f"FIT-OK {backend}" in out
    assert backend == "torch" or "TFDATA-OK" in out
