"""The augmenter at the sizes users bring: which kernel an image size gets, per-image kernels
against OpenCV, independence of threads and batches, the algorithm number in outputs."""

import numpy as np
import pytest

from dlsets.augment import Augmenter, expand_to_hdf5, kernels
from dlsets.augment import functional as F
from dlsets.errors import OptionError

SIDE = 32  # the smallest per-image sizes: the tests stay small and fast
ESIDE = 144  # with an elastic field


def _smooth(n, h, w, c=None, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, h, w) if c is None else (n, h, w, c)
    a = rng.integers(0, 256, shape)
    a = (a + np.roll(a, 1, axis=1) + np.roll(a, 1, axis=2)) // 3
    return a.astype(dtype) if dtype == np.uint8 else (a / 255.0).astype(dtype)


def test_the_kernel_is_chosen_by_shape_only():
    assert kernels.PER_IMAGE_PIXELS == SIDE * SIDE
    assert kernels.ELASTIC_PER_IMAGE_PIXELS == ESIDE * ESIDE
    assert not kernels.per_image((10, 28, 28)) and not kernels.per_image((10, 31, 32, 3))
    assert kernels.per_image((10, 32, 32)) and kernels.per_image((1, 512, 512, 4))
    assert not kernels.per_image((10, 128, 128), elastic=True)
    assert kernels.per_image((10, 144, 144, 3), elastic=True)
    assert kernels.per_image((10, 64, 64, 3), (10, 64, 64))
    # more than 4 channels (images or masks): OpenCV's warps cannot take them whole
    assert not kernels.per_image((10, 64, 64, 5))
    assert not kernels.per_image((10, 64, 64, 3), (10, 64, 64, 6))


@pytest.mark.parametrize("border,cv_border", [("constant", "BORDER_CONSTANT"),
                                              ("reflect", "BORDER_REFLECT_101"),
                                              ("edge", "BORDER_REPLICATE")])
@pytest.mark.parametrize("c,dtype", [(3, np.uint8), (None, np.uint8), (1, np.float32),
                                     (4, np.uint16)])
def test_large_affine_images_are_opencv_warpaffine_bit_for_bit(border, cv_border, c, dtype):
    import cv2

    x = _smooth(3, SIDE, SIDE + 5, c, dtype)
    masks = (x if c is None else x[..., 0]).astype(np.int64) % 5 - 1  # -1: an ignore label
    aug = Augmenter(rotate=25, shift=0.1, shear=10, zoom=(0.8, 1.2), hflip=True,
                    border=border, fill=7, mask_fill=-1, seed=2)
    got, got_masks = aug(x, masks=masks, start=10, channels="last")
    inverse = aug._geometry(10, 3, SIDE, SIDE + 5)[0]
    mode = getattr(cv2, cv_border)
    for i in range(3):
        want = cv2.warpAffine(x[i], inverse[i, :2], (SIDE + 5, SIDE), flags=cv2.INTER_LINEAR
                              | cv2.WARP_INVERSE_MAP, borderMode=mode, borderValue=(7,) * 4)
        assert np.array_equal(got[i], want.reshape(x[i].shape))
        want = cv2.warpAffine(masks[i].astype(np.int16), inverse[i, :2], (SIDE + 5, SIDE),
                              flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=mode,
                              borderValue=(-1,) * 4)
        assert got_masks.dtype == np.int64 and np.array_equal(got_masks[i], want)


def test_large_perspective_images_are_opencv_warpperspective():
    import cv2

    x = _smooth(3, SIDE, SIDE, 3)
    aug = Augmenter(rotate=10, perspective=0.1, seed=1)
    inverse = aug._geometry(0, 3, SIDE, SIDE)[0]
    got = aug(x, start=0)
    for i in range(3):
        want = cv2.warpPerspective(x[i], inverse[i], (SIDE, SIDE),
                                   flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        assert np.array_equal(got[i], want)


def test_large_elastic_images_follow_their_field():
    # the per-image kernel computes the field's products in blocks (one OpenBLAS thread each),
    # which may round a few values differently from the mosaic's whole products
    x = _smooth(3, ESIDE, ESIDE, 3)
    aug = Augmenter(rotate=10, elastic=(20, 3), seed=3)
    inverse, field = aug._geometry(0, 3, ESIDE, ESIDE)
    mosaic = F.warp(x, inverse, field=field)
    got = aug(x, start=0)
    diff = np.abs(got.astype(int) - mosaic)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    assert not np.array_equal(got, x)


@pytest.mark.parametrize("kw", [dict(rotate=15, shift=0.1, shear=10),
                                dict(rotate=15, perspective=0.05, elastic=(20, 3))])
def test_large_images_do_not_depend_on_batch_threads_or_opencv_threads(kw):
    import cv2

    side = ESIDE if "elastic" in kw else SIDE
    x = _smooth(7, side, side, 3)
    whole = Augmenter(**kw, seed=4, workers=2)(x, start=100)
    ids = np.array([106, 100, 103, 101, 105, 102, 104])
    threads = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)
        shuffled = Augmenter(**kw, seed=4, workers=1)(x[ids - 100], ids=ids)
    finally:
        cv2.setNumThreads(threads)
    assert np.array_equal(shuffled, whole[ids - 100])
    one = Augmenter(**kw, seed=4)
    assert np.array_equal(one.image(x[3], id=103), whole[3])


def test_the_algorithm_number_is_in_the_repr_and_in_outputs(tmp_path):
    import h5py

    aug = Augmenter(rotate=10, seed=1)
    assert repr(aug).endswith(f"algorithm={kernels.ALGORITHM})") and kernels.ALGORITHM == 2
    assert repr(Augmenter(rotate=10, seed=1, algorithm=kernels.ALGORITHM)) == repr(aug)
    with pytest.raises(OptionError, match="algorithm=1 is not available.*algorithm 2 only"):
        Augmenter(rotate=10, algorithm=1)
    x = _smooth(6, 8, 8)
    y = np.arange(6, dtype=np.uint8) % 2
    path = expand_to_hdf5(x, y, 10, tmp_path / "out.h5", augmenter=aug)
    with h5py.File(path) as f:
        assert f"algorithm={kernels.ALGORITHM}" in f.attrs["augmenter"]


def test_a_shard_folder_begun_under_another_algorithm_is_refused(tmp_path, monkeypatch):
    from dlsets.shards import expand_shard

    x = _smooth(20, 8, 8)
    y = np.arange(20, dtype=np.uint8) % 2
    kw = dict(shards=2, augmenter=Augmenter(rotate=10, seed=1))
    expand_shard(x, y, 40, tmp_path / "s", shard=0, **kw)
    monkeypatch.setattr(kernels, "ALGORITHM", kernels.ALGORITHM + 1)
    with pytest.raises(OptionError, match="another expansion"):
        expand_shard(x, y, 40, tmp_path / "s", shard=1, **kw)


def test_large_images_in_any_memory_layout():
    x = _smooth(3, SIDE, SIDE, 3)
    aug = Augmenter(rotate=20, shift=0.1, seed=1)
    want = aug(x, start=0)
    assert np.array_equal(aug(np.asfortranarray(x), start=0), want)
    assert np.array_equal(aug(x[:, ::-1], start=0), aug(np.ascontiguousarray(x[:, ::-1]), start=0))
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    got = aug(nchw, channels="first", start=0)
    assert got.flags.c_contiguous and np.array_equal(got, want.transpose(0, 3, 1, 2))


def test_blocked_products_cover_every_entry():
    rng = np.random.default_rng(0)
    for m, k, n in [(1, 1, 1), (37, 152, 513), (300, 5, 7), (512, 152, 512)]:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        got = kernels._single_threaded(a, b)
        assert got.shape == (m, n) and np.allclose(got, a @ b, rtol=1e-4, atol=1e-4)


def test_a_users_own_geometric_transform_gets_the_perspective_warp():
    import cv2

    from dlsets.augment.transforms import Geometric

    class Tilt(Geometric):
        words = 1

        def inverse(self, u, height, width):
            m = np.repeat(np.eye(3)[None], len(u), axis=0)
            m[:, 2, 0] = 1e-3 * u[:, 0]  # projective: not an affine matrix
            return m

    x = _smooth(2, SIDE, SIDE, 3)
    aug = Augmenter([Tilt()], seed=0)
    inverse = aug._geometry(0, 2, SIDE, SIDE)[0]
    got = aug(x, start=0)
    for i in range(2):
        want = cv2.warpPerspective(x[i], inverse[i], (SIDE, SIDE),
                                   flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        assert np.array_equal(got[i], want)
