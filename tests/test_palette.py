"""Colour-coded masks (CamVid/Cityscapes style) through mask_palette= and --mask-palette."""

import json

import numpy as np
import pytest
from PIL import Image

import dlsets
from dlsets.cli import main
from dlsets.errors import OptionError
from dlsets.formats.palette import check

COLOURS = {(0, 0, 0): 0, (128, 64, 128): 1, (220, 20, 60): 2}


def _camvid(root, n=6, stray=None):
    """images/ + masks/ whose masks are RGB colours of COLOURS; ``stray`` paints one pixel of
    the last mask in a colour not in the palette."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    codes = list(COLOURS)
    want = []
    for i in range(n):
        classes = rng.integers(0, 3, (12, 16))
        rgb = np.array(codes, np.uint8)[classes]
        if stray is not None and i == n - 1:
            rgb[3, 5] = stray
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(
            root / "images" / f"f{i}.png")
        Image.fromarray(rgb, "RGB").save(root / "masks" / f"f{i}.png")
        want.append(classes.astype(np.uint8))
    return want


def test_rgb_masks_map_to_classes_through_the_palette(tmp_path):
    want = _camvid(tmp_path / "cv")
    with pytest.raises(dlsets.DlsetsError, match="colour image"):
        dlsets.load_folder(tmp_path / "cv", test=0.0001)  # without a palette: refused
    palette = {"#000000": 0, "128,64,128": 1, (220, 20, 60): 2}
    ds = dlsets.load_folder(tmp_path / "cv", mask_palette=palette, test=0.0001)
    got = np.concatenate([ds.train.masks, ds.test.masks])
    assert sorted(map(bytes, got)) == sorted(map(bytes, want))


def test_a_colour_not_in_the_palette_is_named(tmp_path):
    _camvid(tmp_path / "cv", stray=(1, 2, 3))
    ds = dlsets.load_folder(tmp_path / "cv", mask_palette=COLOURS, test=0.0001)
    assert len(ds.train) + len(ds.test) == 5
    (reason,) = ds.info["skip_reasons"].values()
    assert "#010203" in reason and "x=5, y=3" in reason and "mask_palette" in reason


def test_cli_mask_palette_file(tmp_path, capsys):
    _camvid(tmp_path / "cv")
    pal = tmp_path / "palette.json"
    pal.write_text(json.dumps({"#000000": 0, "#804080": 1, "#dc143c": 2}))
    out = tmp_path / "out.h5"
    assert main(["-q", "export", str(tmp_path / "cv"), "--mask-palette", str(pal),
                 "--out", str(out)]) == 0
    import h5py

    with h5py.File(out, "r") as f:
        assert set(np.unique(f["train/masks"][...])) <= {0, 1, 2}
    pal.write_text("[1, 2]")
    assert main(["export", str(tmp_path / "cv"), "--mask-palette", str(pal), "--out",
                 str(tmp_path / "o2.h5")]) == 1
    assert "JSON object" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [{}, {"#00000": 0}, {"#000000": 256}, {"#000000": True},
                                 {"1,2": 0}, {(0, 0, 300): 1}, [("#000000", 0)],
                                 {"#000000": 0, "0,0,0": 1}])
def test_bad_palettes_are_refused(bad):
    with pytest.raises(OptionError, match="mask_palette"):
        check(bad)
