"""Objects that show themselves: HTML with thumbnails and counts, readable describe(), progress
in a notebook, a preview of sensible width."""

import base64
import io
import re
import sys
import types

import numpy as np
from PIL import Image

import dlsets
from dlsets.augment.preview import default_scale
from dlsets.common import progress
from dlsets.data.dataset import Dataset, Split


def _images_in(html: str) -> list[Image.Image]:
    out = []
    for b64 in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html):
        out.append(Image.open(io.BytesIO(base64.b64decode(b64))))
    return out


def _toy(n=60, classes=("zero", "one", "two")):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = (np.arange(n) % len(classes)).astype(np.uint8)
    counts = {c: int((y == i).sum()) for i, c in enumerate(classes)}
    info = {"prepared_dir": "/some/cache/toy/prepared",
            "splits": {"train": {"class_counts": counts}, "test": {"class_counts": counts}}}
    return Dataset("toy", Split(x, y), Split(x[:9], y[:9]), classes, info)


def test_dataset_html_shows_thumbnails_per_class_counts_and_the_cache_folder():
    ds = _toy()
    html = ds._repr_html_()
    thumbs = _images_in(html)
    # 4 per class for 3 classes, in each of the two splits (the test split has 3 per class)
    assert len(thumbs) == 3 * 4 + 3 * 3
    assert all(max(t.size) == 48 for t in thumbs)
    for name in ("zero", "one", "two", "/some/cache/toy/prepared", "uint8", "(60, 28, 28)"):
        assert name in html
    assert "<td style='text-align:left'>20</td>" in html  # train count of each class


def test_thumbnail_pixels_are_the_images():
    x = np.zeros((2, 4, 4), np.uint8)
    x[0, 0, 0] = 255
    ds = Dataset("t", Split(x, np.array([0, 1], np.uint8)), Split(x, np.array([0, 1], np.uint8)),
                 ("a", "b"), {})
    first = np.asarray(_images_in(ds._repr_html_())[0])
    assert first[0, 0] == 255 and first[-1, -1] == 0


def test_channels_first_float_images_and_segmentation_pairs_render():
    rng = np.random.default_rng(1)
    x = rng.random((5, 3, 16, 16), dtype=np.float32)
    masks = rng.integers(0, 3, (5, 16, 16), dtype=np.uint8)
    s = Split(x, np.zeros(5, np.uint8), masks)
    html = s._repr_html_()
    imgs = _images_in(html)
    assert len(imgs) == 8  # four image/mask pairs
    assert imgs[0].mode == "RGB" and "masks" in html


def test_names_are_escaped():
    ds = _toy(classes=("<b>x</b>", "y", "z"))
    assert "<b>x</b>" not in ds._repr_html_() and "&lt;b&gt;x&lt;/b&gt;" in ds._repr_html_()


def test_augmenter_shows_its_parameters_as_a_table():
    aug = dlsets.Augmenter(rotate=15, shift=0.1, elastic=(34, 4), seed=7)
    html = aug._repr_html_()
    assert html.count("<tr>") >= 5 and "rotate=(-15.0, 15.0)" in html and "Elastic" in html
    assert ">7<" in html


def test_describe_is_readable_text_and_html():
    spec = dlsets.describe("kmnist")
    text = repr(spec)
    assert "\n" in text and len(max(text.splitlines(), key=len)) < 400
    urls = [u for f in spec.files.values() for u in f.urls]
    assert urls and not any(u in text for u in urls)  # no download URLs
    assert not re.search(r"[0-9a-f]{64}", text)  # no checksums
    for word in ("classes", "28 x 28", "train-images-idx3-ubyte.gz", "licence", "citation"):
        assert word in text, word
    assert re.search(r"train-images-idx3-ubyte\.gz \(\d", text)  # files with sizes
    assert "<table>" in spec._repr_html_()
    assert spec.name == "kmnist" and spec.classes  # still the registry entry underneath


def test_progress_is_on_in_a_jupyter_kernel(monkeypatch):
    class ZMQInteractiveShell:
        pass

    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: ZMQInteractiveShell()
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not progress.enabled(None)
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert progress.enabled(None)
    assert not progress.enabled(False)
    bar = progress.bar(10, "work")
    assert not isinstance(bar, progress.Notice)
    bar.close()


def test_default_preview_scale_keeps_the_grid_about_2000_pixels_wide():
    assert default_scale(8 * 29) == 4  # MNIST: enlarged as before
    assert default_scale(8 * 129) == 1  # 128x128 images: not 4,132 pixels wide
    assert default_scale(5000) == 1
    assert all(w * default_scale(w) <= 2000 for w in range(1, 2001))


def test_split_repr_is_short():
    x = np.zeros((200, 28, 28), np.uint8)
    r = repr(Split(x, np.zeros(200, np.uint8), x))
    assert r == ("Split(images=uint8 (200, 28, 28), labels=uint8 (200,), "
                 "masks=uint8 (200, 28, 28))")
