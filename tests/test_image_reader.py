"""One image file -> uint8 pixels at a fixed size: formats, modes, orientation, geometry, masks."""

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from dlsets.formats.image import Skip, Target, _plain_png, decode_image, decode_pair
from tests.imagefolders import bomb_png, pattern, save, with_orientation


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".gif", ".tif", ".webp"])
def test_every_format_decodes_to_the_target(tmp_path, ext):
    img = pattern(30, 40)
    p = save(tmp_path / f"a{ext}", img)
    got = decode_image(str(p), Target((15, 20)))
    assert isinstance(got, np.ndarray) and got.shape == (15, 20, 3) and got.dtype == np.uint8
    want = np.asarray(Image.fromarray(img).resize((20, 15), Image.Resampling.BILINEAR))
    tol = 60 if ext == ".gif" else 12  # GIF: a 256-colour palette
    assert np.abs(got.astype(int) - want).mean() < tol
    gray = decode_image(str(p), Target((15, 20), "grayscale"))
    assert gray.shape == (15, 20)


def test_gif_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (200, 10, 90)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    got = decode_image(str(tmp_path / "anim.gif"), Target((8, 8), "grayscale"))
    assert abs(int(got.mean()) - 200) < 8


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(tmp_path, orientation):
    img = pattern(40, 60)  # bright top-left corner, not square
    (tmp_path / "o.jpg").write_bytes(with_orientation(img, orientation))
    upright = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.jpg")))
    h, w = upright.shape[:2]
    got = decode_image(str(tmp_path / "o.jpg"), Target((h, w)))
    assert got.shape == upright.shape
    assert np.abs(got.astype(int) - upright).mean() < 6
    # the bright corner moved where the orientation says: not where it is stored
    stored = np.asarray(Image.open(tmp_path / "o.jpg"))
    assert stored.shape[:2] != got.shape[:2] or not np.array_equal(stored[:4, :4], got[:4, :4])


def test_16_bit_and_palette_and_transparency(tmp_path):
    a16 = np.array([[0, 257, 65535], [32896, 514, 1000]], np.uint16)
    Image.fromarray(a16).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    got = decode_image(str(tmp_path / "deep.png"), Target((2, 3), "grayscale"))
    assert got.tolist() == [[0, 1, 255], [128, 2, 4]]

    pal = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), "P")
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    pal.save(tmp_path / "pal.png")
    got = decode_image(str(tmp_path / "pal.png"), Target((2, 2)))
    assert got[0, 0].tolist() == [255, 0, 0] and got[1, 0].tolist() == [0, 0, 255]
    pal.info["transparency"] = 1
    pal.save(tmp_path / "palt.png", transparency=1)
    got = decode_image(str(tmp_path / "palt.png"), Target((2, 2)))
    assert got[0, 1].tolist() == [0, 0, 0]  # the transparent colour lands on black

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = [[255, 0], [128, 255]]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    got = decode_image(str(tmp_path / "alpha.png"), Target((2, 2)))
    assert got[..., 0].tolist() == [[200, 0], [100, 200]]


def test_unusable_files_are_skips_with_reasons(tmp_path):
    Image.fromarray(np.ones((4, 4), np.float32)).save(tmp_path / "float.tif")
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    (tmp_path / "junk.jpg").write_bytes(b"not a picture at all")
    good = io.BytesIO()
    Image.fromarray(pattern(64, 64)).save(good, format="PNG")
    (tmp_path / "cut.png").write_bytes(good.getvalue()[:300])
    kinds = {}
    for name in ("float.tif", "bomb.png", "junk.jpg", "cut.png"):
        got = decode_image(str(tmp_path / name), Target((8, 8)))
        assert isinstance(got, Skip), name
        kinds[name] = got.kind
    assert kinds == {"float.tif": "unsupported mode", "bomb.png": "too large",
                     "junk.jpg": "not an image", "cut.png": "corrupt"}


def test_resize_modes_keep_or_drop_the_aspect_ratio(tmp_path):
    img = np.full((20, 40, 3), 255, np.uint8)  # white, twice as wide as high
    p = save(tmp_path / "wide.png", img)
    pad = decode_image(str(p), Target((20, 20), resize="pad"))
    assert pad[:5].max() == 0 and pad[-5:].max() == 0 and pad[8:12].min() == 255
    crop = decode_image(str(p), Target((20, 20), resize="crop"))
    assert crop.min() == 255
    stretch = decode_image(str(p), Target((10, 30), resize="stretch"))
    assert stretch.shape == (10, 30, 3) and stretch.min() == 255


def test_jpeg_draft_matches_a_full_decode(tmp_path):
    img = pattern(512, 512)
    p = save(tmp_path / "big.jpg", img, quality=90)
    got = decode_image(str(p), Target((64, 64)))
    full = np.asarray(Image.open(p).convert("RGB").resize((64, 64), Image.Resampling.BILINEAR))
    assert np.abs(got.astype(int) - full).mean() < 4


def test_masks_keep_their_classes_and_follow_the_geometry(tmp_path):
    img = pattern(20, 40)
    m = np.zeros((20, 40), np.uint8)
    m[:, 20:] = 2
    m[:5, :5] = 7
    save(tmp_path / "i.png", img)
    pal = Image.fromarray(m, "P")
    pal.putpalette(list(range(256)) * 3)
    pal.save(tmp_path / "m.png")
    px, mask = decode_pair(str(tmp_path / "i.png"), str(tmp_path / "m.png"),
                           Target((10, 10), resize="crop"))
    assert px.shape == (10, 10, 3) and mask.shape == (10, 10)
    assert set(np.unique(mask)) <= {0, 2, 7}  # nearest neighbour: no new values
    assert (mask[:, :5] == 0).all() and (mask[:, 5:] == 2).all()  # the centre 20x20 crop

    save(tmp_path / "rgb_gray.png", np.repeat(m[..., None], 3, axis=2))
    _, m2 = decode_pair(str(tmp_path / "i.png"), str(tmp_path / "rgb_gray.png"),
                        Target((20, 40)))
    assert np.array_equal(m2, m)
    colour = np.zeros((20, 40, 3), np.uint8)
    colour[..., 0] = 255
    save(tmp_path / "colour.png", colour)
    got = decode_pair(str(tmp_path / "i.png"), str(tmp_path / "colour.png"), Target((8, 8)))
    assert isinstance(got, Skip) and got.kind == "mask" and "single-channel" in got.reason
    save(tmp_path / "small.png", m[:10])
    got = decode_pair(str(tmp_path / "i.png"), str(tmp_path / "small.png"), Target((8, 8)))
    assert isinstance(got, Skip) and got.kind == "pair" and "40x20" in got.reason


@pytest.mark.parametrize("color", ["rgb", "grayscale"])
@pytest.mark.parametrize("size", [(24, 20), (12, 10)])
def test_the_opencv_png_path_gives_pillows_pixels(tmp_path, color, size):
    img = pattern(24, 20)
    Image.fromarray(img).quantize(16).save(tmp_path / "pal.png")
    paths = [save(tmp_path / "rgb.png", img), save(tmp_path / "gray.png", img[..., 1]),
             tmp_path / "pal.png", save(tmp_path / "odd.PNG", img)]
    rgba = np.concatenate([img, np.full((24, 20, 1), 200, np.uint8)], axis=2)
    paths.append(save(tmp_path / "rgba.png", rgba))
    plain = [_plain_png(p.read_bytes()) is not None for p in paths]
    assert plain == [True, True, False, True, False]  # palette and alpha go through Pillow
    for p in paths:
        fast = decode_image(str(p), Target(size, color), fast=True)
        slow = decode_image(str(p), Target(size, color))
        assert np.array_equal(fast, slow), p.name
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    for name in ("bad.png", "bomb.png"):
        fast = decode_image(str(tmp_path / name), Target(size), fast=True)
        assert fast == decode_image(str(tmp_path / name), Target(size))


@pytest.mark.parametrize("target", [Target((64, 64)), Target((40, 64), resize="crop"),
                                    Target((64, 30), resize="pad"), Target((300, 200)),
                                    Target((32, 32), "grayscale"), Target((257, 257))])
def test_the_opencv_jpeg_path_gives_pillows_pixels(tmp_path, target):
    img = pattern(260, 390)
    files = [save(tmp_path / "rgb.jpg", img, quality=85),
             save(tmp_path / "gray.jpg", img[..., 0], quality=85),
             save(tmp_path / "prog.jpg", img, progressive=True)]
    (tmp_path / "turned.jpg").write_bytes(with_orientation(img, 6))
    files.append(tmp_path / "turned.jpg")
    for p in files:
        fast = decode_image(str(p), target, fast=True)
        slow = decode_image(str(p), target)
        assert fast.shape == target.shape and np.array_equal(fast, slow), p.name


@pytest.mark.parametrize("target", [Target((64, 32)), Target((128, 64), "grayscale"),
                                    Target((64, 32), resize="crop")])
def test_the_opencv_jpeg_path_at_an_exact_dct_scale_gives_pillows_pixels(tmp_path, target):
    img = pattern(512, 256)  # 1/8 and 1/4 of it are the targets: no resampling after the DCT
    files = [save(tmp_path / "rgb.jpg", img, quality=85),
             save(tmp_path / "gray.jpg", img[..., 0], quality=85)]
    for p in files:
        fast = decode_image(str(p), target, fast=True)
        assert fast.shape == target.shape and fast.flags.c_contiguous, p.name
        assert np.array_equal(fast, decode_image(str(p), target)), p.name


def test_a_file_that_grew_after_its_fstat_is_read_whole(tmp_path, monkeypatch):
    import dlsets.formats.image as reader

    p = save(tmp_path / "grew.jpg", pattern(128, 96), quality=85)
    want = decode_image(str(p), Target((16, 16)))
    real = reader.open_regular

    def stale(path):  # the size fstat saw before the rest of the file was written
        f, size = real(path)
        return f, size // 2

    monkeypatch.setattr(reader, "open_regular", stale)
    assert np.array_equal(decode_image(str(p), Target((16, 16)), fast=True), want)


def test_truncated_files_are_corrupt_on_both_paths(tmp_path):
    for name in ("cut.jpg", "cut.png"):
        full = save(tmp_path / f"full{name[-4:]}", pattern(64, 64)).read_bytes()
        (tmp_path / name).write_bytes(full[: len(full) // 2])
        for fast in (False, True):
            got = decode_image(str(tmp_path / name), Target((16, 16)), fast=fast)
            assert isinstance(got, Skip) and got.kind == "corrupt", (name, fast)


def test_every_resize_mode_reaches_any_target_size():
    from dlsets.formats.image import _resample

    rng = np.random.default_rng(0)
    for _ in range(300):
        sw, sh, tw, th = (int(v) for v in rng.integers(1, 400, 4))
        im = Image.new("L", (sw, sh), 255)
        for mode in ("stretch", "crop", "pad"):
            out = _resample(im, (tw, th), mode, nearest=mode == "crop")
            assert out.size == (tw, th), (sw, sh, tw, th, mode)
