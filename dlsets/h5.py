"""HDF5 files in the dlsets layout, written atomically.

Layout: ``/<split>/images`` (N, ...) and ``/<split>/labels`` (N,), chunked along the sample
axis; file attributes ``classes`` (names) and ``sources`` (JSON of source file -> sha256).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np

from . import space

CHUNK_BYTES = 1 << 16  # small chunks keep random access by sample cheap


class _GuardedFile(io.FileIO):
    """The file HDF5 writes through (h5py's file-object driver).

    HDF5 left in an error state by a failed write (a full disk) crashes the interpreter when it
    closes the file (h5py 3.14 to 3.16 segfault). Here the first failed write raises, which
    stops the work, and every later write (HDF5 flushing as it closes) is dropped, so the file
    closes cleanly; it is deleted then, and the error reported.
    """

    failed: OSError | None = None

    def write(self, b) -> int:
        view = memoryview(b).cast("B")
        if self.failed is not None:
            return len(view)
        done = 0
        try:
            while done < len(view):  # h5py ignores short writes: finish them here
                done += super().write(view[done:])
        except OSError as exc:
            self.failed = exc
            raise
        return len(view)


def hdf5_bytes(count: int, image_shape: Sequence[int], itemsize: int = 1) -> int:
    """Bytes one split of ``count`` images (uint8 labels) takes in an HDF5 file, index aside."""
    return count * (int(np.prod(image_shape, dtype=object)) * itemsize + 1)


@contextmanager
def atomic_hdf5(path: str | os.PathLike, needed: int | None = None,
                what: str = "HDF5 output") -> Iterator:
    """Write to a temporary HDF5 file beside ``path``; it becomes ``path`` on success only.

    ``needed`` (bytes, the data to be written) is checked against the free disk space first;
    a write that fails anyway raises SpaceError / WriteError (see :func:`dlsets.space.output`)
    without crashing HDF5."""
    import h5py

    with space.output(path, needed, what) as tmp:
        raw = _GuardedFile(tmp, "w+")
        try:
            with h5py.File(raw, "w") as f:
                yield f
        except Exception:
            if raw.failed is not None:  # h5py may wrap it: report the write that failed
                raise raw.failed from None
            raise
        finally:
            raw.close()
        if raw.failed is not None:
            raise raw.failed


def create_split(
    f,
    split: str,
    count: int,
    image_shape: Sequence[int],
    *,
    dtype: np.dtype | str = np.uint8,
    compression: str | None = None,
):
    """Create empty ``/<split>/images`` and ``/<split>/labels``; returns both datasets."""
    image_shape = tuple(image_shape)
    sample_bytes = int(np.prod(image_shape)) * np.dtype(dtype).itemsize
    rows = max(1, min(count, CHUNK_BYTES // max(1, sample_bytes)))
    group = f.require_group(split)
    images = group.create_dataset(
        "images",
        shape=(count, *image_shape),
        dtype=dtype,
        chunks=(rows, *image_shape) if count else None,
        compression=compression,
    )
    labels = group.create_dataset(
        "labels",
        shape=(count,),
        dtype=np.uint8,
        chunks=(max(1, min(count, 1 << 14)),) if count else None,
        compression=compression,
    )
    return images, labels


def write_attrs(
    f, classes: Sequence[str], sources: Mapping[str, str] | None = None, **extra
) -> None:
    """Store class names, source checksums and any extra scalar attributes on the file."""
    import h5py

    f.attrs["classes"] = np.array(list(classes), dtype=h5py.string_dtype())
    f.attrs["sources"] = json.dumps(dict(sources or {}), sort_keys=True)
    for key, value in extra.items():
        f.attrs[key] = value
