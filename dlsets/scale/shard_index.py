"""What a folder of shards says about itself, checked before it is believed.

``index.json`` and the hidden per-shard entries (``.{shard}.json``) are read as small regular
files (a FIFO, a device or a file over the cap is refused, never read), and every field the
readers use is type- and range-checked: file names are single path components confined to the
folder (:mod:`dlsets.store.names`), rows tile ``0 .. count`` in order, counts add up. Each shard a
reader opens is checked against its entry (rows, first row, shape, dtype) so that swapped or
foreign files are refused cheaply; ``verify=True`` hashes them too. Every defect is one
:class:`FormatError` naming the file. The writers read entries leniently (a damaged one is
rewritten) and write ``index.json`` from the entries once every shard is there.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from pathlib import Path

import numpy as np

from ..errors import FormatError, OptionError
from .layout import FORMATS, INDEX, KIND, SHARD_FILE, sha256_file, shard_file, sidecar, write_json

log = logging.getLogger("dlsets")

#: index.json at most this many bytes: about 100,000 shards' entries with 1,000 class counts
#: each; parsing it costs a few times this in memory
MAX_INDEX_BYTES = 256 << 20
#: one shard's hidden entry (its settings hold the class names: up to ~1M short names)
MAX_ENTRY_BYTES = 16 << 20
MAX_SHARDS = 1_000_000
MAX_SAMPLE_BYTES = 1 << 31  # one image (or mask) of a shard
_HEX = re.compile(r"[0-9a-f]{64}")
_FILE = re.compile(r".+-\d{5,}-of-\d{5,}\.(h5|tar)")
_EXT = {"hdf5": "h5", "webdataset": "tar"}


def read_small_json(path: str | os.PathLike, cap: int, what: str = "file") -> object | None:
    """The JSON in ``path``, None if there is none; FormatError if it is not a regular file
    of at most ``cap`` bytes holding JSON. Opened non-blocking, so a FIFO cannot hang it."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FormatError(f"{path}: the {what} cannot be opened ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FormatError(f"{path}: the {what} is not a regular file (a device, FIFO or "
                              "folder): refusing to read it")
        if st.st_size > cap:
            raise FormatError(f"{path}: the {what} is {st.st_size:,} bytes, more than the "
                              f"{cap:,} it may take: refusing to read it")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(cap + 1)
    except OSError as exc:
        raise FormatError(f"{path}: the {what} cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > cap:
        raise FormatError(f"{path}: the {what} grew past {cap:,} bytes as it was read")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FormatError(f"{path}: the {what} is not JSON ({type(exc).__name__})") from None


# ---------------------------------------------------------------------------- field checks
class _Bad(Exception):
    """One field's defect; turned into a FormatError naming the file."""


def _int(v, what: str, lo: int = 0, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise _Bad(f"{what} is {v!r}, not an integer {rng}")
    return v


def _list(v, what: str, n: int | None = None) -> list:
    if not isinstance(v, list) or (n is not None and len(v) != n):
        raise _Bad(f"{what} is {_short(v)}, not a list" + (f" of {n}" if n is not None else ""))
    return v


def _hex(v, what: str) -> str:
    if not isinstance(v, str) or not _HEX.fullmatch(v):
        raise _Bad(f"{what} is {_short(v)}, not a sha256 in hex")
    return v


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def check_file_name(folder: Path, file: object, format: str | None = None) -> Path:
    """``folder / file`` for a shard file name from an index or entry, else FormatError."""
    try:
        path = _confined(folder, file)
    except _Bad as exc:
        raise FormatError(f"{folder}: {exc}") from None
    m = _FILE.fullmatch(file)
    if m is None or (format is not None and m[1] != _EXT[format]):
        raise FormatError(f"{folder}: shard file name {file!r} is not NAME-#####-of-#####."
                          f"{_EXT.get(format, 'h5 or .tar')}")
    return path


def _component(file: object) -> None:
    from ..store.names import check_component

    try:
        check_component(file, "shard file")
    except OptionError as exc:
        raise _Bad(str(exc)) from None


def _confined(folder: Path, file: object) -> Path:
    from ..store.names import confined

    try:
        return confined(folder, file, what="shard file")
    except OptionError as exc:
        raise _Bad(str(exc)) from None


def check_entry(e: object, *, n_classes: int | None = None, format: str | None = None,
                masks: bool = False) -> dict:
    """One shard's entry with every field checked (raises _Bad)."""
    if not isinstance(e, dict):
        raise _Bad(f"a shard entry is {_short(e)}, not an object")
    _int(e.get("shard"), "shard", 0, MAX_SHARDS)
    file = e.get("file")
    if not isinstance(file, str) or not _FILE.fullmatch(file) or (
            format is not None and not file.endswith("." + _EXT[format])):
        raise _Bad(f"file is {_short(file)}, not a shard file name")
    rows = _list(e.get("rows"), "rows", 2)
    lo, hi = _int(rows[0], "rows[0]"), _int(rows[1], "rows[1]", 1)
    if lo >= hi:
        raise _Bad(f"rows {rows} are empty or reversed")
    count = _int(e.get("count"), "count", 1)
    if count != hi - lo:
        raise _Bad(f"count {count} is not rows {rows}' {hi - lo}")
    _int(e.get("originals"), "originals", 0, count)
    cc = _list(e.get("class_counts"), "class_counts", n_classes)
    if sum(_int(c, "a class count") for c in cc) != count:
        raise _Bad(f"class_counts add up to {sum(cc)}, not count {count}")
    _int(e.get("size"), "size")
    for k in ("sha256", "images_sha256", "labels_sha256") + (("masks_sha256",) if masks else ()):
        _hex(e.get(k), k)
    return e


def check_index(doc: object, path: Path) -> dict:
    """A parsed index.json with every field a reader uses checked; FormatError naming it."""
    try:
        return _check_index(doc, path.parent)
    except _Bad as exc:
        raise FormatError(f"{path}: {exc}: the index is damaged or not dlsets'. Run `dlsets "
                          f"verify {path.parent}/` (it rewrites it from the shards' entries)"
                          ) from None


def _check_index(doc: object, folder: Path) -> dict:
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise _Bad("not a dlsets shard index (no kind 'dlsets.shards')")
    _int(doc.get("version"), "version", 1, 1)
    if doc.get("format") not in FORMATS:
        raise _Bad(f"format is {_short(doc.get('format'))}, not one of {list(FORMATS)}")
    count = _int(doc.get("count"), "count", 1)
    check_sample(doc.get("image_shape"), doc.get("dtype"), "image")
    if doc.get("channels") not in ("first", "last"):
        raise _Bad(f"channels is {_short(doc.get('channels'))}, not 'first' or 'last'")
    classes = _list(doc.get("classes"), "classes")
    if not all(isinstance(c, str) for c in classes):
        raise _Bad("classes are not all strings")
    masks = "mask_shape" in doc
    if masks:
        check_sample(doc.get("mask_shape"), doc.get("mask_dtype"), "mask")
    if not isinstance(doc.get("settings"), dict) or not isinstance(doc.get("key"), str):
        raise _Bad("settings or key missing")
    entries = _list(doc.get("shards"), "shards")
    if not 1 <= len(entries) <= MAX_SHARDS:
        raise _Bad(f"{len(entries)} shards listed (1..{MAX_SHARDS} allowed)")
    at, files = 0, set()
    for i, e in enumerate(entries):
        try:
            check_entry(e, n_classes=len(classes), format=doc["format"], masks=masks)
        except _Bad as exc:
            raise _Bad(f"shard entry {i}: {exc}") from None
        if e["shard"] != i or e["rows"][0] != at:
            raise _Bad(f"shard entry {i} is shard {e['shard']} at rows {e['rows']}: the "
                       f"entries must be shards 0, 1, ... in order, rows from 0 without gaps")
        if e["file"] in files:
            raise _Bad(f"shard file {e['file']} is listed twice")
        _component(e["file"])  # symbolic links: checked as each shard is opened
        files.add(e["file"])
        at = e["rows"][1]
    if at != count:
        raise _Bad(f"the shards hold rows 0..{at - 1}, but count is {count}")
    if doc.get("files") != [e["file"] for e in entries]:
        raise _Bad("files does not list the shards' files in order")
    return doc


def check_sample(shape: object, dtype: object, what: str) -> np.dtype:
    """The dtype of one image (or mask) of ``shape``: plain numbers, a bounded size."""
    shape = _list(shape, f"{what}_shape")
    if not 2 <= len(shape) <= 3:
        raise _Bad(f"{what}_shape {shape} is not (H, W) or 3 dimensions")
    for d in shape:
        _int(d, f"a {what}_shape dimension", 1, 1 << 20)
    try:
        dt = np.dtype(dtype) if isinstance(dtype, str) else None
    except TypeError:
        dt = None
    if dt is None or dt.kind not in "biuf" or dt.fields is not None or dt.itemsize > 8:
        raise _Bad(f"{what} dtype {_short(dtype)} is not a plain numeric dtype")
    if int(np.prod(shape, dtype=object)) * dt.itemsize > MAX_SAMPLE_BYTES:
        raise _Bad(f"one {what} of {shape} {dt} is over {MAX_SAMPLE_BYTES:,} bytes")
    return dt


def read_entry(path: Path, format: str | None = None) -> dict | None:
    """A shard's hidden entry file (key, entry, settings), checked; None if there is none;
    FormatError naming it if it is damaged."""
    meta = read_small_json(path, MAX_ENTRY_BYTES, "shard entry")
    if meta is None:
        return None
    try:
        if not isinstance(meta, dict) or not isinstance(meta.get("key"), str) or \
                not isinstance(meta.get("settings"), dict):
            raise _Bad("not a dlsets shard entry (key, entry, settings)")
        s = meta["settings"]
        n = len(s["classes"]) if isinstance(s.get("classes"), list) else None
        check_entry(meta.get("entry"), n_classes=n, format=format,
                    masks=isinstance(s.get("source"), dict) and "masks_sha256" in s["source"])
        if f".{meta['entry']['file']}.json" != path.name:
            raise _Bad(f"it is the entry of {meta['entry']['file']!r}, not of its own shard")
    except _Bad as exc:
        raise FormatError(f"{path}: {exc}") from None
    return meta


# ---------------------------------------------------------------------------- opening shards
def check_hdf5_shard(f, path: Path, entry: dict, doc: dict) -> None:
    """An open HDF5 shard is the one its entry describes: its own shard number and first row
    (so swapped files of one size are refused), and datasets of the recorded shape and dtype,
    stored in the file itself."""
    from ..formats.h5 import check_filters, check_stored_here

    count = entry["count"]
    want = {"shard": entry["shard"], "first_row": entry["rows"][0],
            "shards": doc["nshards"] if "nshards" in doc else len(doc["shards"]),
            "target": doc["count"]}
    for k, v in want.items():
        got = f.attrs.get(k)
        if got is None or np.ndim(got) != 0 or int(got) != v:
            raise FormatError(f"{path}: its {k} is {_short(got)}, but the index records {v} "
                              "for it: the files were swapped or replaced. Run `dlsets verify "
                              f"{path.parent}/`")
    parts = [("images", (count, *doc["image_shape"]), doc["dtype"]), ("labels", (count,), None)]
    if "mask_shape" in doc:
        parts.append(("masks", (count, *doc["mask_shape"]), doc["mask_dtype"]))
    for name, shape, dtype in parts:
        ds = f.get(f"train/{name}")
        if ds is None or not hasattr(ds, "shape") or ds.shape != shape or (
                dtype is not None and ds.dtype != np.dtype(dtype)) or (
                dtype is None and ds.dtype.kind not in "ui"):
            got = "none" if ds is None else f"{getattr(ds, 'dtype', '?')} " \
                                             f"{getattr(ds, 'shape', '?')}"
            raise FormatError(f"{path}: /train/{name} is {got}, not the {dtype or 'integer'} "
                              f"{shape} its index records: run `dlsets verify {path.parent}/`")
        check_stored_here(f, ds, path)
        check_filters(ds, path)


def check_labels(labels: np.ndarray, path: Path, n_classes: int) -> np.ndarray:
    if len(labels) and int(labels.max()) >= n_classes:
        raise FormatError(f"{path}: label {int(labels.max())} is not one of the index's "
                          f"{n_classes} classes: run `dlsets verify {path.parent}/`")
    return labels


def verify_file(path: Path, entry: dict) -> None:
    """The full check: ``path`` has its entry's size and sha256."""
    if path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
        raise FormatError(f"{path} does not hash to its entry in index.json (damaged or "
                          f"replaced): run `dlsets verify {path.parent}/`, then the expansion "
                          "again to rewrite it")


# ---------------------------------------------------------------------------- the writers' side
def read_json_or_none(path: Path, cap: int | None = None) -> dict | None:
    """A small JSON object the writers read (index, entries); None if missing or unreadable
    (they rewrite what they cannot read). Bounded: see :func:`read_small_json`."""
    try:
        data = read_small_json(path, cap or MAX_ENTRY_BYTES)
    except FormatError as exc:
        log.info("%s: treated as missing", exc)
        return None
    return data if isinstance(data, dict) else None


def entry_or_none(path: Path, format: str | None = None) -> dict | None:
    """A shard's checked entry file; None if missing or damaged (its shard is rewritten)."""
    try:
        return read_entry(path, format)
    except FormatError as exc:
        log.info("%s: treated as missing", exc)
        return None


def _index_doc(settings: dict, key: str, entries: list[dict]) -> dict:
    from ..common.version import __version__

    counts = np.sum([e["class_counts"] for e in entries], axis=0).astype(int).tolist()
    source = settings["source"]
    masks = {"mask_shape": source["mask_shape"], "mask_dtype": source["mask_dtype"]} \
        if "mask_shape" in source else {}
    return masks | {
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
        meta = entry_or_none(sidecar(folder, f), settings["format"])
        if meta is None or meta.get("key") != key:
            return None
        entry = meta["entry"]
        if entry.get("size") != (folder / f).stat().st_size:
            return None
        entries.append(entry)
    return entries


def write_index(folder: Path, settings: dict, key: str,
                entries: list[dict] | None = None) -> Path | None:
    """Write ``folder/index.json`` from ``entries`` (default: the shards' own entries, when
    every shard is there); its path, or None while shards are missing."""
    entries = entries if entries is not None else _complete_entries(folder, settings, key)
    if entries is None:
        return None
    path = folder / INDEX
    write_json(path, _index_doc(settings, key, entries))
    return path


def read_index(folder: str | os.PathLike) -> dict:
    """The parsed and checked ``index.json`` of a folder of shards (see
    :mod:`dlsets.scale.shard_index`); FormatError if there is none yet or it is damaged."""
    folder = Path(folder)
    doc = read_small_json(folder / INDEX, MAX_INDEX_BYTES, "shard index")
    if doc is None:
        present = sorted(p.name for p in folder.glob("*") if SHARD_FILE.fullmatch(p.name)) \
            if folder.is_dir() else []
        raise FormatError(
            f"{folder / INDEX} does not exist: the expansion is not complete "
            f"({len(present)} shard file(s) there). Run the remaining shards (or `dlsets "
            f"verify {folder}/` to see which are missing).")
    return check_index(doc, folder / INDEX)
