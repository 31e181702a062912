"""Sharded expansion: shard ``i`` of ``N`` of an expansion as the unit of work.

Shard i holds output rows ``i * T // N .. (i + 1) * T // N - 1`` of what :func:`expand` returns
for the same arguments, so the shards in order are exactly that array, and any shard can be
written on any machine, in any order, by any number of processes (a job array, Ray tasks).

A folder of shards::

    DIR/{name}-{i:05d}-of-{N:05d}.h5 (or .tar)   the shards (HDF5 in the loaders' layout, or
                                                  WebDataset tar, see :mod:`dlsets.tarshards`)
    DIR/.{shard file}.json                        each shard's manifest entry and the settings
                                                  (hidden, so shard readers list only shards)
    DIR/index.json                                every entry, once every shard is present

A shard is written to a temporary file and renamed; then its entry (count, rows, class counts,
size and sha256 of the file, sha256 of its images and labels) is written beside it. A shard
whose file and entry match the settings and whose file hashes to its entry is never rewritten;
anything else under its name is. A folder holding shards of other settings is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import replacing
from .errors import FormatError, OptionError

log = logging.getLogger("dlsets")

FORMATS = {"hdf5": ".h5", "webdataset": ".tar"}
INDEX = "index.json"
KIND = "dlsets.shards"
SHARD_BYTES = 256 << 20  # default shard size: within WebDataset's advice of 100 MB to 1 GB
_SHARD = re.compile(r"(?P<name>.+)-(?P<i>\d{5,})-of-(?P<n>\d{5,})\.(?:h5|tar)")
_SIDECAR = re.compile(r"\.(?P<file>.+-\d{5,}-of-\d{5,}\.(?:h5|tar))\.json")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
_HASH_BLOCK = 1 << 26


# ---------------------------------------------------------------------------- naming
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


def _sidecar(folder: Path, file: str) -> Path:
    return folder / f".{file}.json"


# ---------------------------------------------------------------------------- the expansion
@dataclass
class _Expansion:
    """Everything the shards of one expansion share."""

    x: np.ndarray
    y: np.ndarray
    src: Any  # CopySources
    augmenter: Any
    folder: Path
    settings: dict
    key: str
    chunk_size: int
    channels: str | None
    files: list[str] = field(default_factory=list)

    @property
    def target(self) -> int:
        return self.settings["target"]

    @property
    def shards(self) -> int:
        return self.settings["shards"]


def _sha256_array(a: np.ndarray) -> str:
    h = hashlib.sha256()
    flat = a.reshape(len(a), -1) if a.ndim > 1 else a.reshape(-1, 1)
    rows = max(1, _HASH_BLOCK // max(1, flat.shape[1] * a.dtype.itemsize))
    for s in range(0, len(flat), rows):
        h.update(np.ascontiguousarray(flat[s:s + rows]))
    return h.hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _labels64(y: np.ndarray) -> np.ndarray:
    """Labels in one canonical dtype, so the same values hash the same in any integer dtype."""
    return np.asarray(y).astype("<i8")


def _prepare(
    x, y, target, out, *, shards, augmenter, balance, keep_originals, seed, channels, format,
    name, classes, compression, chunk_size, shard=None,
) -> _Expansion:
    from .augment import params
    from .augment.expand import _check_xy, _chunk, _count, _resolve, class_names, copy_sources

    dataset = None
    if isinstance(x, str):
        from .loaders import load

        if y is not None:
            raise OptionError(f"x={x!r} names a dataset: give y=None (its labels are used)")
        dataset = x
        ds = load(x)
        x, y = ds.train.images, ds.train.labels
        classes = ds.classes if classes is None else classes
    x, y = _check_xy(x, y, channels)
    target = _count("target", target, 1)
    seed = params.check_seed(seed)
    if format not in FORMATS:
        raise OptionError(f"format={format!r} is not allowed: give one of {list(FORMATS)}")
    if compression not in (None, "gzip", "lzf") or (compression and format != "hdf5"):
        raise OptionError(f"compression={compression!r} is not allowed: give None, or 'gzip' "
                          "or 'lzf' for HDF5 shards")
    shards = _count("shards", shards, 1)
    if shards > target:
        raise OptionError(f"shards={shards} is more than the target of {target} samples: every "
                          f"shard needs at least one sample; give shards <= {target}")
    name = dataset if name is None else name
    name = "augmented" if name is None else str(name)
    if not _NAME.fullmatch(name):
        raise OptionError(f"name={name!r} is not allowed in shard file names: use letters, "
                          "digits, '.', '_', '+' and '-' (at most 100), starting with a letter "
                          "or digit")
    if len(y) and int(y.min()) < 0:
        raise OptionError(f"labels go down to {int(y.min())}: shard labels must be >= 0")
    if format == "hdf5" and len(y) and int(y.max()) > 255:
        raise OptionError(f"labels go up to {int(y.max())}, which does not fit the HDF5 "
                          "layout's uint8 labels (0..255): use format='webdataset'")
    names = class_names(y, classes)
    src = copy_sources(y, target, balance=balance, keep_originals=keep_originals, seed=seed)
    aug = _resolve(augmenter, seed, len(src))
    settings = {
        "name": name,
        "format": format,
        "target": target,
        "shards": shards,
        "source": {  # identified by content: a dataset name and its arrays give one key
            "count": len(x),
            "image_shape": list(x.shape[1:]),
            "dtype": x.dtype.str,
            "images_sha256": _sha256_array(x),
            "labels_sha256": _sha256_array(_labels64(y)),
        },
        "augmenter": repr(aug),
        "balance": bool(balance),
        "keep_originals": bool(keep_originals),
        "seed": seed,
        "channels": channels or "last",
        "compression": compression,
        "classes": names,
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    exp = _Expansion(x, y, src, aug, Path(out), settings, key, _chunk(x, chunk_size), channels,
                     [shard_file(name, i, shards, format) for i in range(shards)])
    _check_folder(exp, shard)
    return exp


# ---------------------------------------------------------------------------- the folder
def _read_json(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError):
        log.info("%s cannot be read as JSON: treated as missing", path)
        return None
    return data if isinstance(data, dict) else None


def _differences(theirs: dict, ours: dict) -> str:
    out = []
    for k in sorted(set(theirs) | set(ours)):
        a, b = theirs.get(k), ours.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"source {d}" for d in _differences(a, b).split("; ") if d]
        elif a != b:
            out.append(f"{k} {a!r} there, {b!r} here")
    return "; ".join(out)


def _conflict(exp: _Expansion, shown: str, theirs: dict | None) -> OptionError:
    what = (_differences(theirs, exp.settings) if isinstance(theirs, dict)
            else "other shard names or counts")
    return OptionError(
        f"{exp.folder} holds the shards of another expansion ({shown}: {what or 'other'}); "
        "nothing was written. Give another output folder, or delete those files first to "
        "replace them.")


def _check_folder(exp: _Expansion, shard: int | None = None) -> None:
    """Refuse a folder that holds another expansion's shards, index or entries.

    Every entry is read when ``shard`` is None (a run of all shards); for one shard, only the
    index, its own entry and two others, so that each task of a large array costs O(1) reads
    (one listing aside): one expansion's entries all carry the same key.
    """
    folder = exp.folder
    if folder.exists() and not folder.is_dir():
        raise OptionError(f"{folder} is a file, not a folder: give a folder for the shards")
    if not folder.is_dir():
        return
    doc = _read_json(folder / INDEX)
    if doc is not None and doc.get("key") != exp.key:
        raise _conflict(exp, INDEX, doc.get("settings"))
    ours = set(exp.files)
    entries = []
    for name in sorted(os.listdir(folder)):
        if m := _SIDECAR.fullmatch(name):
            if m["file"] not in ours:
                meta = _read_json(folder / name) or {}
                raise _conflict(exp, f"the entry of {m['file']}", meta.get("settings"))
            entries.append((m["file"] != exp.files[shard] if shard is not None else 0, name))
        elif _SHARD.fullmatch(name) and name not in ours:
            raise _conflict(exp, name, None)
    entries.sort()  # this shard's own entry first
    for _, name in entries if shard is None else entries[:3]:
        meta = _read_json(folder / name)
        if meta is not None and meta.get("key") != exp.key:
            raise _conflict(exp, f"the entry of {name[1:-5]}", meta.get("settings"))


# ---------------------------------------------------------------------------- one shard
def _present(exp: _Expansion, shard: int) -> dict | None:
    """The entry of shard ``shard`` if its file is there, complete and as recorded."""
    file = exp.files[shard]
    path = exp.folder / file
    meta = _read_json(_sidecar(exp.folder, file))
    if meta is None or meta.get("key") != exp.key or not path.is_file():
        return None
    entry = meta.get("entry") or {}
    rows = list(shard_rows(exp.target, exp.shards, shard))
    if entry.get("rows") != rows or entry.get("size") != path.stat().st_size:
        log.info("%s does not match its entry: rewriting it", path)
        return None
    if _sha256_file(path) != entry.get("sha256"):
        log.info("%s does not hash to its entry: rewriting it", path)
        return None
    return entry


def _write(exp: _Expansion, shard: int, advance: Callable[[int], None]) -> dict:
    from .augment.expand import _produce

    folder, file = exp.folder, exp.files[shard]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from . import space

        err = space.write_error(exc, folder, None, f"writing shards into {folder}")
        if err is exc:
            raise
        raise err from None
    # temporaries of killed writers: removed by atomic.replacing as it starts this one
    path = folder / file
    lo, hi = shard_rows(exp.target, exp.shards, shard)
    s = exp.settings
    kept = s["source"]["count"] if s["keep_originals"] else 0
    originals = max(0, min(hi, kept) - lo)
    hashes = hashlib.sha256(), hashlib.sha256()
    counts = np.zeros(len(s["classes"]), np.int64)

    def account(images: np.ndarray, labels: np.ndarray) -> None:
        hashes[0].update(np.ascontiguousarray(images))
        hashes[1].update(_labels64(labels))
        counts[:] += np.bincount(labels, minlength=len(counts))[:len(counts)]

    log.info("writing shard %d of %d (rows %d..%d) to %s", shard, exp.shards, lo, hi - 1, path)
    produce = dict(x=exp.x, y=exp.y, src=exp.src, keep_originals=s["keep_originals"],
                   augmenter=exp.augmenter, chunk_size=exp.chunk_size, advance=advance,
                   channels=exp.channels, rows=(lo, hi))
    file_sha256 = None
    if s["format"] == "hdf5":
        from .h5 import atomic_hdf5, create_split, write_attrs

        # The folder was checked as this expansion's (_check_folder): a damaged shard of it,
        # unreadable, is rewritten like any other.
        with atomic_hdf5(path, overwrite=True) as f:
            images, labels = create_split(f, "train", hi - lo, exp.x.shape[1:],
                                          dtype=exp.x.dtype, compression=s["compression"])

            def write(pos: int, chunk: np.ndarray, lab: np.ndarray) -> None:
                images[pos - lo:pos - lo + len(chunk)] = chunk
                labels[pos - lo:pos - lo + len(lab)] = lab
                account(chunk, lab)

            _produce(write=write, **produce)
            # the single-file layout's attributes, plus where this shard sits
            write_attrs(f, s["classes"], originals=originals, seed=s["seed"],
                        augmenter=s["augmenter"], channels=s["channels"], shard=shard,
                        shards=exp.shards, first_row=lo, target=exp.target)
    else:
        from .tarshards import TarShardWriter

        with replacing(path) as tmp, open(tmp, "wb") as raw:
            fh = _HashingWriter(raw)  # the file's hash as it is written: no second read
            writer = TarShardWriter(fh, exp.x.shape[1:], exp.x.dtype)

            def write(pos: int, chunk: np.ndarray, lab: np.ndarray) -> None:
                writer.write(pos, chunk, lab)
                account(chunk, lab)

            _produce(write=write, **produce)
            writer.close()
        file_sha256 = fh.sha256.hexdigest()
    entry = {
        "shard": shard,
        "file": file,
        "rows": [lo, hi],
        "count": hi - lo,
        "originals": originals,
        "class_counts": counts.tolist(),
        "size": path.stat().st_size,
        "sha256": file_sha256 or _sha256_file(path),
        "images_sha256": hashes[0].hexdigest(),
        "labels_sha256": hashes[1].hexdigest(),
    }
    _write_json(_sidecar(folder, file), {"key": exp.key, "entry": entry, "settings": s})
    return entry


class _HashingWriter:
    """A binary file that hashes what is written to it."""

    def __init__(self, f) -> None:
        self.f, self.sha256 = f, hashlib.sha256()

    def write(self, data) -> int:
        self.sha256.update(data)
        return self.f.write(data)


def _write_json(path: Path, doc: dict) -> None:
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    try:
        if path.read_text(encoding="utf-8") == text:
            return  # idempotent: the same document is not rewritten
    except (OSError, UnicodeDecodeError):
        pass
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _run(exp: _Expansion, shard: int, advance: Callable[[int], None]) -> tuple[dict, bool]:
    """Shard ``shard``'s entry, and whether it was written (False: present and verified)."""
    entry = _present(exp, shard)
    if entry is not None:
        log.info("%s is present and verifies: kept", exp.folder / exp.files[shard])
        advance(entry["count"])
        return entry, False
    return _write(exp, shard, advance), True


# ---------------------------------------------------------------------------- the index
def _index_doc(settings: dict, key: str, entries: list[dict]) -> dict:
    from . import __version__

    counts = np.sum([e["class_counts"] for e in entries], axis=0).astype(int).tolist()
    return {
        "kind": KIND,
        "version": 1,
        "created_by": f"dlsets {__version__}",
        "key": key,
        "dataset": settings["name"],
        "format": settings["format"],
        "count": settings["target"],
        "image_shape": settings["source"]["image_shape"],
        "dtype": settings["source"]["dtype"],
        "channels": settings["channels"],
        "classes": settings["classes"],
        "class_counts": counts,
        "originals": sum(e["originals"] for e in entries),
        "seed": settings["seed"],
        "augmenter": settings["augmenter"],
        "files": [e["file"] for e in entries],
        "shards": entries,
        "settings": settings,
    }


def _complete_entries(folder: Path, settings: dict, key: str) -> list[dict] | None:
    """Every shard's entry if every shard file is present with its entry's size, else None."""
    files = [shard_file(settings["name"], i, settings["shards"], settings["format"])
             for i in range(settings["shards"])]
    if not set(files) <= set(os.listdir(folder)):  # one listing: most calls stop here
        return None
    entries = []
    for f in files:
        meta = _read_json(_sidecar(folder, f))
        if meta is None or meta.get("key") != key:
            return None
        entry = meta.get("entry") or {}
        if entry.get("size") != (folder / f).stat().st_size:
            return None
        entries.append(entry)
    return entries


def _write_index(folder: Path, settings: dict, key: str,
                 entries: list[dict] | None = None) -> Path | None:
    entries = entries if entries is not None else _complete_entries(folder, settings, key)
    if entries is None:
        return None
    path = folder / INDEX
    _write_json(path, _index_doc(settings, key, entries))
    return path


def read_index(folder: str | os.PathLike) -> dict:
    """The parsed ``index.json`` of a folder of shards; FormatError if there is none yet."""
    folder = Path(folder)
    doc = _read_json(folder / INDEX)
    if doc is None:
        present = sorted(p.name for p in folder.glob("*") if _SHARD.fullmatch(p.name)) \
            if folder.is_dir() else []
        raise FormatError(
            f"{folder / INDEX} does not exist or cannot be read: the expansion is not complete "
            f"({len(present)} shard file(s) there). Run the remaining shards (or `dlsets "
            f"verify {folder}/` to see which are missing).")
    if doc.get("kind") != KIND or not isinstance(doc.get("shards"), list):
        raise FormatError(f"{folder / INDEX} is not a dlsets shard index")
    return doc


# ---------------------------------------------------------------------------- public API
def expand_shard(
    x: np.ndarray | str,
    y: np.ndarray | None,
    target: int,
    out: str | os.PathLike,
    *,
    shard: int,
    shards: int,
    augmenter: object = None,
    balance: bool = True,
    keep_originals: bool = True,
    seed: int = 0,
    channels: str | None = None,
    format: str = "hdf5",
    name: str | None = None,
    classes: Sequence[str] | None = None,
    compression: str | None = None,
    chunk_size: int | None = None,
    progress: bool | None = None,
    index: bool = True,
) -> dict:
    """Write shard ``shard`` of ``shards`` of ``expand(x, y, target, ...)`` into folder ``out``;
    return its manifest entry (dict: shard, file, rows [lo, hi), count, originals, class_counts,
    size, sha256 of the file, images_sha256, labels_sha256).

    ``x`` and ``y`` as for :func:`~dlsets.augment.expand`, or ``x`` a dataset name and
    ``y=None`` (its train split). The file is ``{name}-{shard:05d}-of-{shards:05d}.h5`` (HDF5,
    ``/train/images`` and ``/train/labels`` as ``expand_to_hdf5`` writes) or ``.tar``
    (``format="webdataset"``); ``name`` defaults to the dataset's name, else "augmented".
    Idempotent: a shard already there that verifies is kept, anything else under its name is
    replaced. ``index=True`` writes ``out/index.json`` when this shard completes the set.
    OptionError if ``out`` holds shards of other settings (nothing is written then).
    """
    from .augment.expand import _count
    from .progress import bar

    shards = _count("shards", shards, 1)
    if isinstance(shard, bool) or not isinstance(shard, (int, np.integer)) or not (
            0 <= shard < shards):
        raise OptionError(f"shard={shard!r} is not allowed: give a shard number in "
                          f"0..{shards - 1} (shards={shards})")
    exp = _prepare(x, y, target, out, shards=shards, augmenter=augmenter, balance=balance,
                   keep_originals=keep_originals, seed=seed, channels=channels, format=format,
                   name=name, classes=classes, compression=compression, chunk_size=chunk_size,
                   shard=int(shard))
    lo, hi = shard_rows(exp.target, exp.shards, int(shard))
    with bar(hi - lo, f"shard {shard}", progress=progress, unit="img") as pbar:
        entry, _ = _run(exp, int(shard), pbar.update)
    if index:
        _write_index(exp.folder, exp.settings, exp.key)
    return entry


def expand_to_shards(
    x: np.ndarray | str,
    y: np.ndarray | None,
    target: int,
    out: str | os.PathLike,
    *,
    shards: int | None = None,
    augmenter: object = None,
    balance: bool = True,
    keep_originals: bool = True,
    seed: int = 0,
    channels: str | None = None,
    format: str = "hdf5",
    name: str | None = None,
    classes: Sequence[str] | None = None,
    compression: str | None = None,
    chunk_size: int | None = None,
    progress: bool | None = None,
) -> Path:
    """Write every shard of an expansion (as :func:`expand_shard`, one after the other, in
    this process) and ``out/index.json``; return the index's path. Shards already present
    and verified are kept. ``shards`` defaults to one per ~256 MB of pixels."""
    from .progress import bar

    if shards is None:
        shape, dtype = _shape_dtype(x, channels)
        shards = default_shards(int(target), shape, dtype)
    exp = _prepare(x, y, target, out, shards=shards, augmenter=augmenter, balance=balance,
                   keep_originals=keep_originals, seed=seed, channels=channels, format=format,
                   name=name, classes=classes, compression=compression, chunk_size=chunk_size)
    entries = []
    with bar(exp.target, "augment", progress=progress, unit="img") as pbar:
        for i in range(exp.shards):
            entries.append(_run(exp, i, pbar.update)[0])
    return _write_index(exp.folder, exp.settings, exp.key, entries)


def _shape_dtype(x, channels) -> tuple[tuple[int, ...], np.dtype]:
    if isinstance(x, str):
        from .registry import get

        return tuple(get(x).image_shape), np.dtype(np.uint8)
    x = np.asarray(x) if not hasattr(x, "shape") else x
    return tuple(x.shape[1:]), np.dtype(x.dtype)


@dataclass
class ShardReport:
    """What :func:`verify_shards` found in a folder of shards."""

    folder: Path
    shards: int
    ok: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    index: str = "missing"  # "present", "written" or "missing"
    problem: str | None = None  # the folder is not a (single) expansion's

    @property
    def complete(self) -> bool:
        return self.problem is None and len(self.ok) == self.shards and self.index != "missing"

    def describe(self) -> list[str]:
        where = f"{self.folder}/"
        if self.problem:
            return [f"{where}: {self.problem}"]
        lines = [f"{where}{f}: damaged (its bytes do not hash to its entry)"
                 for f in self.damaged]
        lines += [f"{where}{f}: missing" for f in self.missing]
        state = {"present": "index.json: ok", "written": "wrote index.json",
                 "missing": "no index.json yet"}[self.index]
        lines.append(f"{where}: {len(self.ok)} of {self.shards} shards verified; {state}")
        if self.damaged or self.missing:
            lines.append(f"{where}: run the same augment command again: it writes only the "
                         "shards that are missing or damaged")
        return lines


def verify_shards(folder: str | os.PathLike, *, repair: bool = True,
                  progress: bool | None = None) -> ShardReport:
    """Hash every shard in ``folder`` against its entry (index.json, else the shards' own
    entries); with ``repair``, write index.json when every shard verifies and it is missing.
    Nothing is deleted: a damaged or missing shard is rewritten by running its expansion
    again."""
    from .progress import bar

    folder = Path(folder)
    doc = _read_json(folder / INDEX)
    if doc is not None and doc.get("kind") == KIND:
        settings, key = doc.get("settings") or {}, doc.get("key")
        entries = {e.get("file"): e for e in doc.get("shards", []) if isinstance(e, dict)}
    else:
        metas = [m for p in sorted(folder.glob(".*.json")) if _SIDECAR.fullmatch(p.name)
                 and (m := _read_json(p)) is not None]
        keys = {m.get("key") for m in metas}
        if not folder.is_dir() or not metas:
            return ShardReport(folder, 0, problem="no dlsets shards or index.json here")
        if len(keys) > 1:
            return ShardReport(folder, 0, problem="holds the shards of more than one expansion")
        settings, key = metas[0].get("settings") or {}, metas[0]["key"]
        entries = {m["entry"]["file"]: m["entry"] for m in metas if "entry" in m}
    try:
        files = [shard_file(settings["name"], i, settings["shards"], settings["format"])
                 for i in range(settings["shards"])]
    except (KeyError, TypeError, ValueError):
        return ShardReport(folder, 0, problem="index.json or a shard entry is malformed")
    report = ShardReport(folder, len(files), index="present" if doc else "missing")
    with bar(sum(e.get("size", 0) for e in entries.values()), "verify", progress=progress,
             unit="B") as pbar:
        for f in files:
            path, entry = folder / f, entries.get(f)
            if entry is None or not path.is_file():
                report.missing.append(f)
            elif path.stat().st_size == entry.get("size") and _sha256_file(path) == entry.get(
                    "sha256"):
                report.ok.append(f)
            else:
                report.damaged.append(f)
            pbar.update(entry.get("size", 0) if entry else 0)
    if repair and report.index == "missing" and len(report.ok) == len(files):
        _write_index(folder, settings, key, [entries[f] for f in files])
        report.index = "written"
    return report
