"""A restricted unpickler: numpy arrays and builtin containers, nothing else.

Pickles run code by naming callables; this one resolves only numpy's array reconstruction
and a few builtin container types (and latin1 ``_codecs.encode``, which Python 3 writes for
``bytes`` under protocols 0-2), so a hostile file is refused before any of it runs.

Harmless types can still be a memory bomb: a 226 KB pickle of lists that each hold the one
below twice, 35 deep, is 2**35 items once anything walks it (``np.asarray`` does). So what a
pickle loads is also bounded by the pickle itself: containers nest at most :data:`MAX_DEPTH`
deep and, counting a shared object every time it is reached, hold no more items and no more
bytes of data than the pickle has bytes (each item and each byte has to come from somewhere
in it, unless it is shared). The check walks each distinct object once, so it takes time in
proportion to the pickle, not to what it expands to.
"""

from __future__ import annotations

import io
import math
import pickle
from typing import Any, BinaryIO

from ..errors import FormatError, UnsafePickleError

MAX_DEPTH = 32  # CIFAR's pickles nest 2 deep
SLACK = 1 << 16  # items and bytes a tiny pickle may still expand to

ALLOWED = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        *(
            (module, name)
            for module in ("builtins", "__builtin__")
            # Not bytearray: bytearray(10**10) from a 40-byte pickle fills 10 GB with zeros.
            for name in ("dict", "list", "tuple", "set", "frozenset")
        ),
    }
)


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 pickles ``bytes`` under protocols 0-2
    (``_codecs.encode(text, "latin1")``); no other codec is admitted."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise UnsafePickleError(
            f"the pickle calls _codecs.encode with codec {encoding!r}; only 'latin1' (how "
            "Python 3 pickles bytes under protocols 0-2) is admitted"
        )
    if not isinstance(text, str):
        raise UnsafePickleError("the pickle calls _codecs.encode on something not a str")
    return text.encode("latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose ``find_class`` admits only :data:`ALLOWED`, plus ``_codecs.encode``
    restricted to latin1 (Python 3's protocol 0-2 spelling of ``bytes``). ``budget`` (bytes)
    bounds the arrays numpy's ``_reconstruct`` may allocate before their data arrives."""

    budget: int | None = None

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) not in ALLOWED:
            raise UnsafePickleError(
                f"the pickle names {module}.{name}, which is neither a numpy array part nor a "
                "builtin container; refusing to load it (nothing in it was run)"
            )
        if module == "__builtin__":
            module = "builtins"
        if module.startswith("numpy"):
            import numpy as np

            if name == "_reconstruct":
                # numpy 2 moved numpy.core to numpy._core; both spellings reach the same function.
                core = getattr(np, "_core", None) or np.core
                return self._bounded(core.multiarray._reconstruct)
            return getattr(np, name)
        return super().find_class(module, name)

    def _bounded(self, reconstruct):
        budget = self.budget

        def bounded(subtype, shape, dtype):
            # Pickled arrays start empty, shape (0,), and get their data from the pickle; a
            # large shape here would allocate memory the pickle never fills.
            try:
                count = math.prod(int(n) for n in shape)
            except (TypeError, ValueError):
                raise FormatError(f"numpy _reconstruct got shape {shape!r}") from None
            if budget is not None and count > budget:
                raise FormatError(f"the pickle asks numpy for an array of shape {tuple(shape)} "
                                  "before any of its data: memory the pickle never fills "
                                  "(damaged or hostile)")
            return reconstruct(subtype, shape, dtype)

        return bounded


def _parts(obj) -> Any:
    """The objects inside ``obj`` when it is a container (None when it is not)."""
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, list | tuple | set | frozenset):
        return obj
    import numpy as np

    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        return obj.ravel()
    return None


def _leaf_bytes(obj) -> int:
    if isinstance(obj, bytes | bytearray | str):
        return len(obj)
    nbytes = getattr(obj, "nbytes", None)  # numpy arrays and scalars
    return int(nbytes) if isinstance(nbytes, int) else 8


def check_expansion(obj: Any, size: int, *, max_depth: int = MAX_DEPTH) -> None:
    """FormatError when ``obj`` (what a pickle of ``size`` bytes loaded) nests deeper than
    ``max_depth`` or, counting shared objects each time they are reached, holds more items or
    more bytes of data than ``size`` (plus a little slack) allows. Cycles are refused too."""
    budget = size + SLACK
    done: dict[int, tuple[int, int, int]] = {}  # id -> (items, bytes, height), per distinct object
    busy = object()
    stack: list[list] = []

    def enter(o):
        parts = _parts(o)
        if parts is None:
            return 1, _leaf_bytes(o), 0
        got = done.get(id(o))
        if got is busy:
            raise FormatError("the pickle holds a container that contains itself")
        if got is not None:
            return got
        if len(stack) >= max_depth:
            raise FormatError(f"the pickle nests containers more than {max_depth} deep; CIFAR "
                              "batches nest two deep (damaged or hostile)")
        done[id(o)] = busy
        stack.append([o, iter(parts), 1, 0, 0])
        return None

    def add(frame, r):
        frame[2] += r[0]
        frame[3] += r[1]
        frame[4] = max(frame[4], r[2])
        if frame[2] > budget or frame[3] > budget:
            raise FormatError(
                f"the pickle expands to more than {budget:,} items or bytes (it is {size:,} "
                "bytes long: it shares objects to look small); damaged or hostile"
            )

    end = object()
    top = enter(obj)
    while stack:
        frame = stack[-1]
        child = next(frame[1], end)
        if child is end:
            stack.pop()
            r = (frame[2], frame[3], frame[4] + 1)
            done[id(frame[0])] = r
            if stack:
                add(stack[-1], r)
            else:
                top = r
            continue
        r = enter(child)
        if r is not None:
            add(frame, r)
    items, nbytes, _ = top
    if items > budget or nbytes > budget:
        raise FormatError(f"the pickle expands to more than {budget:,} items or bytes (it is "
                          f"{size:,} bytes long); damaged or hostile")


def restricted_loads(data: bytes | BinaryIO, *, encoding: str = "bytes", name: str = "pickle",
                     size: int | None = None, max_depth: int = MAX_DEPTH) -> Any:
    """Unpickle ``data`` (bytes, or a binary file of ``size`` bytes) with
    :class:`RestrictedUnpickler`.

    ``encoding`` decodes Python 2 ``str`` objects: "bytes" keeps them as bytes, "latin1"
    turns them into str. Anything the pickle names outside the allow-list raises
    UnsafePickleError (with ``name`` in the message); a damaged pickle, or one that loads to
    more than it holds (see :func:`check_expansion`), raises FormatError.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        size = len(data)
        data = io.BytesIO(data)
    try:
        unpickler = RestrictedUnpickler(data, encoding=encoding)
        unpickler.budget = None if size is None else size + SLACK
        obj = unpickler.load()
        if size is not None:
            check_expansion(obj, size, max_depth=max_depth)
        return obj
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{name}: {exc}") from None
    except FormatError as exc:
        raise FormatError(f"{name}: {exc}") from None
    except RecursionError:
        raise FormatError(f"{name}: the pickle nests too deep to load; damaged or hostile"
                          ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as exc:
        raise FormatError(f"{name}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    except MemoryError as exc:
        raise FormatError(
            f"{name}: the pickle asks for more memory than there is ({exc or 'MemoryError'}); "
            "the file is damaged or hostile"
        ) from None
