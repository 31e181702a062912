"""Arrays of other frameworks in and out (torch, TensorFlow, JAX), without importing any.

A tensor is recognised by the package its type comes from; that package is already imported
(the caller made the tensor), so converting back only looks it up in ``sys.modules``.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable

import numpy as np

from ..errors import OptionError

MAX_ID = 1 << 48  # sample ids stay below this: counter arithmetic never overflows


def framework(x: object) -> str | None:
    """"torch", "tensorflow" or "jax" for a tensor of that framework, else None."""
    top = type(x).__module__.split(".")[0]
    if top == "torch":
        return "torch"
    if top in ("tensorflow", "tf_keras"):
        return "tensorflow"
    if top in ("jax", "jaxlib"):
        return "jax"
    return None


def to_numpy(x: object) -> tuple[np.ndarray, Callable[[np.ndarray], object]]:
    """``x`` as a NumPy array (no copy where the framework allows), and a function that turns a
    NumPy result back into the kind of ``x`` (a torch tensor on ``x``'s device, ...)."""
    kind = framework(x)
    if kind == "torch":
        device = x.device
        a = x.detach().cpu().numpy()

        def back(r: np.ndarray):
            t = sys.modules["torch"].from_numpy(np.ascontiguousarray(r))
            return t if device.type == "cpu" else t.to(device)

        return a, back
    if kind == "tensorflow":
        return np.asarray(x.numpy()), sys.modules["tensorflow"].convert_to_tensor
    if kind == "jax":
        return np.asarray(x), sys.modules["jax.numpy"].asarray
    return np.asarray(x), _same


def _same(r: np.ndarray) -> np.ndarray:
    return r


def _is_bool(value: object) -> bool:
    return isinstance(value, (bool, np.bool_)) or str(getattr(value, "dtype", "")).endswith(
        "bool")


def index(name: str, value: object) -> int:
    """An integer >= 0 from an int, a NumPy integer or a 0-d integer array or tensor of any
    framework; OptionError otherwise (floats and bools included)."""
    try:
        i = None if _is_bool(value) else operator.index(value)
    except TypeError:
        i = None
    if i is None or not 0 <= i < MAX_ID:
        raise OptionError(f"{name}={value!r} is not allowed: give an integer sample index "
                          f">= 0 (and below 2**48): an int, a NumPy integer or a 0-d integer "
                          "tensor")
    return i


def index_array(name: str, value: object, n: int | None = None) -> np.ndarray:
    """(n,) int64 from a sequence, range, NumPy array or 1-d tensor of integers >= 0."""
    if isinstance(value, range):
        a = np.arange(value.start, value.stop, value.step, dtype=np.int64)
    else:
        if framework(value) is not None:
            value = to_numpy(value)[0]
        a = np.asarray(value)
    size = "" if n is None else f" of length {n}"
    what = f"give a 1-d sequence{size} of integer sample ids >= 0"
    if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise OptionError(f"{name} has shape {a.shape} and dtype {a.dtype}: {what}")
    if n is not None and len(a) != n:
        raise OptionError(f"{name} has {len(a)} ids for {n} images: {what}, one per image")
    if a.size and (int(a.min()) < 0 or int(a.max()) >= MAX_ID):
        raise OptionError(f"{name} holds ids {int(a.min())}..{int(a.max())}: {what} "
                          "(and below 2**48)")
    return a.astype(np.int64, copy=False)
