"""The augmentation engine: analytic checks, generic properties of every transform, errors."""

import os
import subprocess
import sys

import numpy as np
import pytest

from dlsets.augment import (
    Augmenter,
    Elastic,
    HFlip,
    Perspective,
    RandomAffine,
    Rotate,
    Shear,
    Shift,
    VFlip,
    Zoom,
)
from dlsets.augment import functional as F
from dlsets.augment.transforms import TRANSFORMS, piece_size
from dlsets.errors import OptionError, ReplayError


def _pattern(n=6, h=16, w=16, c=None, dtype=np.uint8, seed=0):
    """Smooth-ish random images: blocks of constant value, so interiors are easy to compare."""
    rng = np.random.default_rng(seed)
    shape = (n, h, w) if c is None else (n, h, w, c)
    a = rng.integers(0, 256, shape)
    return a.astype(dtype) if dtype == np.uint8 else (a / 255.0).astype(dtype)


# one instance of every transform class, with parameters that move pixels
EXAMPLES = {
    RandomAffine: RandomAffine(rotate=15, shift=0.1, shear=10, zoom=(0.9, 1.1)),
    Rotate: Rotate(20),
    Shift: Shift(0.15),
    Shear: Shear(12),
    Zoom: Zoom((0.8, 1.2)),
    Perspective: Perspective(0.1),
    HFlip: HFlip(0.5),
    VFlip: VFlip(0.5),
    Elastic: Elastic(34, 4),
}


def test_every_transform_class_has_an_example():
    assert set(EXAMPLES) == set(TRANSFORMS)


def test_import_loads_neither_albumentations_nor_cv2():
    code = ("import sys, dlsets.augment; "
            "print('albumentations' in sys.modules, 'cv2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


# ---------------------------------------------------------------- generic properties
@pytest.mark.parametrize("cls", TRANSFORMS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("layout", [(None, np.uint8), (3, np.float32), (1, np.uint8),
                                    (5, np.float32)], ids=["HW-u8", "HWC3-f32", "HWC1-u8",
                                                           "HWC5-f32"])
def test_transform_generic_properties(cls, layout):
    c, dtype = layout
    x = _pattern(n=9, h=12, w=10, c=c, dtype=dtype)
    aug = Augmenter([EXAMPLES[cls]], seed=3, border="reflect")
    y = aug(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y is not x
    assert np.array_equal(y, aug(x, start=0)), "same seed, same samples, same output"
    assert np.array_equal(y, Augmenter([EXAMPLES[cls]], seed=3, border="reflect")(x))
    # any split of the batch into calls with start=k gives the same samples
    parts = [aug(x[:2], start=0), aug(x[2:7], start=2), aug(x[7:], start=7)]
    assert np.array_equal(y, np.concatenate(parts))
    # and so do plain consecutive calls: each continues where the last one stopped
    fresh = Augmenter([EXAMPLES[cls]], seed=3, border="reflect")
    assert np.array_equal(y, np.concatenate([fresh(x[:2]), fresh(x[2:7]), fresh(x[7:])]))
    # sample i only depends on (seed, i), not on its neighbours
    assert np.array_equal(aug(x[4:5], start=4), y[4:5])


@pytest.mark.parametrize("cls", TRANSFORMS, ids=lambda c: c.__name__)
def test_transform_changes_images_and_seed_matters(cls):
    x = _pattern(n=8)
    a = Augmenter([EXAMPLES[cls]], seed=0)(x)
    b = Augmenter([EXAMPLES[cls]], seed=1)(x)
    assert not np.array_equal(a, x)
    assert not np.array_equal(a, b)


def test_chunk_independence_across_internal_pieces_and_workers():
    x = _pattern(n=piece_size(8, 8) + 500, h=8, w=8)
    aug = Augmenter(rotate=15, shift=0.1, shear=10, zoom=(0.9, 1.1), perspective=0.05,
                    elastic=(10, 2), seed=5, workers=2)
    whole = aug(x)
    one = Augmenter(aug.transforms, seed=5, workers=1)
    for cut in (1, 1000, piece_size(8, 8) - 3, piece_size(8, 8) + 1):
        got = np.concatenate([one(x[:cut], start=0), one(x[cut:], start=cut)])
        assert np.array_equal(got, whole), cut
        sequential = Augmenter(aug.transforms, seed=5, workers=1)
        got = np.concatenate([sequential(x[:cut]), sequential(x[cut:])])
        assert np.array_equal(got, whole), cut


@pytest.mark.parametrize("dtype", [np.uint16, np.float64])
def test_other_dtypes_and_memory_layouts(dtype):
    x = _pattern(n=5, c=3).astype(dtype)
    aug = Augmenter(rotate=20, shift=0.1, elastic=(10, 3), seed=1)
    want = aug(np.ascontiguousarray(x), start=0)
    assert want.dtype == dtype and want.shape == x.shape
    assert np.array_equal(aug(np.asfortranarray(x), start=0), want)
    flipped = x[:, ::-1]
    assert np.array_equal(aug(flipped, start=0), aug(np.ascontiguousarray(flipped), start=0))


def test_augmenter_survives_pickling_for_worker_processes():
    import pickle

    x = _pattern()
    aug = Augmenter(rotate=15, shift=0.1, shear=10, elastic=(20, 3), perspective=0.05, seed=9)
    clone = pickle.loads(pickle.dumps(aug))
    assert np.array_equal(clone(x[3:], start=3, channels="last"), aug(x)[3:])
    assert repr(clone) == repr(aug)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_works_in_a_forked_child_after_threads_were_used():
    import multiprocessing

    x = _pattern(n=piece_size(16, 16) * 2 + 5)
    aug = Augmenter(rotate=15, shift=0.1, seed=2, workers=2)
    aug(x)  # the parent has a thread pool now, and its position is len(x)
    want = aug(x, start=len(x))
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:  # the task is pickled: the copy names its samples
        got = pool.apply_async(aug, (x,), {"start": len(x)}).get(timeout=60)
        assert np.array_equal(got, want)
        # its counter would repeat what every other copy does: refused, with the fix
        with pytest.raises(ReplayError, match="pickled or copied.*ids="):
            pool.apply_async(aug, (x,)).get(timeout=60)

    # a forked copy (nothing pickled) likewise
    def child_work():
        try:
            aug(x)
            naive = "no error"
        except ReplayError as exc:
            naive = str(exc)
        send.send((aug(x, ids=np.arange(len(x), 2 * len(x))), naive))

    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=child_work)
    child.start()
    got, naive = receive.recv() if receive.poll(60) else (None, None)
    child.join(60)
    assert child.exitcode == 0 and np.array_equal(got, want)
    assert f"forked from process {os.getpid()}" in naive
    assert aug.position == len(x)  # the children's calls do not move the parent's counter


def test_masks_follow_images():
    x = np.zeros((20, 28, 28), np.uint8)
    x[:, 6:22, 10:18] = 200
    x[:, 8:12, 4:24] = 200
    masks = (x > 100).astype(np.uint8)
    aug = Augmenter(rotate=20, shift=0.1, shear=10, zoom=(0.8, 1.2), perspective=0.08,
                    elastic=(20, 3), seed=2)
    y, m = aug(x, masks=masks)
    assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1}
    agree = ((y > 100) == (m == 1)).mean()
    assert agree > 0.98
    # bool masks come back as bool
    _, mb = aug(x, masks=masks.astype(bool), start=0)
    assert mb.dtype == bool and np.array_equal(mb, m.astype(bool))
    # label maps beyond uint8 keep their values
    labels = masks.astype(np.int64) * 1000
    _, ml = aug(x, masks=labels, start=0)
    assert ml.dtype == np.int64 and np.array_equal(ml, m.astype(np.int64) * 1000)


# ---------------------------------------------------------------- analytic results
def test_no_transform_returns_a_copy():
    x = _pattern()
    y = Augmenter(seed=0)(x)
    assert np.array_equal(y, x) and y is not x
    yy, mm = Augmenter()(x, masks=x)
    assert np.array_equal(yy, x) and np.array_equal(mm, x)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("border", F.BORDERS)
def test_identity_parameters_return_input(dtype, border):
    x = _pattern(dtype=dtype, c=3)
    aug = Augmenter(rotate=0, shift=0, shear=0, zoom=(1, 1), perspective=0, elastic=(0, 4),
                    border=border, fill=9)
    assert np.array_equal(aug(x), x)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_rotation_by_90_degrees_is_rot90(dtype):
    x = _pattern(dtype=dtype, h=15, w=15)
    y = Augmenter([Rotate((90, 90))])(x)
    assert np.array_equal(y, np.rot90(x, k=1, axes=(1, 2)))
    y = Augmenter([Rotate((-90, -90))])(x)
    assert np.array_equal(y, np.rot90(x, k=-1, axes=(1, 2)))


def test_integer_shift_is_roll_with_fill():
    x = _pattern(h=16, w=16)
    y = Augmenter([Shift((0.125, 0.125))], fill=7)(x)  # 2 pixels right and down
    want = np.roll(x, (2, 2), axis=(1, 2))
    want[:, :2, :] = 7
    want[:, :, :2] = 7
    assert np.array_equal(y, want)


def test_shift_is_sub_pixel_half_pixel_averages_neighbours():
    x = _pattern(h=16, w=16, dtype=np.float32)
    y = Augmenter([Shift((1 / 32, 1 / 32))])(x)  # half a pixel right and down
    want = (x[:, :-1, :-1] + x[:, 1:, :-1] + x[:, :-1, 1:] + x[:, 1:, 1:]) / 4
    np.testing.assert_allclose(y[:, 1:, 1:], want, atol=1e-5)
    xu = _pattern(h=16, w=16)
    yu = Augmenter([Shift((1 / 32, 1 / 32))])(xu)
    wu = (xu[:, :-1, :-1].astype(int) + xu[:, 1:, :-1] + xu[:, :-1, 1:] + xu[:, 1:, 1:]) / 4
    assert np.abs(yu[:, 1:, 1:] - wu).max() <= 1


def test_flips():
    x = _pattern(c=3)
    assert np.array_equal(Augmenter([HFlip(1.0)])(x), x[:, :, ::-1])
    assert np.array_equal(Augmenter([VFlip(1.0)])(x), x[:, ::-1])
    assert np.array_equal(Augmenter([HFlip(0.0), VFlip(0.0)])(x), x)
    assert not any(isinstance(t, (HFlip, VFlip)) for t in Augmenter(rotate=15).transforms)
    assert [type(t) for t in Augmenter(hflip=True, vflip=0.3).transforms] == [HFlip, VFlip]


@pytest.mark.parametrize("border,cv_border", [("constant", "BORDER_CONSTANT"),
                                              ("reflect", "BORDER_REFLECT_101"),
                                              ("edge", "BORDER_REPLICATE")])
def test_warp_matches_opencv_per_image(border, cv_border):
    import cv2

    x = _pattern(n=5, h=20, w=24, c=3)
    n = len(x)
    inv = F.affine_inverse(np.linspace(-30, 30, n), np.full(n, 8.0), np.full(n, -5.0),
                           np.linspace(0.7, 1.3, n), np.full(n, 3.3), np.full(n, -2.6), 20, 24)
    persp = F.perspective_inverse(np.random.default_rng(0).uniform(-3, 3, (n, 4, 2)), 20, 24)
    for m in (inv, persp @ inv):
        got = F.warp(x, m, border=border, fill=11)
        bm = getattr(cv2, cv_border)
        want = np.stack([cv2.warpPerspective(x[i], m[i], (24, 20), flags=cv2.INTER_LINEAR
                                             | cv2.WARP_INVERSE_MAP, borderMode=bm,
                                             borderValue=(11, 11, 11)) for i in range(n)])
        # same bilinear arithmetic; 1-level differences from map rounding are allowed (rows
        # sit on a 1/512-pixel grid so that a sample's output is the same in any tile)
        diff = np.abs(got.astype(int) - want)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.05


def test_perspective_inverse_maps_moved_corners_back():
    off = np.random.default_rng(1).uniform(-4, 4, (3, 4, 2))
    inv = F.perspective_inverse(off, 20, 30)
    src = np.array([[0, 0], [29, 0], [29, 19], [0, 19]], float)
    for i in range(3):
        pts = np.c_[src + off[i], np.ones(4)] @ inv[i].T
        np.testing.assert_allclose(pts[:, :2] / pts[:, 2:], src, atol=1e-9)


def test_elastic_field_has_the_smoothed_noise_statistics():
    alpha, sigma, size = 10.0, 3.0, 24
    field = Elastic(alpha, sigma).field(0, 0, 0, 3000, size, size)
    dx, dy = field.dense()
    # theory: white noise of variance 1/3 smoothed along each axis by the matrix K
    k = np.zeros((size, size))
    r = int(np.ceil(4 * sigma))
    w = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    w /= w.sum()
    for i in range(size):
        np.add.at(k[i], F.reflect_indices(i + np.arange(-r, r + 1), size), w)
    kk = np.diag(k @ k.T)
    want = alpha**2 / 3 * np.outer(kk, kk)
    for d in (dx, dy):
        assert abs(float(d.mean())) < 0.05 * alpha * np.sqrt(want.mean())
        np.testing.assert_allclose(d.var(axis=0), want, rtol=0.15)
    # neighbours move together (smooth), far pixels do not
    corr_near = np.corrcoef(dx[:, 12, 12], dx[:, 12, 13])[0, 1]
    corr_far = np.corrcoef(dx[:, 12, 2], dx[:, 12, 22])[0, 1]
    assert corr_near > 0.9 and abs(corr_far) < 0.15


def test_borders_fill_reflect_edge():
    x = np.zeros((1, 10, 10), np.float32)
    x[0, :, 0] = 1.0  # left column lit
    left = Shift((0.3, 0.3))  # 3 pixels right and down
    assert np.all(Augmenter([left], fill=0.5)(x)[0, :, :3] == 0.5)
    edge = Augmenter([left], border="edge")(x)[0]
    assert np.all(edge[3:, :4] == 1.0) and np.all(edge[3:, 4:] == 0.0)
    refl = Augmenter([left], border="reflect")(x)[0]
    # reflect-101 about column 0: output column 3 is source 0, columns 1 and 5 mirror 1
    assert np.all(refl[3:, 3] == 1.0) and np.all(refl[3:, [0, 1, 2, 4]] == 0.0)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs,given", [
    ({"rotate": -5}, "rotate=-5"),
    ({"rotate": (10, 5)}, "rotate=(10, 5)"),
    ({"rotate": "15"}, "rotate='15'"),
    ({"rotate": float("nan")}, "rotate=nan"),
    ({"shift": 1.5}, "shift=1.5"),
    ({"shear": 95}, "shear=95"),
    ({"zoom": (0, 1)}, "zoom=(0, 1)"),
    ({"zoom": (1.2, 0.9)}, "zoom=(1.2, 0.9)"),
    ({"zoom": 1.5}, "zoom=1.5"),
    ({"elastic": 34}, "elastic=34"),
    ({"elastic": (34, 0)}, "sigma=0"),
    ({"elastic": (-1, 4)}, "alpha=-1"),
    ({"perspective": 0.6}, "perspective=0.6"),
    ({"hflip": 2}, "hflip=2"),
    ({"border": "wrap"}, "border='wrap'"),
    ({"fill": "black"}, "fill='black'"),
    ({"seed": -1}, "seed=-1"),
    ({"seed": 1.5}, "seed=1.5"),
    ({"workers": 0}, "workers=0"),
])
def test_bad_parameters_fail_clearly(kwargs, given):
    with pytest.raises(OptionError) as err:
        Augmenter(**kwargs)
    msg = str(err.value)
    assert given in msg  # what was given
    assert "give" in msg  # and what is allowed


def test_bad_compositions_and_batches_fail_clearly():
    with pytest.raises(OptionError, match="either the list or keyword"):
        Augmenter([Rotate(5)], rotate=5)
    with pytest.raises(OptionError, match="Elastic must be the last"):
        Augmenter([Elastic(34, 4), Rotate(5)])
    with pytest.raises(OptionError, match="not a dlsets.augment transform"):
        Augmenter([lambda im: im])
    with pytest.raises(OptionError, match="list of"):
        Augmenter(Rotate(5))
    aug = Augmenter(rotate=5)
    with pytest.raises(OptionError, match="shape"):
        aug(np.zeros((28, 28), np.uint8))
    with pytest.raises(OptionError, match="dtype int64"):
        aug(np.zeros((2, 28, 28), np.int64))
    with pytest.raises(OptionError, match="does not match"):
        aug(np.zeros((2, 28, 28), np.uint8), masks=np.zeros((2, 27, 28), np.uint8))
    with pytest.raises(OptionError, match="start"):
        aug(np.zeros((2, 28, 28), np.uint8), start=-1)
    with pytest.raises(OptionError, match="fill=300"):
        Augmenter(rotate=5, fill=300)(np.zeros((2, 8, 8), np.uint8))
    # the same fill is fine for float images
    assert Augmenter(rotate=5, fill=300)(np.zeros((2, 8, 8), np.float32)).dtype == np.float32


# ---------------------------------------------------------------- resources
def _in_fresh_thread(func):
    """Run ``func`` in a new thread; return its result and that thread's kept scratch sizes."""
    import threading

    got = {}

    def target():
        got["result"] = func()
        got["kept"] = [b.nbytes for b in getattr(F._scratch, "arrays", {}).values()]

    t = threading.Thread(target=target)
    t.start()
    t.join()
    return got["result"], got["kept"]


def test_threads_do_not_keep_scratch_for_huge_images(monkeypatch):
    x = _pattern(n=2, h=200, w=200)
    aug = Augmenter(rotate=10, elastic=(20, 3), seed=1, workers=1)
    want, kept = _in_fresh_thread(lambda: aug(x, start=0))
    assert max(kept) > 1 << 16  # normally the maps (160 KB each) are kept for the next call
    monkeypatch.setattr(F, "SCRATCH_KEEP", 1 << 16)
    got, kept = _in_fresh_thread(lambda: aug(x, start=0))
    assert np.array_equal(got, want)
    assert max(kept, default=0) <= 1 << 16


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_works_even_if_the_pool_lock_was_held_at_the_fork():
    import multiprocessing

    from dlsets.augment import transforms

    x = _pattern(n=piece_size(16, 16) * 2 + 5)
    aug = Augmenter(rotate=15, seed=2, workers=2)
    aug(x)
    want = aug(x, start=len(x))
    ctx = multiprocessing.get_context("fork")
    # as if other threads were fetching a pool and taking samples right now
    with transforms._POOLS_LOCK, transforms._POSITION_LOCK:
        pool = ctx.Pool(1)
    try:
        got = pool.apply_async(aug, (x,), {"start": len(x)}).get(timeout=20)
    finally:
        pool.terminate()
    assert np.array_equal(got, want)


def test_integer_masks_with_a_negative_ignore_label():
    x = np.zeros((6, 16, 16), np.uint8)
    labels = np.full((6, 16, 16), 3, np.int64)
    aug = Augmenter(shift=0.3, seed=1, mask_fill=-100)  # torch's default ignore_index
    y, m = aug(x, masks=labels)
    assert m.dtype == np.int64 and set(np.unique(m)) == {-100, 3}
    # the filled pixels are where the image got its fill too
    _, ones = Augmenter(shift=0.3, seed=1)(x, masks=np.ones_like(x))
    assert np.array_equal(m == -100, ones == 0)
    _, m8 = Augmenter(shift=0.3, seed=1)(x, masks=-labels.astype(np.int8))
    assert m8.dtype == np.int8 and set(np.unique(m8)) == {-3, 0}
    with pytest.raises(OptionError, match="-100..70000"):
        aug(x, masks=labels * 0 + 70000)


def test_mask_fill_must_fit_the_masks():
    x = np.zeros((2, 8, 8), np.uint8)
    with pytest.raises(OptionError, match="mask_fill=2 does not fit bool"):
        Augmenter(rotate=5, mask_fill=2)(x, masks=np.ones_like(x, bool))
    _, m = Augmenter(shift=(0.5, 0.5), mask_fill=True)(x, masks=np.zeros_like(x, bool))
    assert m.dtype == bool and m[0, 0, 0] and not m[0, -1, -1]
    with pytest.raises(OptionError, match="mask_fill=-1 does not fit uint8"):
        Augmenter(rotate=5, mask_fill=-1)(x, masks=np.ones_like(x))
    with pytest.raises(OptionError, match="mask_fill=0.5 does not fit int64"):
        Augmenter(rotate=5, mask_fill=0.5)(x, masks=np.ones(x.shape, np.int64))


def test_odd_arguments_fail_clearly_or_are_taken():
    aug = Augmenter(rotate=5)
    most = F.MAX_SIDE
    with pytest.raises(OptionError, match=f"at most {most} pixels"):
        aug(np.zeros((1, most + 1, 2), np.uint8))  # OpenCV would stop with an assertion
    with pytest.raises(OptionError, match=f"at most {most} pixels"):
        aug(np.zeros((1, 2, 40000), np.uint8))
    tall = _pattern(n=1, h=most, w=2)
    assert np.array_equal(Augmenter([Shift((0, 0))])(tall), tall)
    wide = _pattern(n=1, h=2, w=most)
    assert np.array_equal(Augmenter([Shift((0, 0))])(wide), wide)
    with pytest.raises(OptionError, match="interpolation='bicubic'"):
        F.warp(np.zeros((1, 4, 4), np.uint8), np.eye(3)[None], interpolation="bicubic")
    x = _pattern()
    assert np.array_equal(Augmenter(rotate=5, workers=np.int64(2))(x), aug(x))


def test_parameter_conventions_users_of_albumentations_and_keras_expect():
    n, h, w = 4000, 28, 28
    inv = RandomAffine(rotate=15, shift=0.1).matrices(0, 0, 0, n, h, w)
    fwd = np.linalg.inv(inv)
    # rotate=15: angles uniform in [-15, 15] degrees (no shear or zoom: a pure rotation)
    angle = np.degrees(np.arctan2(-fwd[:, 1, 0], fwd[:, 0, 0]))
    assert -15 <= angle.min() < -14.5 and 14.5 < angle.max() <= 15
    assert abs(np.mean(np.abs(angle) < 7.5) - 0.5) < 0.05
    # shift=0.1: the centre moves by a fraction in [-0.1, 0.1] of the width and height,
    # sub-pixel (albumentations only ever moves a 28 px image by whole pixels, -2..2)
    centre = np.array([(w - 1) / 2, (h - 1) / 2, 1.0])
    moved = fwd @ centre
    tx, ty = moved[:, 0] - centre[0], moved[:, 1] - centre[1]
    for t in (tx, ty):
        assert -2.8 <= t.min() < -2.7 and 2.7 < t.max() <= 2.8
        assert np.mean(np.abs(t - np.round(t)) > 0.1) > 0.5
    # zoom=(0.9, 1.1): scale factors in that range; shear: degrees along x and y
    fwd = np.linalg.inv(RandomAffine(zoom=(0.9, 1.1)).matrices(0, 0, 0, n, h, w))
    scale = np.sqrt(np.abs(np.linalg.det(fwd[:, :2, :2])))
    assert 0.9 <= scale.min() < 0.91 and 1.09 < scale.max() <= 1.1
    fwd = np.linalg.inv(RandomAffine(shear=10).matrices(0, 0, 0, n, h, w))
    assert np.degrees(np.arctan(np.abs(fwd[:, 0, 1]))).max() <= 10 + 1e-9
    assert np.degrees(np.arctan(np.abs(fwd[:, 0, 1]))).max() > 9.5


@pytest.mark.parametrize("rotate,zoom", [(30, 1.0), (-12.5, 1.0), (0, 1.5), (20, 0.8)])
def test_rotation_and_zoom_match_opencv(rotate, zoom):
    import cv2

    x = _pattern(n=5, h=21, w=25)
    y = Augmenter(rotate=(rotate, rotate), zoom=(zoom, zoom), fill=5)(x)
    # OpenCV: positive angles turn counter-clockwise as displayed, about the given centre
    m = cv2.getRotationMatrix2D((12.0, 10.0), rotate, zoom)
    want = np.stack([cv2.warpAffine(im, m, (25, 21), flags=cv2.INTER_LINEAR,
                                    borderValue=5) for im in x])
    diff = np.abs(y.astype(int) - want)
    # sampling positions sit on a 1/512-pixel grid (so a sample's output is the same in any
    # tile of the mosaic): a few percent of pixels round the other way, by one level at most
    assert diff.max() <= 1 and (diff > 0).mean() < 0.05


def test_interpreter_exits_cleanly_after_using_the_pool():
    code = ("import numpy as np; from dlsets.augment import Augmenter; "
            "x = np.zeros((5000, 8, 8), np.uint8); "
            "Augmenter(rotate=5, workers=2)(x); Augmenter(rotate=5, workers=3)(x); print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


@pytest.mark.parametrize("border", F.BORDERS)
def test_non_finite_pixels_stay_in_their_own_image(border):
    x = _pattern(n=3, dtype=np.float32)
    x[1] = np.nan
    x[2, 3, 3] = np.inf
    aug = Augmenter(rotate=30, shift=0.2, seed=1, border=border)
    y = aug(x, channels="last")  # three (H, W) images, not one (C, H, W) image
    assert np.isfinite(y[0]).all()
    assert np.array_equal(y[0], aug(x[:1], start=0)[0])
    assert np.array_equal(y[2], aug(x[2:], start=2)[0], equal_nan=True)


@pytest.mark.parametrize("side,n", [(28, 300), (128, 60)])  # the exact field; the grid field
def test_elastic_moves_pixels_as_far_as_albumentations_with_uniform_noise(side, n):
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A

    ramp = np.tile(np.arange(side, dtype=np.float32), (side, 1))  # value = x coordinate
    inner = (slice(None), slice(8, side - 8), slice(8, side - 8))  # where borders play no part
    t = A.ElasticTransform(alpha=34, sigma=4, noise_distribution="uniform", p=1.0)
    t.set_random_seed(0)
    theirs = np.stack([t(image=ramp)["image"] for _ in range(n)]) - ramp
    ours = Augmenter(elastic=(34, 4), seed=0)(np.repeat(ramp[None], n, axis=0)) - ramp
    ratio = ours[inner].std() / theirs[inner].std()
    assert 0.85 < ratio < 1.15, ratio  # about 1.4 px for both


def test_flip_keywords_true_is_half_a_number_is_the_probability():
    x = _pattern(n=200, h=4, w=4)
    mirrored = (Augmenter(hflip=True)(x) != x).any(axis=(1, 2)).mean()
    assert 0.35 < mirrored < 0.65
    assert np.array_equal(Augmenter(hflip=1)(x), x[:, :, ::-1])
    assert np.array_equal(Augmenter(vflip=1.0)(x), x[:, ::-1])


def test_concurrent_calls_from_user_threads_share_the_pool_safely():
    from concurrent.futures import ThreadPoolExecutor

    x = _pattern(n=piece_size(8, 8) * 2 + 7, h=8, w=8)
    aug = Augmenter(rotate=15, shift=0.1, elastic=(5, 2), seed=4, workers=2)
    want = aug(x)
    starts = [0, 100, 3000, 5000, 7000, 7200]
    with ThreadPoolExecutor(6) as users:
        got = list(users.map(lambda s: aug(x[s:], start=s), starts))
    for s, g in zip(starts, got, strict=True):
        assert np.array_equal(g, want[s:]), s


# ---------------------------------------------------------------- the sample counter
def test_consecutive_calls_continue_the_stream_and_start_is_pure():
    x = _pattern(n=600, h=8, w=8)
    aug = Augmenter(rotate=15, shift=0.1, seed=0)
    assert aug.position == 0
    a, b = aug(x[:4], channels="last"), aug(x[:4])  # after one batch, (4, H, W) is a batch
    assert not np.array_equal(a, b), "a training loop must get new transforms every epoch"
    assert aug.position == 8
    # an explicit start is pure: it neither reads nor moves the counter
    assert np.array_equal(aug(x[:4], start=0), a) and np.array_equal(aug(x[:4], start=4), b)
    assert aug.position == 8
    # a fresh augmenter with the same seed replays the same stream
    again = Augmenter(rotate=15, shift=0.1, seed=0)
    assert np.array_equal(again(x[:4], channels="last"), a) and np.array_equal(again(x[:4]), b)
    # calls in a row equal one call over the whole batch
    one, two = Augmenter(rotate=15, shift=0.1, seed=0), Augmenter(rotate=15, shift=0.1, seed=0)
    assert np.array_equal(np.concatenate([one(x[:300]), one(x[300:600])]), two(x[:600]))
    assert one.position == two.position == 600
    # reset rewinds (or moves) the counter
    aug.reset()
    assert aug.position == 0 and np.array_equal(aug(x[:4]), a)
    aug.reset(position=4)
    assert np.array_equal(aug(x[:4]), b) and aug.position == 8
    for bad in (-1, 1.5, True, "0"):
        with pytest.raises(OptionError, match="position="):
            aug.reset(bad)
    # a call that fails its checks takes no samples; an empty batch takes none
    with pytest.raises(OptionError):
        aug(np.zeros((2, 8, 8), np.int64))
    aug(x[:0])
    assert aug.position == 8
    # an identity augmenter returns copies and counts the samples all the same
    identity = Augmenter(seed=0)
    assert np.array_equal(identity(x[:5]), x[:5]) and identity.position == 5
    assert not np.shares_memory(identity(x[:5], start=0), x) and identity.position == 5


def test_copies_keep_the_position():
    import copy
    import pickle

    x = _pattern(n=6)
    aug = Augmenter(rotate=15, shift=0.1, elastic=(20, 3), seed=9)
    aug(x)
    want = aug(x, start=6)
    for clone in (pickle.loads(pickle.dumps(aug)), copy.copy(aug), copy.deepcopy(aug)):
        assert clone.position == 6
        # two copies taking the same next samples would repeat each other's transforms
        with pytest.raises(ReplayError, match="pickled or copied"):
            clone(x)
        assert clone.position == 6
        assert np.array_equal(clone(x, start=6), want)
        clone.reset(clone.position)  # a counter of its own, on purpose
        assert np.array_equal(clone(x), want) and clone.position == 12
    assert aug.position == 6  # each copy counts on its own
    assert np.array_equal(aug(x), want)  # the original keeps its counter


def test_concurrent_calls_without_start_take_disjoint_samples():
    from concurrent.futures import ThreadPoolExecutor

    x = _pattern(n=8, h=8, w=8)
    aug = Augmenter(rotate=15, shift=0.1, seed=4, workers=1)
    calls = 120
    with ThreadPoolExecutor(6) as users:
        got = list(users.map(lambda _: aug(x).tobytes(), range(calls)))
    assert aug.position == calls * len(x)
    # every call got one whole range k*8..k*8+7 of its own
    want = {aug(x, start=k * len(x)).tobytes(): k for k in range(calls)}
    assert len(want) == calls
    assert sorted(want[g] for g in got) == list(range(calls))


# ---------------------------------------------------------------- channels-first batches
@pytest.mark.parametrize("c,dtype", [(3, np.uint8), (1, np.float32), (4, np.uint16)])
def test_channels_first_is_channels_last_transposed_bit_for_bit(c, dtype):
    nhwc = _pattern(n=7, h=12, w=10, c=c).astype(dtype)
    nchw = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
    kwargs = dict(rotate=15, shift=0.1, shear=10, perspective=0.05, elastic=(10, 3), seed=3)
    want = Augmenter(**kwargs)(nhwc)
    aug = Augmenter(**kwargs)
    got = aug(nchw, channels="first")
    assert got.shape == nchw.shape and got.dtype == dtype and got.flags.c_contiguous
    assert np.array_equal(got, want.transpose(0, 3, 1, 2))
    assert aug.position == len(nchw)
    assert np.array_equal(Augmenter(**kwargs)(nhwc, channels="last"), want)
    # masks follow the layout: 4-D masks are (N, C, H, W) too, 3-D ones (N, H, W)
    masks = (nhwc > nhwc.mean()).astype(np.uint8)
    want_x, want_m = Augmenter(**kwargs)(nhwc, masks=masks)
    got_x, got_m = aug(nchw, masks=masks.transpose(0, 3, 1, 2), start=0, channels="first")
    assert np.array_equal(got_x, want_x.transpose(0, 3, 1, 2)) and got_m.flags.c_contiguous
    assert np.array_equal(got_m, want_m.transpose(0, 3, 1, 2))
    _, got_m3 = aug(nchw, masks=masks[..., 0], start=0, channels="first")
    assert np.array_equal(got_m3, want_m[..., 0])
    # greyscale without a channel axis is the same in either layout
    grey = nhwc[..., 0]
    assert np.array_equal(aug(grey, start=0, channels="first"), aug(grey, start=0))
    # an identity augmenter returns an unchanged C-ordered copy in the caller's layout
    same = Augmenter()(nchw, channels="first")
    assert np.array_equal(same, nchw) and not np.shares_memory(same, nchw)


def test_batches_that_look_channels_first_need_the_layout_said():
    aug = Augmenter(rotate=15)
    for shape in [(2, 3, 32, 32), (2, 1, 28, 28), (2, 4, 9, 7)]:
        x = np.zeros(shape, np.uint8)
        with pytest.raises(OptionError, match="looks channels-first.*channels='first'"):
            aug(x)
        assert aug.position == 0
        assert aug(x, channels="first", start=0).shape == shape
        assert aug(x, channels="last", start=0).shape == shape  # as said: H=shape[1]
    # channels-last batches are taken as before, small images included
    for shape in [(2, 32, 32, 3), (2, 28, 28, 1), (2, 3, 3, 3), (2, 4, 4, 1), (2, 12, 10, 5)]:
        assert aug(np.zeros(shape, np.uint8)).shape == shape
    with pytest.raises(OptionError, match="channels='NCHW' is not allowed: give 'last'"):
        aug(np.zeros((2, 8, 8), np.uint8), channels="NCHW")
    with pytest.raises(OptionError, match="does not match"):
        aug(np.zeros((2, 3, 8, 8), np.uint8), masks=np.zeros((2, 8, 8, 3), np.uint8),
            channels="first")


# ---------------------------------------------------------------- samples named by id
def test_ids_give_each_sample_its_transform_in_any_order_and_batch():
    # more than one piece (slots wrap), colour, masks, every transform kind
    h = w = 12
    n = piece_size(h, w) + 300
    x = _pattern(n=n, h=h, w=w, c=3)
    masks = _pattern(n=n, h=h, w=w, seed=5) // 64
    aug = Augmenter(rotate=15, shift=0.1, hflip=True, perspective=0.05, elastic=(8, 3), seed=3)
    want, want_m = aug(x, masks=masks, start=0)
    perm = np.random.default_rng(0).permutation(n)
    got, got_m = aug(x[perm], masks=masks[perm], ids=perm)
    assert np.array_equal(got, want[perm]) and np.array_equal(got_m, want_m[perm])
    # a few samples alone, repeated, with ids of any integer kind
    pick = [7, n - 1, 7, piece_size(h, w)]
    for ids in (pick, np.array(pick, np.uint32), tuple(pick)):
        assert np.array_equal(aug(x[pick], ids=ids), want[pick])
    assert np.array_equal(aug(x[5:9], ids=range(5, 9)), aug(x[5:9], start=5))
    assert aug.position == 0  # ids leave the counter alone


def test_ids_are_checked():
    aug = Augmenter(rotate=10)
    x = _pattern(n=5)
    for bad, why in (([1, 2], "2 ids for 5 images"), ([0, 1, 2, 3, -1], "ids"),
                     (np.zeros((5, 1), int), "shape"), ([0.0, 1, 2, 3, 4], "dtype"),
                     ([0, 1, 2, 3, 2**60], "2\\*\\*48")):
        with pytest.raises(OptionError, match=why):
            aug(x, ids=bad)
    with pytest.raises(OptionError, match="not both"):
        aug(x, start=0, ids=range(5))


@pytest.mark.extra  # needs an optional extra
def test_integer_tensors_for_start_and_ids_and_tensors_back():
    import torch

    x = _pattern(n=6, h=16, w=16, c=3)
    aug = Augmenter(rotate=15, shift=0.1, seed=1)
    want = aug(x, start=3)
    for start in (3, np.int64(3), np.array(3), torch.tensor(3), torch.tensor(3, dtype=torch.int32)):
        assert np.array_equal(aug(x, start=start), want)
    assert np.array_equal(aug(x, ids=torch.arange(3, 9)), want)
    for bad in (torch.tensor(3.0), torch.tensor(True), 3.0, np.float64(3)):
        with pytest.raises(OptionError, match="start="):
            aug(x, start=bad)
    # a torch tensor in, a torch tensor out; masks too
    t = torch.from_numpy(x)
    got, m = aug(t, torch.from_numpy(x[..., 0]), start=3)
    assert isinstance(got, torch.Tensor) and isinstance(m, torch.Tensor)
    assert got.dtype == torch.uint8 and np.array_equal(got.numpy(), want)
    # channels-first tensors, as torch keeps them
    first = aug(t.permute(0, 3, 1, 2), start=3, channels="first")
    assert tuple(first.shape) == (6, 3, 16, 16)
    assert np.array_equal(first.permute(0, 2, 3, 1).numpy(), want)


def test_one_image_has_its_own_entry_point_and_ambiguous_calls_raise():
    rgb = _pattern(n=1, h=32, w=32, c=3)[0]
    grey = _pattern(n=1, h=28, w=28)[0]
    aug = Augmenter(rotate=20, shift=0.1, seed=2)
    assert np.array_equal(aug.image(rgb, id=4), aug(rgb[None], start=4)[0])
    assert np.array_equal(aug.image(grey, id=4), aug(grey[None], start=4)[0])
    chw = np.ascontiguousarray(rgb.transpose(2, 0, 1))
    assert np.array_equal(aug.image(chw, id=4, channels="first").transpose(1, 2, 0),
                          aug.image(rgb, id=4))
    mask = (rgb[..., 0] > 128).astype(np.uint8)
    img, m = aug.image(rgb, mask, id=4)
    assert np.array_equal(img, aug.image(rgb, id=4)) and m.shape == mask.shape
    assert np.array_equal(m, aug(rgb[None], mask[None], start=4)[1][0])
    assert aug.position == 0
    aug.image(grey)
    assert aug.position == 1  # without id=, the next sample of the counter
    # a single image handed to the batch call would come back garbled: refused, with the fix
    with pytest.raises(OptionError, match=r"one \(H, W, C\) image.*aug.image"):
        aug(rgb)
    with pytest.raises(OptionError, match=r"one \(C, H, W\) image or a batch of 3"):
        aug(chw)
    with pytest.raises(OptionError, match="channels-first"):
        aug.image(chw)
    with pytest.raises(OptionError, match="one image"):
        aug.image(rgb[None])
    # what the caller says wins; and a loop's short last batch is a batch
    assert aug(chw, channels="last", start=0).shape == chw.shape
    loop = Augmenter(rotate=20, seed=2)
    batch = _pattern(n=8, h=32, w=32)
    loop(batch[:5])
    assert np.array_equal(loop(batch[5:]), Augmenter(rotate=20, seed=2)(batch)[5:])


def test_vectorised_philox_equals_numpys():
    # the id path's emulated Philox4x64-10 against numpy's own, counters and keys of all sizes
    from dlsets.augment.params import _key, _philox, _round_keys

    rng = np.random.default_rng(7)
    for seed, stream, m in ((0, 0, 1), (3, 2, 5), (2**64 - 1, 9, 64)):
        counters = rng.integers(1, 2**64 - 1, m, dtype=np.uint64, endpoint=True)
        counters[-1] = 2**64 - 1
        got = _philox(counters, _round_keys(seed, stream))
        assert got.shape == (m, 4)
        for row, c in zip(got, counters, strict=True):
            # numpy's Philox steps its counter before each block of four words
            bits = np.random.Philox(key=_key(seed, stream),
                                    counter=np.array([c - 1, 0, 0, 0], np.uint64))
            assert np.array_equal(row, bits.random_raw(4))
