"""ConvNetJS / Keras.js sprite sheets: every PNG decoded and compared pixel by pixel."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from dlsets.data.dataset import Dataset, Split
from dlsets.errors import OptionError
from dlsets.outputs.convnetjs import write_convnetjs

RNG = np.random.default_rng(8)


def _split(n, shape):
    return Split(RNG.integers(0, 256, (n, *shape), dtype=np.uint8),
                 (np.arange(n) * 3 % 10).astype(np.uint8))


def _js_labels(path):
    text = path.read_text()
    m = re.fullmatch(r"var labels=\[([-\d,]*)\];\n", text)
    assert m, text[:80]
    return [int(v) for v in m.group(1).split(",")]


def _decode(path):
    with Image.open(path) as im:
        return im.mode, np.asarray(im)


def test_mnist_layout_greyscale_rows_of_784_and_the_demo_indexing(tmp_path):
    # MNIST's layout scaled down: 60 train / 10 test with 3-row batches instead of 3000
    ds = Dataset("mnist", _split(60, (28, 28)), _split(10, (28, 28)), tuple("0123456789"))
    out = ds.to_convnetjs(tmp_path / "js", batch_size=3)
    labels = _js_labels(out / "mnist_labels.js")
    meta = json.loads((out / "mnist_labels.json").read_text())
    assert meta["train_batches"] == list(range(20)) and meta["test_batches"] == [20, 21, 22, 23]
    assert meta["labels"] == labels and meta["classes"] == list("0123456789")
    x = np.concatenate([ds.train.images, ds.test.images])
    y = np.concatenate([ds.train.labels, ds.test.labels])
    for b in range(24):
        mode, rows = _decode(out / f"mnist_batch_{b}.png")
        assert mode == "L" and rows.shape[1] == 784
        for k, row in enumerate(rows):
            n = b * 3 + k  # how the demo finds an image's label: batch * size + row
            np.testing.assert_array_equal(row.reshape(28, 28), x[n])
            assert labels[n] == y[n]
    assert len(labels) == 70
    assert not (out / "mnist_batch_24.png").exists()


def test_cifar_layout_rgb_rows_of_1024(tmp_path):
    ds = Dataset("cifar10", _split(5, (32, 32, 3)), _split(2, (32, 32, 3)), tuple("abcdefghij"))
    out = ds.to_convnetjs(tmp_path / "js", batch_size=2)
    labels = _js_labels(out / "cifar10_labels.js")
    assert labels == [*ds.train.labels.tolist(), -1, *ds.test.labels.tolist()]  # short batch 2
    for b, (x, rows_wanted) in enumerate([(ds.train.images, [0, 1]), (ds.train.images, [2, 3]),
                                          (ds.train.images, [4]), (ds.test.images, [0, 1])]):
        mode, rows = _decode(out / f"cifar10_batch_{b}.png")
        assert mode == "RGB" and rows.shape == (len(rows_wanted), 1024, 3)
        for row, i in zip(rows, rows_wanted, strict=True):
            # pixel p of the row = image pixel (p // 32, p % 32); its R, G, B = the three planes
            np.testing.assert_array_equal(row.reshape(32, 32, 3), x[i])


def test_default_batch_sizes_follow_the_demos(tmp_path):
    grey = Dataset("g", _split(3001, (2, 2)), _split(1, (2, 2)), ())
    out = grey.to_convnetjs(tmp_path / "g")
    assert _decode(out / "g_batch_0.png")[1].shape == (3000, 4)
    assert _decode(out / "g_batch_1.png")[1].shape == (1, 4)
    colour = Dataset("c", _split(1001, (2, 2, 3)), _split(1, (2, 2, 3)), ())
    out = colour.to_convnetjs(tmp_path / "c")
    assert _decode(out / "c_batch_0.png")[1].shape == (1000, 4, 3)


def test_what_cannot_be_a_sprite_sheet_is_refused(tmp_path):
    x = np.zeros((2, 4, 4, 2), np.uint8)
    y = np.zeros(2, np.uint8)
    with pytest.raises(OptionError, match=r"\(N, H, W, 3\) colour"):
        write_convnetjs(tmp_path / "a", (x, y), (x, y), prefix="p")
    with pytest.raises(OptionError, match="uint8 pixels"):
        write_convnetjs(tmp_path / "b", (x[..., 0].astype(np.float32), y), (x[..., 0], y),
                        prefix="p")
    with pytest.raises(OptionError, match="prefix"):
        write_convnetjs(tmp_path / "c", (x[..., 0], y), (x[..., 0], y), prefix="../p")
    assert not list(tmp_path.iterdir())
