"""The :class:`Augmenter`: runs transforms over whole batches, in pieces on a thread pool.

A transform draws its parameters for samples ``start .. start+n-1`` from its own counter-based
stream (see :mod:`.params`) and turns them into inverse homographies or an elastic field (see
:mod:`.functional`); the Augmenter composes all geometry of a sample into one resampling. The
transform classes live in :mod:`.transform_classes` and the batch checks and channel layout in
:mod:`.layout`; both are re-exported here (their first home).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..common.tensors import index, index_array, to_numpy
from ..errors import OptionError, ReplayError
from . import functional as F
from . import kernels, params

# The names of these two modules were defined here; those this module does not use are
# re-exported explicitly (``X as X``) so callers of ``transforms.X`` keep working.
from .layout import (
    CHANNEL_COUNTS,
    CHANNELS,
    _check_batch,
    _check_fill,
    channels_back,
    channels_last,
)
from .transform_classes import (
    _AFFINE,
    TRANSFORMS,
    Elastic,
    HFlip,
    Perspective,
    RandomAffine,
    Range,
    Transform,
    VFlip,
    _number,
    _probability,
)
from .transform_classes import ZOOM_MAX as ZOOM_MAX
from .transform_classes import ZOOM_MIN as ZOOM_MIN
from .transform_classes import Geometric as Geometric
from .transform_classes import Rotate as Rotate
from .transform_classes import Shear as Shear
from .transform_classes import Shift as Shift
from .transform_classes import Zoom as Zoom

PIECE_PIXELS = 1 << 20  # pixels per piece of work: big enough to amortise per-call costs
# A batch smaller than a piece per thread (a training loop's 256 MNIST images are one piece) is
# cut into one piece per thread, of at least this many pixels: below it, drawing a piece's
# parameters and handing it to a thread cost more than the second thread wins.
MIN_SHARED_PIXELS = 1 << 17


# ---------------------------------------------------------------------------- the augmenter
class Augmenter:
    """Random geometric augmentation of whole batches, reproducible per sample index.

    Either keyword transforms (each off unless given) or a list of transform objects::

        Augmenter(rotate=15, shift=0.1, shear=10, zoom=(0.9, 1.1), elastic=(34, 4), seed=0)
        Augmenter([RandomAffine(rotate=15), Elastic(34, 4)], seed=0)

    Parameters are drawn per sample, uniformly in their ranges: ``rotate`` and ``shear`` in
    degrees (d means -d..d, or a (low, high) pair; positive rotations turn counter-clockwise as
    displayed; shear along x and y drawn apart), ``shift`` as a fraction of the width (x) and
    height (y), sub-pixel, ``zoom`` as a (low, high) scale factor (z means 1 - z..1 + z),
    ``perspective`` as the largest corner move in fractions of the size.
    ``elastic=(alpha, sigma)`` is as in Simard et al. (2003) and albumentations'
    ElasticTransform with ``noise_distribution="uniform"``. ``hflip=True`` mirrors half of the
    images, a number p that fraction (so ``hflip=1`` mirrors them all).
    ``mask_fill`` fills masks where ``fill`` fills images.

    ``aug(images)`` takes (N, H, W) or (N, H, W, C) uint8/uint16/float32/float64 and returns a new
    batch of the same shape and dtype; ``aug(images, masks=masks)`` returns ``(images, masks)``
    with the same geometry applied to masks (nearest neighbour). ``channels="first"`` takes and
    returns (N, C, H, W) (C-contiguous; 4-D masks too); the default ``None`` means (N, H, W, C)
    but raises OptionError for a 4-D batch that looks channels-first (shape[1] in 1, 3, 4 and
    shape[-1] not): pass ``channels="first"``, or ``"last"`` if it really is channels-last.

    Sample i's parameters depend only on (seed, i), so a call can name its samples:
    ``aug(x, ids=ids)`` augments image j as sample ``ids[j]`` (any integers >= 0, any order,
    repeats allowed), exactly as it is augmented in any other call that includes it: a shuffled
    batch gets the transforms its samples get anywhere else, and ``aug(x, start=k)`` equals
    ``aug(x, ids=range(k, k + N))``. Both leave the counter alone (pure: same input, same
    output). ``start`` and ``ids`` take Python and NumPy integers and integer tensors of torch,
    TensorFlow or JAX; so do ``images`` and ``masks``, and results come back as the same kind
    of array (a torch tensor in gives a torch tensor out, on the same device).

    Without ``start`` or ``ids`` a call takes the next N samples of a running counter,
    ``aug.position``, and advances it by N (under a lock, so calls from several threads get
    disjoint samples): consecutive batches get fresh transforms, and ``aug(x[:300]);
    aug(x[300:])`` equals a fresh augmenter's ``aug(x)``. Calls with an identity augmenter (no
    transforms) advance it too. ``aug.reset()`` rewinds to 0 (``reset(position=k)``: to k).
    The counter belongs to one object in one process: a copy (``copy``, pickle, or a forked
    process such as a DataLoader or PyDataset worker) keeps ``position`` for reading, but its
    calls without ``start``/``ids`` raise :class:`~dlsets.ReplayError` instead of silently
    repeating the transforms its sibling copies make; name the samples with ``ids=`` (the
    adapters in :mod:`dlsets.feed`, ``dlsets.torch`` and ``dlsets.keras`` do), or call
    ``reset()`` in the copy to give it a counter of its own.

    A 3-D call is a batch of N greyscale (H, W) images; one that looks like a single image,
    (H, W, C) with C in 1, 3, 4 or (C, H, W) with C in 3, 4, raises OptionError unless
    ``channels="last"`` says it is a batch; :meth:`image` augments one image.
    All geometry of a sample is composed (list order; Elastic last) and resampled once.
    ``border`` is "constant" (``fill``), "reflect" (mirror without repeating the edge pixel) or
    "edge"; ``workers`` threads share a batch (default: up to 4), which never changes results.
    Images of 32 x 32 pixels or more (128 x 128 with ``elastic``) are warped one OpenCV call
    each, smaller ones many to a call (chosen by shape only: see :mod:`.kernels`); ``repr``
    names the ``algorithm`` version, and ``algorithm=`` (optional) must be this release's.
    """

    def __init__(
        self,
        transforms: Sequence[Transform] | None = None,
        *,
        rotate: float | Range | None = None,
        shift: float | Range | None = None,
        shear: float | Range | None = None,
        zoom: float | Range | None = None,
        elastic: tuple[float, float] | None = None,
        perspective: float | None = None,
        hflip: bool | float = False,
        vflip: bool | float = False,
        border: str = "constant",
        fill: float = 0,
        mask_fill: float = 0,
        seed: int = 0,
        workers: int | None = None,
        algorithm: int | None = None,
    ) -> None:
        kernels.check_algorithm(algorithm)
        keywords = dict(rotate=rotate, shift=shift, shear=shear, zoom=zoom, elastic=elastic,
                        perspective=perspective)
        if transforms is not None:
            given = [k for k, v in keywords.items() if v is not None]
            given += [k for k, v in (("hflip", hflip), ("vflip", vflip)) if v is not False]
            if given:
                raise OptionError(f"Augmenter got a list of transforms and also {given}: give "
                                  "either the list or keyword transforms, not both")
            if isinstance(transforms, Transform) or not isinstance(transforms, (list, tuple)):
                names = ", ".join(t.__name__ for t in TRANSFORMS)
                raise OptionError(f"transforms={transforms!r} is not allowed: give a list of "
                                  f"dlsets.augment transforms ({names})")
            chain = list(transforms)
        else:
            chain = []
            for name, value, cls in (("hflip", hflip, HFlip), ("vflip", vflip, VFlip)):
                if value is True:
                    chain.append(cls())
                elif value is not False:
                    chain.append(cls(_probability(name, value)))
            if any(v is not None for v in (rotate, shift, shear, zoom)):
                chain.append(RandomAffine(rotate=rotate, shift=shift, shear=shear, zoom=zoom))
            if perspective is not None:
                chain.append(Perspective(perspective))
            if elastic is not None:
                if not (isinstance(elastic, (tuple, list)) and len(elastic) == 2):
                    raise OptionError(f"elastic={elastic!r} is not allowed: give an "
                                      "(alpha, sigma) pair, e.g. (34, 4)")
                chain.append(Elastic(*elastic))
        for i, t in enumerate(chain):
            if not isinstance(t, Transform):
                raise OptionError(f"transforms[{i}]={t!r} is not a dlsets.augment transform; "
                                  "wrap albumentations pipelines by passing them to expand() "
                                  "or preview_grid() directly")
            if isinstance(t, Elastic) and i != len(chain) - 1:
                raise OptionError("Elastic must be the last transform: all geometry is resampled "
                                  "once, with the elastic field applied after the others")
        if border not in F.BORDERS:
            raise OptionError(f"border={border!r} is not allowed: give one of {F.BORDERS}")
        if isinstance(mask_fill, (bool, np.bool_)):
            mask_fill = int(mask_fill)  # True/False for bool masks
        for name, value in (("fill", fill), ("mask_fill", mask_fill)):
            if not (_number(value) and math.isfinite(value)):
                raise OptionError(f"{name}={value!r} is not allowed: give a finite number")
        if workers is not None and (isinstance(workers, bool) or not isinstance(
                workers, (int, np.integer)) or workers < 1):
            raise OptionError(f"workers={workers!r} is not allowed: give an integer >= 1 or None")
        self.transforms: tuple[Transform, ...] = tuple(chain)
        self.border = border
        self.fill = fill
        self.mask_fill = mask_fill
        self.seed = params.check_seed(seed)
        self.workers = None if workers is None else int(workers)
        self._position = 0  # the next sample of a call without start= or ids=
        self._owner: int | None = os.getpid()  # the process whose calls may use the counter
        # (H, W) of greyscale batches seen: a later (3, H, W) call is a batch's tail
        self._greyscale_sizes: set[tuple[int, int]] = set()

    def __repr__(self) -> str:
        # the algorithm number goes wherever the repr is recorded (HDF5 attributes, shard keys)
        return (f"Augmenter({list(self.transforms)!r}, border={self.border!r}, "
                f"fill={self.fill!r}, mask_fill={self.mask_fill!r}, seed={self.seed}, "
                f"algorithm={kernels.ALGORITHM})")

    def _repr_html_(self) -> str:
        from ..common.display import augmenter_html

        return augmenter_html(self)

    def __getstate__(self) -> dict:
        # a copy keeps the position but not the counter: see the class docstring
        return {**self.__dict__, "_owner": None}

    @property
    def identity(self) -> bool:
        """True when there is nothing to do (no transforms)."""
        return not self.transforms

    @property
    def position(self) -> int:
        """The first sample the next call without ``start=``/``ids=`` augments."""
        return self._position

    def reset(self, position: int = 0) -> None:
        """Make the next call without ``start=``/``ids=`` begin at sample ``position`` (default
        0); in a copy, this also gives the copy a counter of its own."""
        self._position = index("position", position)
        self._owner = os.getpid()

    def _reserve(self, n: int) -> int:
        """Samples position..position+n-1 for one call, taken atomically."""
        owner = getattr(self, "_owner", None)
        if owner != os.getpid():
            where = ("was pickled or copied" if owner is None else
                     f"was forked from process {owner} into process {os.getpid()}")
            raise ReplayError(
                f"this Augmenter {where} (e.g. into a DataLoader or PyDataset worker): called "
                f"without ids= it would take samples {self._position}.. of its counter, the "
                "same ones its sibling copies take, and repeat their transforms. Name the "
                "samples instead: aug(batch, ids=sample_ids), e.g. epoch * len(dataset) + "
                "index, or feed through dlsets.batches, dlsets.torch.AugmentedDataset or "
                "dlsets.keras.AugmentedPyDataset, which do that for you (aug.reset(k) gives a "
                "copy a counter of its own that starts at sample k)")
        with _POSITION_LOCK:
            first = self._position
            self._position = first + n
        return first

    def image(self, image, mask=None, *, id: int | None = None, channels: str | None = None):
        """Augment one image: (H, W) or (H, W, C), or (C, H, W) with ``channels="first"``.

        ``id`` names its sample (as ``ids=`` does for a batch); without it the image takes the
        next sample of the counter. Returns the image (same shape, dtype and kind of array),
        or ``(image, mask)`` with a mask of shape (H, W[, C]).
        """
        a, back = to_numpy(image)
        if a.ndim not in (2, 3) or 0 in a.shape:
            raise OptionError(f"image has shape {a.shape}: expected one image (H, W), (H, W, C) "
                              "or, with channels='first', (C, H, W); batches go to aug(batch)")
        if channels is not None and channels not in CHANNELS:
            channels_last("image", a[None], channels)  # raises, with the allowed values
        if (a.ndim == 3 and channels is None and a.shape[0] in CHANNEL_COUNTS
                and a.shape[2] not in CHANNEL_COUNTS):
            raise OptionError(f"image has shape {a.shape}, which looks channels-first "
                              "(C, H, W): pass channels='first' (or channels='last' if it "
                              f"really is (H, W, C) with {a.shape[2]} channels)")
        layout = channels or "last"
        kw = {"channels": layout} if id is None else {"channels": layout,
                                                       "start": index("id", id)}
        if mask is None:
            return back(self(a[None], **kw)[0])
        m, mask_back = to_numpy(mask)
        out, mask_out = self(a[None], m[None], **kw)
        return back(out[0]), mask_back(mask_out[0])

    def __call__(self, images, masks=None, *, start: int | None = None, ids=None,
                 channels: str | None = None):
        """Augment a batch; see the class docstring for shapes, dtypes, ``start``, ``ids`` and
        ``channels``."""
        if start is not None and ids is not None:
            raise OptionError("give start= or ids=, not both (ids=range(k, k + N) is start=k)")
        images, back = to_numpy(images)
        mask_back = None
        if masks is not None:
            masks, mask_back = to_numpy(masks)
        given = [images, masks]
        if images.ndim == 3:
            seen = self.__dict__.setdefault("_greyscale_sizes", set())
            if channels is None:
                _refuse_single_image(images, seen)
            seen.add(images.shape[1:])
        images = _check_batch("images", channels_last("images", given[0], channels),
                              F.IMAGE_DTYPES)
        if masks is not None:
            # masks follow the images' layout (3-D masks have no channel axis to move)
            masks = _check_batch("masks", channels_last("masks", given[1], channels or "last"),
                                 None)
            if masks.shape[:3] != images.shape[:3]:
                raise OptionError(f"masks shape {given[1].shape} does not match images shape "
                                  f"{given[0].shape} in (N, H, W)")
        if start is not None:
            start = index("start", start)
        if ids is not None:
            ids = index_array("ids", ids, len(images))
            if len(ids) and ids[-1] - ids[0] == len(ids) - 1 and (
                    len(ids) == 1 or bool(np.all(np.diff(ids) == 1))):
                start, ids = int(ids[0]), None  # a contiguous run: the same samples as start=
            elif not len(ids):
                start, ids = 0, None
        _check_fill("fill", self.fill, images.dtype)
        copy_only = self.identity or len(images) == 0
        mask_in, mask_dtype = masks, None
        if masks is not None and not copy_only:
            _check_fill("mask_fill", self.mask_fill, masks.dtype)
            mask_in, mask_dtype = _remappable(masks, self.mask_fill)
        # every check passed: only now take samples from the counter
        first = start
        if start is None and ids is None:
            first = self._reserve(len(images))
        if copy_only:
            # C order in the caller's layout
            if masks is None:
                return back(given[0].copy())
            return back(given[0].copy()), mask_back(given[1].copy())
        # C order whatever the input's: the remap writes straight into row blocks of these
        out = np.empty(images.shape, images.dtype)
        mask_out = None if masks is None else np.empty(mask_in.shape, mask_in.dtype)
        n, height, width = images.shape[:3]
        workers = self.workers or min(4, os.cpu_count() or 1)
        # by shape and transform kinds only: never by timing, threads or machine
        warp = kernels.pick(images.shape, None if masks is None else mask_in.shape,
                            elastic=isinstance(self.transforms[-1], Elastic),
                            affine=all(isinstance(t, _AFFINE) for t in self.transforms))
        # small batches are shared among the threads for per-image warps only: the mosaic's
        # pieces hold the GIL in NumPy between their remaps (2 threads on 256 MNIST images:
        # 0.8x one thread's rate)
        piece = piece_size(height, width, n, 1 if warp is F.warp else workers)
        # pieces of ~PIECE_PIXELS pixels, one remap each (aligned on sample indices for
        # start=); a sample's result is bit-identical whatever the batch, chunk, tile or
        # thread it comes in (see functional.warp), so shuffled ids go in batch order
        if ids is None:
            cuts = [first, *range((first // piece + 1) * piece, first + n, piece), first + n]
            cuts = [c - first for c in cuts]
        else:
            cuts = [*range(0, n, piece), n]
        units = [(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]
        # (N, C, H, W) results are transposed piece by piece
        back_first = None
        if channels == "first" and out.ndim == 4 and out.shape[3] > 1:
            back_first = np.empty(given[0].shape, out.dtype)

        def geometry(s: int, e: int):
            return (self._geometry(first + s, e - s, height, width) if ids is None
                    else self._geometry(0, e - s, height, width, ids=ids[s:e]))

        drawn: list = [0, None]  # (first sample, matrices) of the current group of pieces

        def run(se: tuple[int, int]) -> None:
            s, e = se
            if drawn[1] is not None:
                inverse, field = drawn[1][s - drawn[0]:e - drawn[0]], None
            else:
                inverse, field = geometry(s, e)
            warp(images[s:e], inverse, field=field, border=self.border, fill=self.fill,
                 masks=None if masks is None else mask_in[s:e], mask_fill=self.mask_fill,
                 out=out[s:e], mask_out=None if masks is None else mask_out[s:e])
            if back_first is not None:  # while the piece is in cache, in the worker threads
                back_first[s:e] = out[s:e].transpose(0, 3, 1, 2)

        ahead = warp is not F.warp and not isinstance(self.transforms[-1], Elastic)
        for group in kernels.groups(units, kernels.GEOMETRY_SAMPLES if ahead else 0):
            if ahead:
                drawn[:] = group[0][0], geometry(group[0][0], group[-1][1])[0]
            if workers == 1 or len(group) == 1:
                for unit in group:
                    run(unit)
            else:
                # cv2 and numpy release the GIL in the heavy parts
                list(_pool(workers).map(run, group))
        out = channels_back(out, channels) if back_first is None else back_first
        if masks is None:
            return back(out)
        mask_out = mask_out if mask_dtype is None else mask_out.astype(mask_dtype)
        return back(out), mask_back(channels_back(mask_out, channels))

    def _geometry(self, start: int, n: int, height: int, width: int,
                  ids: np.ndarray | None = None):
        inverse, field = None, None
        for stream, t in enumerate(self.transforms):
            if isinstance(t, Elastic):
                field = t.field(self.seed, stream, start, n, height, width, ids=ids)
                continue
            m = t.matrices(self.seed, stream, start, n, height, width, ids=ids)
            # output -> source: the first transform's inverse is applied last
            inverse = m if inverse is None else np.matmul(inverse, m)
        if inverse is None:
            inverse = np.broadcast_to(np.eye(3), (n, 3, 3))
        return inverse, field


def _refuse_single_image(a: np.ndarray, seen: set[tuple[int, int]]) -> None:
    """A 3-D batch that looks like one image raises: it would come back garbled. A (3, H, W)
    or (4, H, W) batch is taken as greyscale images when greyscale H x W batches came before
    (``seen``: the last batch of a loop)."""
    if min(a.shape) == 0:
        return
    n, h, w = a.shape
    if w in CHANNEL_COUNTS and n > 4 and h > 4:
        raise OptionError(f"images has shape {a.shape}, which looks like one (H, W, C) image, "
                          f"not a batch of {n} images of {h} x {w} pixels: use aug.image(img) "
                          "for one image (or img[None], a batch of one), or pass "
                          "channels='last' if it really is a batch (N, H, W)")
    if n in (3, 4) and h > 4 and w > 4 and (h, w) not in seen:
        raise OptionError(f"images has shape {a.shape}: one (C, H, W) image or a batch of {n} "
                          "greyscale (H, W) images? Use aug.image(img, channels='first') for "
                          f"one image, or pass channels='last' to augment {n} (H, W) images")


_POSITION_LOCK = threading.Lock()  # held for a few instructions per call: one for all
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """A thread pool of ``workers`` threads kept for the process (shared by the Augmenters with
    that many workers): its threads keep their scratch buffers (about 15 MB each) warm between
    calls; fresh threads would page-fault them on every chunk. Concurrent calls queue on it, so
    it never holds more than ``workers`` threads and their scratch."""
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="dlsets-aug")
        return pool


def _forget_pools_in_child() -> None:
    """After a fork (e.g. a data-loader worker): the parent's pool threads do not exist here,
    and another parent thread may have held a lock at the moment of the fork."""
    global _POOLS, _POOLS_LOCK, _POSITION_LOCK
    _POOLS = {}
    _POOLS_LOCK = threading.Lock()
    _POSITION_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_in_child)


def piece_size(height: int, width: int, n: int | None = None, workers: int = 1) -> int:
    """Samples per piece of work for H x W images; given the batch size ``n`` and the
    threads, a small batch is shared among them (never a change of results: a sample's output
    does not depend on its piece)."""
    piece = max(1, min(F.max_tiles(height), PIECE_PIXELS // (height * width)))
    if n is None or workers < 2 or n >= piece * workers:
        return piece
    shares = min(workers, n // max(1, MIN_SHARED_PIXELS // (height * width)))
    return piece if shares < 2 else min(piece, -(-n // shares))


def _remappable(masks: np.ndarray, fill: float) -> tuple[np.ndarray, np.dtype | None]:
    """Masks in a dtype cv2.remap takes, and the dtype to convert back to (None: unchanged).

    Other integer labels go through uint16 or int16, whichever holds them and ``fill`` (e.g.
    int64 class maps with an ignore label of -1 or -100)."""
    if masks.dtype == bool:
        if fill not in (0, 1):
            raise OptionError(f"mask_fill={fill!r} does not fit bool masks: give 0 or 1")
        return masks.view(np.uint8), masks.dtype
    if masks.dtype in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
        return masks, None
    if np.issubdtype(masks.dtype, np.integer):
        values = [int(fill)] + ([int(masks.min()), int(masks.max())] if masks.size else [])
        for dtype in (np.uint16, np.int16):
            info = np.iinfo(dtype)
            if info.min <= min(values) and max(values) <= info.max:
                return masks.astype(dtype), masks.dtype
        raise OptionError(f"masks of dtype {masks.dtype} hold values {min(values)}..{max(values)} "
                          "(mask_fill included): integer masks must lie in [0, 65535] or "
                          "[-32768, 32767]")
    raise OptionError(f"masks of dtype {masks.dtype} are not supported: use uint8, uint16, "
                      "int16, float32, float64, bool, or other integers in [0, 65535] or "
                      "[-32768, 32767]")
