"""The layout of a folder of shards: file names, shard rows, hashes and JSON writes.

The bottom of scale/: the shard writer, index, claim and verify modules all name, hash and
write files through it, so that none of them imports another's private names.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..store.atomic import replacing

FORMATS = {"hdf5": ".h5", "webdataset": ".tar"}
INDEX = "index.json"
KIND = "dlsets.shards"
SHARD_BYTES = 256 << 20  # default shard size: within WebDataset's advice of 100 MB to 1 GB
SHARD_FILE = re.compile(r"(?P<name>.+)-(?P<i>\d{5,})-of-(?P<n>\d{5,})\.(?:h5|tar)")
#: a shard's hidden entry file, ``.{shard file}.json``
SIDECAR = re.compile(r"\.(?P<file>.+-\d{5,}-of-\d{5,}\.(?:h5|tar))\.json")
#: the expansion names allowed in shard file names
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
_HASH_BLOCK = 1 << 26


def is_shard_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder of shards (it holds ``index.json`` or a shard's entry); a
    folder of images holds neither."""
    p = Path(path)
    return p.is_dir() and ((p / INDEX).is_file() or any(p.glob(".*-of-*.json")))


def complete_shards(folder: str | Path) -> list[Path]:
    """The shard files under their final names in ``folder`` (none when it is not a folder)."""
    folder = Path(folder)
    return [p for p in folder.iterdir() if SHARD_FILE.fullmatch(p.name)] if folder.is_dir() else []


def shard_rows(target: int, shards: int, shard: int) -> tuple[int, int]:
    """Output rows (lo, hi) of shard ``shard`` of ``shards``: sizes differ by at most one."""
    return shard * target // shards, (shard + 1) * target // shards


def shard_file(name: str, shard: int, shards: int, format: str = "hdf5") -> str:
    """``{name}-{shard:05d}-of-{shards:05d}`` plus ``.h5`` or ``.tar``."""
    return f"{name}-{shard:05d}-of-{shards:05d}{FORMATS[format]}"


def default_shards(target: int, image_shape: Sequence[int], dtype: np.dtype | str) -> int:
    """Shards of at most about 256 MB of pixels each."""
    sample = max(1, int(np.prod(tuple(image_shape))) * np.dtype(dtype).itemsize)
    return max(1, min(target, -(-target * sample // SHARD_BYTES)))


def sidecar(folder: Path, file: str) -> Path:
    """The hidden entry file of shard file ``file`` in ``folder``."""
    return folder / f".{file}.json"


def sha256_array(a: np.ndarray) -> str:
    """The sha256 of an array's rows in order, hashed a bounded block at a time."""
    h = hashlib.sha256()
    flat = a.reshape(len(a), -1) if a.ndim > 1 else a.reshape(-1, 1)
    rows = max(1, _HASH_BLOCK // max(1, flat.shape[1] * a.dtype.itemsize))
    for s in range(0, len(flat), rows):
        h.update(np.ascontiguousarray(flat[s:s + rows]))
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def labels64(y: np.ndarray) -> np.ndarray:
    """Labels in one canonical dtype, so the same values hash the same in any integer dtype."""
    return np.asarray(y).astype("<i8")


def write_json(path: Path, doc: dict) -> None:
    """Write ``doc`` to ``path`` atomically, unless the file already holds exactly it."""
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    data = text.encode("utf-8")
    try:  # idempotent: the same document is not rewritten (and only a regular file is read)
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except OSError:
        pass
    with replacing(path) as tmp:
        tmp.write_bytes(data)
