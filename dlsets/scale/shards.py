"""Sharded expansion: shard ``i`` of ``N`` of an expansion as the unit of work.

Shard i holds output rows ``i * T // N .. (i + 1) * T // N - 1`` of what :func:`expand` returns
for the same arguments, so the shards in order are exactly that array, and any shard can be
written on any machine, in any order, by any number of processes (a job array, Ray tasks).

A folder of shards::

    DIR/{name}-{i:05d}-of-{N:05d}.h5 (or .tar)   the shards (HDF5 in the loaders' layout, or
                                                  WebDataset tar, see :mod:`dlsets.scale.tarshards`)
    DIR/.{shard file}.json                        each shard's manifest entry and the settings
                                                  (hidden, so shard readers list only shards)
    DIR/index.json                                every entry, once every shard is present

A shard is written to a temporary file and renamed; then its entry (count, rows, class counts,
size and sha256 of the file, sha256 of its images and labels) is written beside it. A shard
whose file and entry match the settings and whose file hashes to its entry is never rewritten;
anything else under its name is. A folder holding shards of other settings is refused.
File names and hashes are in :mod:`dlsets.scale.layout`; index.json is written and read by
:mod:`dlsets.scale.shard_index`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OptionError
from ..store.atomic import replacing
from .layout import (  # noqa: F401  (KIND, SHARD_BYTES: importable from here as before)
    FORMATS,
    INDEX,
    KIND,
    NAME,
    SHARD_BYTES,
    SHARD_FILE,
    SIDECAR,
    default_shards,
    labels64,
    sha256_array,
    sha256_file,
    shard_file,
    shard_rows,
    sidecar,
    write_json,
)
from .shard_claim import released_on_failure
from .shard_index import entry_or_none, read_index, read_json_or_none, write_index  # noqa: F401

log = logging.getLogger("dlsets")

_MAX_INDEX = 256 << 20  # shard_index.MAX_INDEX_BYTES


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
    masks: np.ndarray | None = None
    made: tuple[bool, bool] = (False, False)  # (the claim, the folder) made by this run

    @property
    def target(self) -> int:
        return self.settings["target"]

    @property
    def shards(self) -> int:
        return self.settings["shards"]


def _prepare(
    x, y, target, out, *, shards, augmenter, balance, keep_originals, seed, channels, format,
    name, classes, compression, chunk_size, shard=None, masks=None,
) -> _Expansion:
    from ..augment import params
    from ..augment.expand import (
        check_count,
        check_masks,
        check_xy,
        chunk_rows,
        class_names,
        copy_augmenter,
        copy_sources,
    )
    from ..formats.h5 import check_compression
    from ..store.cache import check_outside

    check_outside(out, f"writing shards into {out}")
    dataset = None
    if isinstance(x, str):
        from ..sources.loaders import load

        if y is not None:
            raise OptionError(f"x={x!r} names a dataset: give y=None (its labels are used)")
        dataset = x
        ds = load(x)
        x, y = ds.train.images, ds.train.labels
        masks = ds.train.masks if masks is None else masks
        classes = ds.classes if classes is None else classes
    x, y = check_xy(x, y, channels)
    masks = check_masks(masks, x, channels)
    target = check_count("target", target, 1)
    seed = params.check_seed(seed)
    if format not in FORMATS:
        raise OptionError(f"format={format!r} is not allowed: give one of {list(FORMATS)}")
    if compression and format != "hdf5":
        raise OptionError(f"compression={compression!r} is not allowed for {format} shards: "
                          "compression is for HDF5 shards (give None)")
    check_compression(compression)
    shards = check_count("shards", shards, 1)
    if shards > target:
        raise OptionError(f"shards={shards} is more than the target of {target} samples: every "
                          f"shard needs at least one sample; give shards <= {target}")
    name = dataset if name is None else name
    name = "augmented" if name is None else str(name)
    if not NAME.fullmatch(name):
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
    aug = copy_augmenter(augmenter, seed, len(src))
    settings = {
        "name": name,
        "format": format,
        "target": target,
        "shards": shards,
        "source": {  # identified by content: a dataset name and its arrays give one key
            "count": len(x),
            "image_shape": list(x.shape[1:]),
            "dtype": x.dtype.str,
            "images_sha256": sha256_array(x),
            "labels_sha256": sha256_array(labels64(y)),
        },
        "augmenter": repr(aug),
        "balance": bool(balance),
        "keep_originals": bool(keep_originals),
        "seed": seed,
        "channels": channels or "last",
        "compression": compression,
        "classes": names,
    }
    if masks is not None:  # only then: the keys of mask-less expansions stay as they were
        settings["source"].update(masks_sha256=sha256_array(masks),
                                  mask_shape=list(masks.shape[1:]), mask_dtype=masks.dtype.str)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    exp = _Expansion(x, y, src, aug, Path(out), settings, key, chunk_rows(x, chunk_size), channels,
                     [shard_file(name, i, shards, format) for i in range(shards)], masks)
    _check_folder(exp, shard)
    return exp


# ---------------------------------------------------------------------------- the folder
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
        "nothing was written. Give another output folder, or empty this one (its hidden "
        ".*.json files too) to replace them.")


def _check_folder(exp: _Expansion, shard: int | None = None) -> None:
    """Refuse a folder that holds another expansion's shards, index or entries.

    Every entry is read when ``shard`` is None (a run of all shards); for one shard, only the
    index, its own entry and two others, so that each task of a large array costs O(1) reads
    (one listing aside): one expansion's entries all carry the same key.
    """
    from .shard_claim import claim

    folder = exp.folder
    if folder.exists() and not folder.is_dir():
        raise OptionError(f"{folder} is a file, not a folder: give a folder for the shards")
    existed = folder.is_dir()
    if existed:
        _check_files(exp, shard)
    # writers of other settings that passed the checks above at the same moment: one wins
    made = claim(folder, exp.key, exp.settings, lambda shown, theirs: _conflict(exp, shown,
                                                                                 theirs))
    exp.made = (made, made and not existed)


def _check_files(exp: _Expansion, shard: int | None) -> None:
    folder = exp.folder
    doc = read_json_or_none(folder / INDEX, _MAX_INDEX)
    if doc is not None and doc.get("key") != exp.key:
        raise _conflict(exp, INDEX, doc.get("settings"))
    ours = set(exp.files)
    entries = []
    for name in sorted(os.listdir(folder)):
        if m := SIDECAR.fullmatch(name):
            if m["file"] not in ours:
                meta = read_json_or_none(folder / name) or {}
                raise _conflict(exp, f"the entry of {m['file']}", meta.get("settings"))
            entries.append((m["file"] != exp.files[shard] if shard is not None else 0, name))
        elif SHARD_FILE.fullmatch(name) and name not in ours:
            raise _conflict(exp, name, None)
    entries.sort()  # this shard's own entry first
    for _, name in entries if shard is None else entries[:3]:
        meta = read_json_or_none(folder / name)
        if meta is not None and meta.get("key") != exp.key:
            raise _conflict(exp, f"the entry of {name[1:-5]}", meta.get("settings"))


# ---------------------------------------------------------------------------- one shard
def _present(exp: _Expansion, shard: int) -> dict | None:
    """The entry of shard ``shard`` if its file is there, complete and as recorded."""
    file = exp.files[shard]
    path = exp.folder / file
    meta = entry_or_none(sidecar(exp.folder, file), exp.settings["format"])
    if meta is None or meta.get("key") != exp.key or not path.is_file():
        return None
    entry = meta["entry"]
    rows = list(shard_rows(exp.target, exp.shards, shard))
    if entry.get("rows") != rows or entry.get("size") != path.stat().st_size:
        log.info("%s does not match its entry: rewriting it", path)
        return None
    if sha256_file(path) != entry.get("sha256"):
        log.info("%s does not hash to its entry: rewriting it", path)
        return None
    return entry


def _write(exp: _Expansion, shard: int, advance: Callable[[int], None]) -> dict:
    from ..augment.expand import produce_chunks
    from .shard_claim import make_folder

    folder, file = exp.folder, exp.files[shard]
    make_folder(folder)
    # temporaries of killed writers: removed by atomic.replacing as it starts this one
    path = folder / file
    lo, hi = shard_rows(exp.target, exp.shards, shard)
    s = exp.settings
    kept = s["source"]["count"] if s["keep_originals"] else 0
    originals = max(0, min(hi, kept) - lo)
    hashes = hashlib.sha256(), hashlib.sha256(), hashlib.sha256()
    counts = np.zeros(len(s["classes"]), np.int64)
    m = exp.masks

    def account(images: np.ndarray, labels: np.ndarray, masks=None) -> None:
        hashes[0].update(np.ascontiguousarray(images))
        hashes[1].update(labels64(labels))
        if masks is not None:
            hashes[2].update(np.ascontiguousarray(masks))
        counts[:] += np.bincount(labels, minlength=len(counts))[:len(counts)]

    log.info("writing shard %d of %d (rows %d..%d) to %s", shard, exp.shards, lo, hi - 1, path)
    produce = dict(x=exp.x, y=exp.y, src=exp.src, keep_originals=s["keep_originals"],
                   augmenter=exp.augmenter, chunk_size=exp.chunk_size, advance=advance,
                   channels=exp.channels, rows=(lo, hi), masks=m)
    file_sha256 = None
    if s["format"] == "hdf5":
        from ..formats.h5 import atomic_hdf5, create_masks, create_split, write_attrs

        # The folder was checked as this expansion's (_check_folder): a damaged shard of it,
        # unreadable, is rewritten like any other.
        with atomic_hdf5(path, overwrite=True) as f:
            images, labels = create_split(f, "train", hi - lo, exp.x.shape[1:],
                                          dtype=exp.x.dtype, compression=s["compression"])
            mset = None if m is None else create_masks(f, "train", hi - lo, m.shape[1:],
                                                       dtype=m.dtype,
                                                       compression=s["compression"])

            def write(pos: int, chunk: np.ndarray, lab: np.ndarray, mk=None) -> None:
                images[pos - lo:pos - lo + len(chunk)] = chunk
                labels[pos - lo:pos - lo + len(lab)] = lab
                if mk is not None:
                    mset[pos - lo:pos - lo + len(mk)] = mk
                account(chunk, lab, mk)

            produce_chunks(write=write, **produce)
            # the single-file layout's attributes, plus where this shard sits
            write_attrs(f, s["classes"], originals=originals, seed=s["seed"],
                        augmenter=s["augmenter"], channels=s["channels"], shard=shard,
                        shards=exp.shards, first_row=lo, target=exp.target)
    else:
        from .tarshards import TarShardWriter

        try:  # a full disk as the HDF5 path says it (the temporary is gone by then)
            with replacing(path) as tmp, open(tmp, "wb") as raw:
                fh = _HashingWriter(raw)  # the file's hash as it is written: no second read
                writer = TarShardWriter(fh, exp.x.shape[1:], exp.x.dtype,
                                        *((None, None) if m is None else (m.shape[1:], m.dtype)))

                def write(pos: int, chunk: np.ndarray, lab: np.ndarray, mk=None) -> None:
                    writer.write(pos, chunk, lab, mk)
                    account(chunk, lab, mk)

                produce_chunks(write=write, **produce)
                writer.close()
        except OSError as exc:
            from ..store.space import write_error

            err = write_error(exc, path, None, f"writing shards into {folder}")
            if err is exc:
                raise
            raise err from None
        file_sha256 = fh.sha256.hexdigest()
    entry = {
        "shard": shard,
        "file": file,
        "rows": [lo, hi],
        "count": hi - lo,
        "originals": originals,
        "class_counts": counts.tolist(),
        "size": path.stat().st_size,
        "sha256": file_sha256 or sha256_file(path),
        "images_sha256": hashes[0].hexdigest(),
        "labels_sha256": hashes[1].hexdigest(),
    }
    if m is not None:
        entry["masks_sha256"] = hashes[2].hexdigest()
    write_json(sidecar(folder, file), {"key": exp.key, "entry": entry, "settings": s})
    return entry


class _HashingWriter:
    """A binary file that hashes what is written to it."""

    def __init__(self, f) -> None:
        self.f, self.sha256 = f, hashlib.sha256()

    def write(self, data) -> int:
        self.sha256.update(data)
        return self.f.write(data)


def _run(exp: _Expansion, shard: int, advance: Callable[[int], None]) -> tuple[dict, bool]:
    """Shard ``shard``'s entry, and whether it was written (False: present and verified)."""
    entry = _present(exp, shard)
    if entry is not None:
        log.info("%s is present and verifies: kept", exp.folder / exp.files[shard])
        advance(entry["count"])
        return entry, False
    return _write(exp, shard, advance), True


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
    masks: np.ndarray | None = None,
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
    ``masks`` (N, H, W) travel with their images as in ``expand(..., masks=)``: ``/train/masks``
    in HDF5, ``{key}.mask.npy`` in tar shards (a dataset name brings its own masks).
    OptionError if ``out`` holds shards of other settings (nothing is written then).
    """
    from ..augment.expand import check_count
    from ..common.progress import bar

    shards = check_count("shards", shards, 1)
    if isinstance(shard, bool) or not isinstance(shard, (int, np.integer)) or not (
            0 <= shard < shards):
        raise OptionError(f"shard={shard!r} is not allowed: give a shard number in "
                          f"0..{shards - 1} (shards={shards})")
    exp = _prepare(x, y, target, out, shards=shards, augmenter=augmenter, balance=balance,
                   keep_originals=keep_originals, seed=seed, channels=channels, format=format,
                   name=name, classes=classes, compression=compression, chunk_size=chunk_size,
                   shard=int(shard), masks=masks)
    lo, hi = shard_rows(exp.target, exp.shards, int(shard))
    with (released_on_failure(exp.folder, exp.made),
          bar(hi - lo, f"shard {shard}", progress=progress, unit="img") as pbar):
        entry, _ = _run(exp, int(shard), pbar.update)
    if index:
        write_index(exp.folder, exp.settings, exp.key)
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
    masks: np.ndarray | None = None,
) -> Path:
    """Write every shard of an expansion (as :func:`expand_shard`, one after the other, in
    this process) and ``out/index.json``; return the index's path. Shards already present
    and verified are kept. ``shards`` defaults to one per ~256 MB of pixels."""
    from ..common.progress import bar

    if shards is None:
        shape, dtype = _shape_dtype(x, channels)
        shards = default_shards(int(target), shape, dtype)
    exp = _prepare(x, y, target, out, shards=shards, augmenter=augmenter, balance=balance,
                   keep_originals=keep_originals, seed=seed, channels=channels, format=format,
                   name=name, classes=classes, compression=compression, chunk_size=chunk_size,
                   masks=masks)
    entries = []
    with (released_on_failure(exp.folder, exp.made),
          bar(exp.target, "augment", progress=progress, unit="img") as pbar):
        for i in range(exp.shards):
            entries.append(_run(exp, i, pbar.update)[0])
    return write_index(exp.folder, exp.settings, exp.key, entries)


def _shape_dtype(x, channels) -> tuple[tuple[int, ...], np.dtype]:
    if isinstance(x, str):
        from ..sources.registry import get

        return tuple(get(x).image_shape), np.dtype(np.uint8)
    x = np.asarray(x) if not hasattr(x, "shape") else x
    return tuple(x.shape[1:]), np.dtype(x.dtype)


# verify lives in its own module; its names stay importable from here
from .shard_verify import ShardReport, verify_shards  # noqa: E402, F401
