"""The :class:`Source` protocol and the table of sources that ``load``, ``fetch``, ``verify``,
``remove`` (and ``status``, ``cached``, ``place``: where the cache keeps a dataset, checked here
to lie inside it) dispatch through.

A source says which names it claims and implements the operations it has, with the signatures
of the public functions in :mod:`dlsets.sources.acquire` and :mod:`dlsets.sources.loaders`.
:func:`source_for` gives the first source, in ``order``, that claims a name and has the
operation asked for; the registry's datasets come last and claim every name, so an operation
that a path or a Kaggle name lacks fails as it always did (an unknown dataset, a bad name).

The built-in sources are modules named in :data:`SOURCE_MODULES`, imported on first use (as
entry points are): each registers itself when imported, so the table imports none of them and
they never import the dispatchers above them. A new source is one module that calls
:func:`register`.
"""

from __future__ import annotations

import importlib
import threading

OPERATIONS = ("load", "fetch", "verify", "remove", "status", "cached", "place")

SOURCE_MODULES = (
    "dlsets.sources.h5file",  # an HDF5 file dlsets wrote
    "dlsets.sources.folder_source",  # a folder of images
    "dlsets.sources.kaggle_source",  # kaggle:OWNER/DATASET, or a registry entry with "kaggle"
    "dlsets.sources.builtin",  # the registry's datasets (built-in and user entries): last
)


class Source:
    """Where datasets of one kind come from. Subclasses set ``order`` (lower is asked first),
    implement :meth:`claims` and define the operations they have, among :data:`OPERATIONS`."""

    order = 100
    kind = "source"  # a short word for messages and the CLI: "folder", "kaggle", ...
    load = fetch = verify = remove = status = cached = place = None  # what this source lacks

    def claims(self, name) -> bool:
        """Whether ``name`` (a str or a path) names a dataset of this source."""
        return False

    def supports(self, operation: str) -> bool:
        """Whether this source has ``operation`` (one of :data:`OPERATIONS`)."""
        return getattr(self, operation, None) is not None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} order={self.order}>"


_sources: list[Source] = []
_loaded = False
_lock = threading.RLock()  # the first lookups of threads that load at once import once


def register(source: Source) -> Source:
    """Add ``source`` to the table (its ``order`` says where); returns it."""
    with _lock:
        if source not in _sources:
            _sources.append(source)
            _sources.sort(key=lambda s: s.order)  # stable: equal orders keep their arrival
    return source


def unregister(source: Source) -> None:
    """Take ``source`` out of the table (a test's throwaway source, say)."""
    with _lock:
        if source in _sources:
            _sources.remove(source)


def sources() -> list[Source]:
    """Every registered source, in the order they are asked."""
    global _loaded
    if not _loaded:
        with _lock:
            if not _loaded:
                for module in SOURCE_MODULES:
                    importlib.import_module(module)
                _loaded = True
    return list(_sources)


def of_kind(kind: str) -> Source:
    """The registered source of ``kind`` ("folder", "kaggle", "registry", ...)."""
    for source in sources():
        if source.kind == kind:
            return source
    raise LookupError(f"no source of kind {kind!r}")


def place(name, cache_dir=None, *, source: Source | None = None):
    """Where the cache keeps what ``source`` (by default the one that claims ``name``) made of
    ``name``; checked here, once for every source, to lie inside the cache."""
    from ..common import config
    from ..errors import OptionError
    from ..store.names import inside

    source = source or source_for(name, "place")
    path = source.place(name, cache_dir=cache_dir)
    root = config.cache_root(cache_dir)
    if not inside(root, path):
        raise OptionError(f"{name!r} ({source.kind}) leads to {path}, outside the cache {root}; "
                          "refusing to use it")
    return path


def source_for(name, operation: str | None = None) -> Source:
    """The first source that claims ``name`` and has ``operation`` (any, when None)."""
    if operation is not None and operation not in OPERATIONS:
        raise ValueError(f"operation {operation!r}: one of {OPERATIONS}")
    for source in sources():
        if (operation is None or source.supports(operation)) and source.claims(name):
            return source
    raise LookupError(f"no source claims {name!r}" + (f" for {operation}" if operation else ""))
