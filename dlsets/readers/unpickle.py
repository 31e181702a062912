"""A restricted unpickler: numpy arrays and builtin containers, nothing else.

Pickles run code by naming callables; this one resolves only numpy's array reconstruction
and a few builtin container types (and latin1 ``_codecs.encode``, which Python 3 writes for
``bytes`` under protocols 0-2), so a hostile file is refused before any of it runs.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from ..errors import FormatError, UnsafePickleError

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
    restricted to latin1 (Python 3's protocol 0-2 spelling of ``bytes``)."""

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
                return core.multiarray._reconstruct
            return getattr(np, name)
        return super().find_class(module, name)


def restricted_loads(data: bytes, *, encoding: str = "bytes", name: str = "pickle") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`.

    ``encoding`` decodes Python 2 ``str`` objects: "bytes" keeps them as bytes, "latin1"
    turns them into str. Anything the pickle names outside the allow-list raises
    UnsafePickleError (with ``name`` in the message); a damaged pickle raises FormatError.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{name}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as exc:
        raise FormatError(f"{name}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    except MemoryError as exc:
        raise FormatError(
            f"{name}: the pickle asks for more memory than there is ({exc or 'MemoryError'}); "
            "the file is damaged or hostile"
        ) from None
