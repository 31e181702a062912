"""The transform classes: each holds its parameters' ranges and turns the draws of samples
``start .. start+n-1`` (from its own counter-based stream, see :mod:`.params`) into inverse
homographies or an elastic field (see :mod:`.functional`); and the checks of their arguments.

:class:`~dlsets.augment.transforms.Augmenter` runs them; :mod:`.transforms` re-exports every
name here (their first home).
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

from ..errors import OptionError
from . import elastic as coarse
from . import functional as F
from . import kernels, params

Range = tuple[float, float]


# ---------------------------------------------------------------------------- argument checks
def _number(value: object) -> bool:
    return isinstance(value, (Real, np.number)) and not isinstance(value, bool)


def _range(name: str, value: object, *, limit: float, what: str) -> Range:
    """A number d >= 0 means (-d, d); a (low, high) pair is taken as given; both within limit."""
    allowed = (f"give {what} as a number d in [0, {limit:g}] (meaning -d..d) or a (low, high) "
               f"pair with -{limit:g} <= low <= high <= {limit:g}")
    if _number(value):
        d = float(value)
        if math.isfinite(d) and 0.0 <= d <= limit:
            return (-d, d)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_number, value)):
        lo, hi = float(value[0]), float(value[1])
        if math.isfinite(lo) and math.isfinite(hi) and -limit <= lo <= hi <= limit:
            return (lo, hi)
    raise OptionError(f"{name}={value!r} is not allowed: {allowed}")


# Below a tenth of its size an image is a few pixels in a field of fill (a factor like 1e-300
# makes every copy all fill, and NaNs in the sampling grid): refused, as factors above 10 are.
ZOOM_MIN, ZOOM_MAX = 0.1, 10.0


def _zoom(value: object) -> Range:
    allowed = (f"give a (low, high) pair of scale factors with {ZOOM_MIN:g} <= low <= high <= "
               f"{ZOOM_MAX:g}, or a number z in [0, {1 - ZOOM_MIN:g}] meaning (1 - z, 1 + z)")
    if _number(value):
        z = float(value)
        if 0.0 <= z <= 1.0 - ZOOM_MIN:
            return (1.0 - z, 1.0 + z)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_number, value)):
        lo, hi = float(value[0]), float(value[1])
        if ZOOM_MIN <= lo <= hi <= ZOOM_MAX:
            return (lo, hi)
    raise OptionError(f"zoom={value!r} is not allowed: {allowed}")


def _probability(name: str, value: object) -> float:
    if _number(value) and 0.0 <= float(value) <= 1.0:
        return float(value)
    raise OptionError(f"{name}={value!r} is not allowed: give a probability in [0, 1]")


def _draw(lo_hi: Range, u: np.ndarray) -> np.ndarray:
    lo, hi = lo_hi
    return lo + (hi - lo) * u


# ---------------------------------------------------------------------------- transforms
class Transform:
    """Base of all transforms: immutable ranges; parameters come from ``draw``."""

    words: int = 0  # uniforms per sample

    def _fields(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._fields().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(self._fields().items())))


class Geometric(Transform):
    """A transform that is a homography per sample."""

    def inverse(self, u: np.ndarray, height: int, width: int) -> np.ndarray:
        """Inverse matrices (n, 3, 3) from uniforms ``u`` (n, words)."""
        raise NotImplementedError

    def matrices(self, seed: int, stream: int, start: int, n: int, height: int,
                 width: int, ids: np.ndarray | None = None) -> np.ndarray:
        """Inverse matrices (n, 3, 3) of samples start..start+n-1, or of samples ``ids``."""
        u = (params.uniform(seed, stream, start, n, self.words) if ids is None
             else params.uniform_at(seed, stream, ids, self.words))
        return self.inverse(u, height, width)


class RandomAffine(Geometric):
    """Rotation (degrees), shift (fraction of the size, sub-pixel), shear (degrees, x and y
    drawn separately) and zoom (scale factor), all drawn per sample; each off unless given."""

    words = 6

    def __init__(self, rotate: float | Range | None = None, shift: float | Range | None = None,
                 shear: float | Range | None = None, zoom: float | Range | None = None) -> None:
        self.rotate = None if rotate is None else _range("rotate", rotate, limit=360.0,
                                                         what="degrees")
        self.shift = None if shift is None else _range("shift", shift, limit=1.0,
                                                       what="a fraction of the image size")
        self.shear = None if shear is None else _range("shear", shear, limit=80.0,
                                                       what="degrees")
        self.zoom = None if zoom is None else _zoom(zoom)

    def inverse(self, u: np.ndarray, height: int, width: int) -> np.ndarray:
        zero = np.zeros(u.shape[0])
        angle = zero if self.rotate is None else _draw(self.rotate, u[:, 0])
        shear_x = zero if self.shear is None else _draw(self.shear, u[:, 1])
        shear_y = zero if self.shear is None else _draw(self.shear, u[:, 2])
        scale = zero + 1.0 if self.zoom is None else _draw(self.zoom, u[:, 3])
        tx = zero if self.shift is None else _draw(self.shift, u[:, 4]) * width
        ty = zero if self.shift is None else _draw(self.shift, u[:, 5]) * height
        return F.affine_inverse(angle, shear_x, shear_y, scale, tx, ty, height, width)


class Rotate(RandomAffine):
    """Rotation by an angle drawn from ``degrees`` (d means -d..d), counter-clockwise positive."""

    def __init__(self, degrees: float | Range) -> None:
        super().__init__(rotate=degrees)


class Shift(RandomAffine):
    """Sub-pixel shift by a fraction of the width (x) and height (y), drawn per axis."""

    def __init__(self, fraction: float | Range) -> None:
        super().__init__(shift=fraction)


class Shear(RandomAffine):
    """Shear along x and along y by angles drawn from ``degrees``."""

    def __init__(self, degrees: float | Range) -> None:
        super().__init__(shear=degrees)


class Zoom(RandomAffine):
    """Scaling about the centre by a factor drawn from ``factor`` ((low, high) or 1 +- z)."""

    def __init__(self, factor: float | Range) -> None:
        super().__init__(zoom=factor)


class Perspective(Geometric):
    """Perspective warp: each corner moves by up to ``scale`` x the image size along x and y."""

    words = 8

    def __init__(self, scale: float) -> None:
        if not (_number(scale) and 0.0 <= float(scale) <= 0.25):
            raise OptionError(f"perspective={scale!r} is not allowed: give a number in [0, 0.25] "
                              "(largest corner move as a fraction of the image size)")
        self.scale = float(scale)

    def inverse(self, u: np.ndarray, height: int, width: int) -> np.ndarray:
        off = (2.0 * u - 1.0) * self.scale
        off = off.reshape(-1, 4, 2) * np.array([width - 1, height - 1], dtype=np.float64)
        return F.perspective_inverse(off, height, width)


class HFlip(Geometric):
    """Mirror left-right with probability ``p`` (off in Augmenter by default: mirrored digits
    and letters are not digits and letters)."""

    words = 1

    def __init__(self, p: float = 0.5) -> None:
        self.p = _probability("p", p)

    def inverse(self, u: np.ndarray, height: int, width: int) -> np.ndarray:
        flip = u[:, 0] < self.p
        return F.flip_inverse(flip, np.zeros_like(flip), height, width)


class VFlip(Geometric):
    """Mirror top-bottom with probability ``p``."""

    words = 1

    def __init__(self, p: float = 0.5) -> None:
        self.p = _probability("p", p)

    def inverse(self, u: np.ndarray, height: int, width: int) -> np.ndarray:
        flip = u[:, 0] < self.p
        return F.flip_inverse(np.zeros_like(flip), flip, height, width)


class Elastic(Transform):
    """Elastic deformation (Simard et al. 2003): displacement = alpha x (Gaussian smoothing with
    ``sigma`` pixels of white noise of variance 1/3, as uniform noise on [-1, 1] has). From
    128 x 128 pixels the noise is uniform on a grid of 2 nodes per sigma, upsampled bilinearly
    (:mod:`.elastic`); below, exact on every pixel in low-rank form."""

    def __init__(self, alpha: float, sigma: float) -> None:
        if not (_number(alpha) and math.isfinite(alpha) and 0.0 <= float(alpha) <= 1000.0):
            raise OptionError(f"elastic alpha={alpha!r} is not allowed: give a number in "
                              "[0, 1000] (displacement scale in pixels)")
        if not (_number(sigma) and math.isfinite(sigma) and 0.1 <= float(sigma) <= 100.0):
            raise OptionError(f"elastic sigma={sigma!r} is not allowed: give a number in "
                              "[0.1, 100] (smoothing in pixels)")
        self.alpha = float(alpha)
        self.sigma = float(sigma)

    def field(self, seed: int, stream: int, start: int, n: int, height: int,
              width: int, ids: np.ndarray | None = None) -> F.Field:
        """The displacement fields of samples start..start+n-1 (or ``ids``) for H x W images:
        exact (low rank) below ``kernels.ELASTIC_PER_IMAGE_PIXELS``, on a grid from there."""
        if kernels.coarse_field(height, width):
            return coarse.field(seed, stream, start, n, height, width, self.alpha, self.sigma,
                                 ids=ids)
        rows = F.smoothing_basis(height, self.sigma)
        cols = F.smoothing_basis(width, self.sigma)
        r, s = rows.shape[1], cols.shape[1]
        z = (params.normal(seed, stream, start, n, 2 * r * s) if ids is None
             else params.normal_at(seed, stream, ids, 2 * r * s))
        z *= np.float32(self.alpha / math.sqrt(3.0))
        z = z.reshape(n, 2, r, s)
        return F.Field(rows, cols, z[:, 0], z[:, 1])


TRANSFORMS = (RandomAffine, Rotate, Shift, Shear, Zoom, Perspective, HFlip, VFlip, Elastic)
_AFFINE = (RandomAffine, HFlip, VFlip, Elastic)  # a user's own Geometric may be projective
