"""HDF5 files in the dlsets layout, written atomically.

Layout: ``/<split>/images`` (N, ...) and ``/<split>/labels`` (N,) (an unlabelled split,
STL-10's unlabeled, has no ``labels``), plus ``/<split>/masks`` (N, H, W) for segmentation
data; file attributes ``classes`` (names) and ``sources`` (JSON of source file -> sha256).

Uncompressed datasets are contiguous, so readers map their bytes (:mod:`dlsets.data.fastread`:
a shuffled epoch at RAM speed from the page cache); compressed ones are chunked along the
sample axis (whole rows per chunk), as every dataset was before (those files still read, and
uncompressed chunked ones are mapped too).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np

from ..store import space, stamps

CHUNK_BYTES = 1 << 16  # compressed chunks: small, so a random row decompresses little
# The compressions writers take. lz4 is hdf5plugin's LZ4 filter (the ``lz4`` extra): as small
# as lzf on images that compress, and it decodes 5-8x faster (docs/benchmarks.md).
COMPRESSIONS = (None, "gzip", "lzf", "lz4")


def check_compression(compression: object) -> None:
    """OptionError unless ``compression`` is one of :data:`COMPRESSIONS`; MissingDependencyError
    for lz4 without hdf5plugin (before any work)."""
    from ..errors import OptionError

    if compression not in COMPRESSIONS:
        raise OptionError(f"compression={compression!r} is not allowed: give None, 'gzip', "
                          "'lzf' or 'lz4' (lz4 needs: pip install 'dlsets[lz4]')")
    if compression == "lz4":
        _hdf5plugin("writing lz4-compressed HDF5")


def _hdf5plugin(what: str):
    from ..errors import MissingDependencyError

    try:
        import hdf5plugin
    except ImportError:
        raise MissingDependencyError(f"{what} needs hdf5plugin, which is not installed: "
                                     "pip install 'dlsets[lz4]'") from None
    return hdf5plugin


def _filter(compression: str | None) -> dict:
    """create_dataset's keywords for ``compression``."""
    if compression == "lz4":
        return dict(_hdf5plugin("writing lz4-compressed HDF5").LZ4())
    return {"compression": compression}


def check_filters(dset, path) -> None:
    """Make the filters of the h5py dataset ``dset`` (of the file at ``path``) readable here:
    hdf5plugin's are registered on first need. MissingDependencyError when a filter needs it
    and it is not installed; FormatError for a filter neither HDF5 nor hdf5plugin has."""
    import h5py

    from ..errors import FormatError

    plist = dset.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        code, _, _, name = plist.get_filter(i)
        if h5py.h5z.filter_avail(code):
            continue
        # HDF5 also loads plugins from the folders of HDF5_PLUGIN_PATH as it reads (importing
        # TensorFlow sets it to "disable", no folder, to stop that)
        folders = [p for p in os.environ.get("HDF5_PLUGIN_PATH", "").split(os.pathsep)
                   if p and os.path.isdir(p)]
        shown = name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)
        what = f"{dset.name} is compressed with HDF5 filter {code} ({shown or 'unnamed'})"
        try:
            _hdf5plugin(f"reading {path} ({what})")
        except ImportError:
            if not (folders and _loads(dset)):
                raise
            continue
        if not h5py.h5z.filter_avail(code) and not (folders and _loads(dset)):
            raise FormatError(f"{path}: {what}, which neither HDF5 nor hdf5plugin provides; "
                              "dlsets writes gzip, lzf or lz4")


def _loads(dset) -> bool:
    """Whether HDF5 can read a first value of ``dset`` (loading a plugin from
    HDF5_PLUGIN_PATH if it must): the one way to know that it finds one there."""
    if not dset.size:
        return True
    try:
        dset[(0,) * dset.ndim]
    except OSError:
        return False
    return True


class _GuardedFile(io.FileIO):
    """The file HDF5 writes through (h5py's file-object driver).

    HDF5 that sees a write fail (a full disk) crashes the interpreter as it closes the file
    (h5py 3.14 to 3.16 segfault), and it may first see it while closing, when it flushes its
    caches. So no write error ever reaches HDF5: the first one is kept, every later write is
    dropped, HDF5 closes cleanly, and the error is raised then (the file is deleted anyway).
    Writers call :func:`check_writes` between blocks to stop early.
    """

    failed: OSError | None = None

    def write(self, b) -> int:
        view = memoryview(b).cast("B")
        if self.failed is None:
            done = 0
            try:
                while done < len(view):  # h5py ignores short writes: finish them here
                    done += super().write(view[done:])
            except OSError as exc:
                self.failed = exc
        return len(view)


_guards: dict[int, _GuardedFile] = {}


def check_writes(f) -> None:
    """Raise the write error HDF5 was spared, if one happened in file ``f`` so far."""
    guard = _guards.get(id(f))
    if guard is not None and guard.failed is not None:
        raise guard.failed


def check_stored_here(f, dset, path) -> None:
    """Refuse a dataset of the open file ``f`` whose bytes live elsewhere: behind an external
    link (another file, anywhere on disk), in a virtual dataset, or in external raw files.
    dlsets writes none of these, and reading them would read files nobody named."""
    from ..errors import FormatError

    elsewhere = (dset.file.filename != f.filename or dset.is_virtual
                 or dset.id.get_create_plist().get_external_count())
    if elsewhere:
        raise FormatError(f"{path}: {dset.name} is stored outside the file (an external link, "
                          "a virtual dataset or external raw storage), which dlsets never "
                          "writes; refusing to read it")


def hdf5_bytes(count: int, image_shape: Sequence[int], itemsize: int = 1) -> int:
    """Bytes one split of ``count`` images (uint8 labels) takes in an HDF5 file, index aside."""
    return count * (int(np.prod(image_shape, dtype=object)) * itemsize + 1)


@contextmanager
def atomic_hdf5(path: str | os.PathLike, needed: int | None = None,
                what: str = "HDF5 output", *, overwrite: bool = False) -> Iterator:
    """Write to a temporary HDF5 file beside ``path``; it becomes ``path`` on success only.

    An existing ``path`` that dlsets did not write is refused unless ``overwrite`` (see
    :mod:`dlsets.store.stamps`); the new file carries the dlsets stamp. ``needed`` (bytes, the data
    to be written) is checked against the free disk space first; a write that fails anyway
    raises SpaceError / WriteError (see :func:`dlsets.store.space.output`) without crashing HDF5."""
    import h5py

    stamps.check_replace(path, overwrite, what)
    with space.output(path, needed, what) as tmp:
        raw = _GuardedFile(tmp, "w+")
        try:
            with h5py.File(raw, "w") as f:
                stamps.stamp_hdf5(f)
                _guards[id(f)] = raw
                try:
                    yield f
                finally:
                    _guards.pop(id(f), None)
        except Exception:
            if raw.failed is not None:  # what went wrong first: the write
                raise raw.failed from None
            raise
        finally:
            raw.close()
        if raw.failed is not None:
            raise raw.failed


def _chunks(count: int, row_shape: tuple, dtype, compression: str | None) -> tuple | None:
    """None (contiguous) unless compressed: then whole rows, about CHUNK_BYTES a chunk."""
    if not count or compression is None:
        return None
    sample_bytes = int(np.prod(row_shape)) * np.dtype(dtype).itemsize
    return (max(1, min(count, CHUNK_BYTES // max(1, sample_bytes))), *row_shape)


def create_split(
    f,
    split: str,
    count: int,
    image_shape: Sequence[int],
    *,
    dtype: np.dtype | str = np.uint8,
    compression: str | None = None,
    labels: bool = True,
):
    """Create empty ``/<split>/images`` and ``/<split>/labels``; returns both datasets (labels
    None when ``labels=False``: an unlabelled split)."""
    image_shape = tuple(image_shape)
    group = f.require_group(split)
    images = group.create_dataset(
        "images",
        shape=(count, *image_shape),
        dtype=dtype,
        chunks=_chunks(count, image_shape, dtype, compression),
        **_filter(compression),
    )
    if not labels:
        return images, None
    labels = group.create_dataset(
        "labels",
        shape=(count,),
        dtype=np.uint8,
        chunks=(max(1, min(count, 1 << 14)),) if count and compression else None,
        **_filter(compression),
    )
    return images, labels


def create_masks(
    f,
    split: str,
    count: int,
    mask_shape: Sequence[int],
    *,
    dtype: np.dtype | str = np.uint8,
    compression: str | None = None,
):
    """Create an empty ``/<split>/masks`` (segmentation class maps), laid out like the images."""
    mask_shape = tuple(mask_shape)
    return f.require_group(split).create_dataset(
        "masks",
        shape=(count, *mask_shape),
        dtype=dtype,
        chunks=_chunks(count, mask_shape, dtype, compression),
        **_filter(compression),
    )


def names_attr(names: Sequence[str]) -> np.ndarray:
    """Names as an HDF5 string attribute, losslessly: UTF-8 strings, or, when a name is not
    UTF-8 (a folder named in Latin-1, which Python holds surrogate-escaped), every name's
    exact bytes as a byte-string attribute, which h5py reads back as the same ``str``."""
    import h5py

    names = [str(n) for n in names]
    if any(_escaped(n) for n in names):
        raw = [n.encode("utf-8", "surrogateescape") for n in names]
        return np.array(raw, dtype=h5py.string_dtype("ascii"))
    return np.array(names, dtype=h5py.string_dtype())


def _escaped(text: str) -> bool:
    """Whether ``text`` holds bytes that were not UTF-8 (surrogate-escaped by Python)."""
    return any("\udc80" <= c <= "\udcff" for c in text)


def write_attrs(
    f, classes: Sequence[str], sources: Mapping[str, str] | None = None, **extra
) -> None:
    """Store class names, source checksums and any extra scalar attributes on the file."""
    f.attrs["classes"] = names_attr(classes)
    f.attrs["sources"] = json.dumps(dict(sources or {}), sort_keys=True)
    for key, value in extra.items():
        f.attrs[key] = names_attr([value])[0] if isinstance(value, str) else value
