"""The augmenter at the sizes users bring: which kernel an image size gets, per-image kernels
against OpenCV, independence of threads and batches, the algorithm number in outputs."""

import numpy as np
import pytest

from dlsets.augment import Augmenter, expand_to_hdf5, kernels
from dlsets.augment import functional as F
from dlsets.errors import OptionError

SIDE = 32  # the smallest per-image sizes: the tests stay small and fast
ESIDE = 128  # with an elastic field


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
    assert not kernels.per_image((10, 127, 128), elastic=True)
    assert kernels.per_image((10, 128, 128, 3), elastic=True)
    # elastic fields are drawn on a grid exactly where images are warped one by one
    assert not kernels.coarse_field(127, 128) and kernels.coarse_field(128, 128)
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


def _assert_warp_perspective(aug, x):
    """Each image of ``aug(x)`` is exactly cv2.warpPerspective with the augmenter's matrix."""
    import cv2

    inverse = aug._geometry(0, len(x), SIDE, SIDE)[0]
    got = aug(x, start=0)
    for i in range(len(x)):
        want = cv2.warpPerspective(x[i], inverse[i], (SIDE, SIDE),
                                   flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        assert np.array_equal(got[i], want)


def test_large_perspective_images_are_opencv_warpperspective():

    x = _smooth(3, SIDE, SIDE, 3)
    aug = Augmenter(rotate=10, perspective=0.1, seed=1)
    _assert_warp_perspective(aug, x)


@pytest.mark.parametrize("border", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("kw", [dict(elastic=(34, 4)),
                                dict(rotate=20, zoom=(0.8, 1.2), hflip=True, elastic=(20, 3)),
                                dict(rotate=10, perspective=0.1, elastic=(20, 3)),
                                dict(elastic=(10, 1)), dict(elastic=(50, 30))])
def test_large_elastic_images_follow_their_field_and_masks_the_same_maps(kw, border):
    # ramps whose values are their coordinates: bilinear output = the sampling map itself
    h, w = ESIDE, ESIDE + 9
    ys, xs = np.mgrid[:h, :w].astype(np.float32)
    x = np.repeat(np.stack([xs, ys], -1)[None], 2, axis=0)
    aug = Augmenter(**kw, border=border, seed=5)
    inverse, field = aug._geometry(3, 2, h, w)
    dx, dy = field.dense()
    px, py = xs + dx, ys + dy  # the field in output space, then the geometry
    den, u, v = (inverse[:, k, 0, None, None] * px + inverse[:, k, 1, None, None] * py
                 + inverse[:, k, 2, None, None] for k in (2, 0, 1))
    u, v = u / den, v / den
    index = (ys * w + xs).astype(np.int32)  # masks: which source pixel each output takes
    got, got_masks = aug(x, masks=np.repeat(index[None], 2, axis=0), start=3)
    inside = (u > 0) & (u < w - 1) & (v > 0) & (v < h - 1)
    assert inside.mean() > 0.5
    assert np.abs(got[..., 0] - u)[inside].max() < 1 / 32
    assert np.abs(got[..., 1] - v)[inside].max() < 1 / 32
    my, mx = np.divmod(got_masks, w)
    assert np.abs(mx - got[..., 0])[inside].max() <= 0.5 + 1 / 32
    assert np.abs(my - got[..., 1])[inside].max() <= 0.5 + 1 / 32


def test_small_elastic_images_keep_the_exact_field_through_the_mosaic():
    # MNIST / CIFAR sizes: outputs of the low-rank field and the mosaic, unchanged
    for shape in [(40, 28, 28), (20, 32, 32, 3), (3, ESIDE - 1, ESIDE, 3)]:
        x = _smooth(*shape)
        aug = Augmenter(rotate=10, elastic=(20, 3), seed=3)
        inverse, field = aug._geometry(0, shape[0], *shape[1:3])
        assert isinstance(field, F.Field)
        assert np.array_equal(aug(x, start=0), F.warp(x, inverse, field=field))


def test_large_elastic_images_of_many_channels_take_their_grid_field_through_the_mosaic():
    x = _smooth(2, ESIDE, ESIDE, 5, np.float32)
    aug = Augmenter(elastic=(20, 3), seed=3)
    many = aug(x, start=0)
    three = aug(np.ascontiguousarray(x[..., :3]), start=0)
    assert not np.array_equal(many, x)
    # the mosaic rounds rows to 1/512 pixel; the per-image remap interpolates exactly
    assert np.abs(many[..., :3] - three).max() < 0.01


@pytest.mark.parametrize("kw,c", [(dict(rotate=15, shift=0.1, shear=10), 3),
                                  (dict(rotate=15, perspective=0.05, elastic=(20, 3)), 3),
                                  (dict(elastic=(34, 4)), None)])
def test_large_images_do_not_depend_on_batch_threads_or_opencv_threads(kw, c):
    import cv2

    from dlsets.augment.transforms import piece_size

    side = ESIDE if "elastic" in kw else SIDE
    n = piece_size(side, side) + 3  # more than one piece of work
    x = _smooth(n, side, side, c)
    masks = (x if c is None else x[..., 0]) // 64
    whole, whole_masks = Augmenter(**kw, seed=4, workers=2)(x, masks=masks, start=100)
    ids = 100 + np.random.default_rng(1).permutation(n)[:7]
    threads = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)
        shuffled, shuffled_masks = Augmenter(**kw, seed=4, workers=1)(
            x[ids - 100], masks=masks[ids - 100], ids=ids)
    finally:
        cv2.setNumThreads(threads)
    assert np.array_equal(shuffled, whole[ids - 100])
    assert np.array_equal(shuffled_masks, whole_masks[ids - 100])
    one = Augmenter(**kw, seed=4)
    j = int(ids[0]) - 100
    assert np.array_equal(one.image(x[j], id=int(ids[0])), whole[j])
    assert np.array_equal(one(x[j:j + 2], start=100 + j), whole[j:j + 2])


def test_a_small_batch_is_cut_into_a_piece_per_thread_when_each_has_work_enough():
    from dlsets.augment import transforms
    from dlsets.augment.transforms import piece_size

    whole = piece_size(SIDE, SIDE)
    least = transforms.MIN_SHARED_PIXELS // (SIDE * SIDE)
    assert 2 * least < whole
    assert piece_size(SIDE, SIDE, whole * 2, 2) == whole  # enough pieces already
    assert piece_size(SIDE, SIDE, 2 * least + 2, 2) == least + 1  # one piece each
    assert piece_size(SIDE, SIDE, 4 * least, 4) == least
    assert piece_size(SIDE, SIDE, 3 * least, 4) == least  # as many as have work enough
    assert piece_size(SIDE, SIDE, 2 * least, 1) == whole
    assert piece_size(SIDE, SIDE, 2 * least - 1, 2) == whole  # too little to hand a thread


@pytest.mark.parametrize("kw,c,side", [(dict(rotate=15, shift=0.1, shear=10), 3, SIDE),
                                       (dict(elastic=(34, 4)), None, ESIDE),
                                       (dict(rotate=15), None, 28)])  # the mosaic
def test_a_small_batch_shared_among_threads_gives_one_threads_results(kw, c, side,
                                                                      monkeypatch):
    from dlsets.augment import transforms

    n = 2 * transforms.MIN_SHARED_PIXELS // (side * side) + 1
    x = _smooth(n, side, side, c)
    masks = (x if c is None else x[..., 0]) // 64
    pieces = []
    real = transforms.piece_size
    monkeypatch.setattr(transforms, "piece_size",
                        lambda *a: pieces.append(real(*a)) or pieces[-1])
    one, one_masks = Augmenter(**kw, seed=5, workers=1)(x, masks=masks, start=3)
    shared, shared_masks = Augmenter(**kw, seed=5, workers=2)(x, masks=masks, start=3)
    assert pieces[0] == real(side, side) > n
    if side == 28:  # the mosaic's pieces hold the GIL between remaps: never shared
        assert pieces[1] == pieces[0]
    else:
        assert pieces[1] < n
    assert np.array_equal(shared, one) and np.array_equal(shared_masks, one_masks)


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
    from dlsets.scale.shards import expand_shard

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


def test_a_users_own_geometric_transform_gets_the_perspective_warp():

    from dlsets.augment.transforms import Geometric

    class Tilt(Geometric):
        words = 1

        def inverse(self, u, height, width):
            m = np.repeat(np.eye(3)[None], len(u), axis=0)
            m[:, 2, 0] = 1e-3 * u[:, 0]  # projective: not an affine matrix
            return m

    x = _smooth(2, SIDE, SIDE, 3)
    aug = Augmenter([Tilt()], seed=0)
    _assert_warp_perspective(aug, x)



@pytest.mark.parametrize("c", [None, 1, 3])
def test_per_image_warps_match_opencv_with_and_without_masks(c):
    import cv2

    x = _smooth(5, SIDE, SIDE + 3, c, np.float32)
    masks = (x if c is None else x[..., 0]) > 0.5
    aug = Augmenter(rotate=20, shift=0.1, seed=1, mask_fill=1)
    inverse = aug._geometry(0, 5, SIDE, SIDE + 3)[0]
    for got in (aug(x, start=0), aug(x, masks, start=0)):
        got, got_masks = got if isinstance(got, tuple) else (got, None)
        for i in range(5):
            want = cv2.warpAffine(x[i], inverse[i, :2], (SIDE + 3, SIDE),
                                  flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
            assert np.array_equal(got[i], want.reshape(x[i].shape))
            if got_masks is not None:
                want = cv2.warpAffine(masks[i].view(np.uint8), inverse[i, :2], (SIDE + 3, SIDE),
                                      flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                      borderValue=(1,) * 4)
                assert got_masks.dtype == bool and np.array_equal(got_masks[i], want > 0)


def test_a_warp_opencv_does_not_write_in_place_is_copied_into_the_output():
    import cv2

    # an OpenCV that returns a new array rather than writing into dst (as some versions do
    # for a trailing axis of 1): every image is still warped, and copied into the output
    def elsewhere(src, m, size, dst, *how):
        return cv2.warpAffine(src, m, size, None, *how)

    x = _smooth(3, SIDE, SIDE, 1)
    inverse = Augmenter(rotate=20, seed=1)._geometry(0, 3, SIDE, SIDE)[0]
    how = (cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, cv2.BORDER_CONSTANT, (0,) * 4)
    out = np.zeros_like(x)
    assert not kernels._in_place(elsewhere, x, inverse[:, :2], (SIDE, SIDE), out, how)
    assert kernels._in_place(cv2.warpAffine, x, inverse[:, :2], (SIDE, SIDE), out.copy(), how)
    want = np.empty_like(x)
    kernels.warp_each(x, inverse, out=want)
    assert np.array_equal(out, want) and want.any()


@pytest.mark.parametrize("kw", [dict(rotate=20, shift=0.1), dict(rotate=5, perspective=0.1)])
def test_matrices_drawn_ahead_in_groups_give_the_same_samples(monkeypatch, kw):
    from dlsets.augment import transforms

    x = _smooth(7, SIDE, SIDE, 3)
    masks = x[..., 0] % 4
    aug = Augmenter(seed=5, **kw)
    ids = np.array([9, 2, 40, 3, 4, 5, 1])
    want = [aug(x, masks, start=11), aug(x, masks, ids=ids)]
    one = [np.stack([aug(x[i:i + 1], masks[i:i + 1], start=11 + i)[j][0] for i in range(7)])
           for j in (0, 1)]
    assert all(np.array_equal(a, b) for a, b in zip(want[0], one, strict=True))
    monkeypatch.setattr(transforms, "PIECE_PIXELS", 2 * SIDE * SIDE)  # pieces of 2 samples
    for samples in (1, 3, 4):  # groups of one piece, of pieces not dividing the batch
        monkeypatch.setattr(kernels, "GEOMETRY_SAMPLES", samples)
        got = [aug(x, masks, start=11), aug(x, masks, ids=ids)]
        for a, b in zip(got, want, strict=True):
            assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
