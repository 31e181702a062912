"""TensorBoard summaries, read back with TensorBoard's own EventAccumulator."""

import io
import sys
import types

import numpy as np
import pytest
from PIL import Image

import dlsets
from dlsets.augment import Augmenter, preview_grid
from dlsets.augment.preview import preview_cells
from dlsets.errors import MissingDependencyError
from dlsets.outputs.tensorboard import strip

RNG = np.random.default_rng(12)


def _events(logdir):
    # TensorBoard reads event files with TensorFlow when it can import it (6 s here) and with
    # its own TensorFlow stub otherwise; tensorboard.compat.notf, present in TensorBoard's
    # TF-free builds, makes it take the stub. Either way it is TensorBoard's reader.
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(logdir), size_guidance={ea.IMAGES: 0, ea.HISTOGRAMS: 0})
    acc.Reload()
    return acc


def _png(event):
    with Image.open(io.BytesIO(event.encoded_image_string)) as im:
        return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize("colour", [False, True])
def test_images_and_class_histograms_read_back(tmp_path, colour):
    x = RNG.integers(0, 256, (6, 12, 12, 3) if colour else (6, 12, 12), dtype=np.uint8)
    y_train = np.array([0, 1, 1, 2, 2, 2], np.uint8)
    y_test = np.array([3, 3], np.uint8)
    aug = Augmenter(rotate=25, shift=0.1, seed=9)
    path = dlsets.write_tensorboard(tmp_path, x, aug, n=4, copies=3, classes="abcd",
                                    labels={"train": y_train, "test": y_test}, step=5)
    assert path.parent == tmp_path and path.name.startswith("events.out.tfevents.")
    acc = _events(tmp_path)
    assert set(acc.Tags()["images"]) == {"dlsets/preview", "dlsets/originals",
                                         "dlsets/augmented"}
    assert set(acc.Tags()["histograms"]) == {"dlsets/class_histogram/train",
                                             "dlsets/class_histogram/test"}

    def rgb(a):
        return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a

    (preview,) = acc.Images("dlsets/preview")
    grid = preview_grid(x, aug, n=4, copies=3)
    assert (preview.step, preview.height, preview.width) == (5, *grid.shape[:2])
    np.testing.assert_array_equal(_png(preview), rgb(grid))
    (originals,) = acc.Images("dlsets/originals")
    np.testing.assert_array_equal(_png(originals), rgb(strip(x[:4])))
    assert originals.width == 4 * 12 + 3
    cells = preview_cells(x, aug, n=4, copies=3)
    augmented = acc.Images("dlsets/augmented")
    assert [e.step for e in augmented] == [5, 6, 7]
    for k, event in enumerate(augmented):
        np.testing.assert_array_equal(_png(event), rgb(strip(cells[:, k + 1])))
        assert not np.array_equal(_png(event), _png(originals))  # the copies really moved
    (train,) = acc.Histograms("dlsets/class_histogram/train")
    h = train.histogram_value
    assert list(h.bucket) == [1, 2, 3, 0] and h.num == 6 and train.step == 5
    assert list(h.bucket_limit) == [0.5, 1.5, 2.5, 3.5]
    (test,) = acc.Histograms("dlsets/class_histogram/test")
    assert list(test.histogram_value.bucket) == [0, 0, 0, 2]


def test_cli_preview_writes_tensorboard_summaries(tmp_path, capsys, monkeypatch):
    import hashlib
    import json

    from dlsets.cli import main
    from tests.formats import idx_gz_bytes

    arrays = {"train-images-idx3-ubyte.gz": RNG.integers(0, 256, (30, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte.gz": (np.arange(30) % 10).astype(np.uint8),
              "t10k-images-idx3-ubyte.gz": RNG.integers(0, 256, (5, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte.gz": (np.arange(5) % 10).astype(np.uint8)}
    src = tmp_path / "src"
    src.mkdir()
    files = {}
    for name, a in arrays.items():
        (src / name).write_bytes(data := idx_gz_bytes(a))
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(),
                       "urls": ["http://127.0.0.1:9/" + name]}
    (tmp_path / "reg.json").write_text(json.dumps({"tb": {"like": "mnist", "files": files}}))
    monkeypatch.setenv("DLSETS_REGISTRY", str(tmp_path / "reg.json"))
    assert main(["-q", "fetch", "tb", "--from", str(src)]) == 0
    logs = tmp_path / "logs"
    assert main(["preview", "tb", "--rotate", "10", "--rows", "3", "--copies", "2",
                 "--tensorboard", str(logs)]) == 0
    assert "tensorboard --logdir" in capsys.readouterr().out
    acc = _events(logs)
    (preview,) = acc.Images("dlsets/preview")
    assert (preview.height, preview.width) == (3 * 28 + 2, 3 * 28 + 1 + 3)
    (h,) = acc.Histograms("dlsets/class_histogram/train")
    assert list(h.histogram_value.bucket) == [3] * 10
    assert main(["preview", "tb"]) == 1
    assert "give at least one" in capsys.readouterr().err


def test_without_tensorboardx_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'dlsets\[tensorboard\]'"):
        dlsets.write_tensorboard(tmp_path, np.zeros((2, 4, 4), np.uint8), Augmenter(), n=1)
