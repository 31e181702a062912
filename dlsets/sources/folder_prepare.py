"""A folder's prepared copy in the cache (``<cache>/_folders/<name>-<hash>/<options>/``): found
by the folder's content key and options, else built (scan, decode, assemble the splits) under
a lock and written with :mod:`dlsets.store.prepared`; opened as a :class:`Dataset`; verified."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from ..common import config
from ..data.dataset import Dataset, Split
from ..errors import DlsetsError, FormatError, OptionError
from ..formats import image as imgread
from ..store import prepared, removal, space
from ..store import scratch as scratch_file
from .folder_decode import DecodeJob, decode_all
from .folder_scan import PathLike, Sample, Scan, first_skips, scan

log = logging.getLogger("dlsets")

FOLDERS_DIR = "_folders"
VERSION = 1  # bump when what goes into a folder's prepared arrays changes
MEMORY_LIMIT = 1 << 30  # bigger results are assembled in a scratch file, not in memory


class SizesDiffer(OptionError):
    """The images of a folder loaded at their own size (size=None) differ in size."""


def folder_slot(path: PathLike, cache_dir: PathLike | None = None) -> Path:
    """``<cache>/_folders/<name>-<12 hex of sha256(absolute path)>``: where the prepared
    copies of the folder at ``path`` live (one subfolder per set of options)."""
    p = Path(path).expanduser().resolve()
    digest = hashlib.sha256(str(p).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in p.name)[:40] or "root"
    return config.cache_root(cache_dir) / FOLDERS_DIR / f"{name}-{digest}"


def _options(size, color, resize, test, seed, mask_classes, palette=None) -> dict:
    opts = {"size": list(size) if size else None, "color": color, "resize": resize,
            "test": test, "seed": seed, "mask_classes": list(mask_classes or []) or None,
            "version": VERSION}
    if palette:  # only then: copies made without one keep their key
        opts["mask_palette"] = [list(p) for p in palette]
    return opts


def _variant(opts: dict) -> str:
    digest = hashlib.sha256(json.dumps(opts, sort_keys=True).encode()).hexdigest()[:10]
    size = "x".join(map(str, opts["size"])) if opts["size"] else "native"
    return f"{size}-{opts['color']}-{opts['resize']}-{digest}"


def load_prepared(name, root, slot: Path, *, size, color, resize, test, seed, names, dtype,
                  channels, workers, progress, cache_dir, shown: str, palette=None) -> Dataset:
    """The folder ``root`` as a Dataset, from its prepared copy in ``slot`` for these options
    (prepared first, under a lock, when missing or the folder changed)."""
    sc = scan(root)
    opts = _options(size, color, resize, test, seed, names, palette)
    folder = slot / _variant(opts)
    got = _usable(folder, sc, opts)
    if got is not None and got[1].get("skipped"):
        # the cold load listed them; a warm one says they are still missing, and where to look
        n = len(got[1]["skipped"])
        log.warning("%s: %d file%s skipped (`dlsets info %s%s` lists them)", name, n,
                    "s" if n != 1 else "", shlex.quote(shown), _size_flag(opts))
    if got is None:
        from ..store import locks

        try:
            # one process decodes; the others wait here and then find its copy (or, after a
            # `dlsets remove` of it, nothing: locks.take makes the folder again)
            with locks.holding(slot / f"{folder.name}.lock", name, doing="preparing it"):
                if not Path(root).is_dir():
                    raise DlsetsError(f"{name}: {root} was removed by another process while "
                                      "this load waited for it; load it again")
                got = _usable(folder, sc, opts, quiet=True)
                if got is None:
                    got = _build(name, sc, folder, opts, names, workers, progress)
        except OSError as exc:
            raise DlsetsError(
                f"the dlsets cache at {config.cache_root(cache_dir)} cannot be used: "
                f"{exc.strerror or exc} ({exc.filename or folder}). Point --cache-dir or "
                "DLSETS_CACHE at a folder you can write to, or free some space."
            ) from exc
    arrays, manifest = got
    return _dataset(name, arrays, manifest, folder, dtype, channels)


def _size_flag(opts: dict) -> str:
    return f" --size {opts['size'][0]} {opts['size'][1]}" if opts["size"] else ""


def _usable(folder: Path, sc: Scan, opts: dict, quiet: bool = False):
    manifest = prepared.read_manifest(folder)
    if manifest is None:
        return None
    if manifest.get("content") != sc.content or manifest.get("options") != opts:
        log.log(logging.DEBUG if quiet else logging.INFO,
                "%s changed since it was prepared; preparing it again", sc.folder)
        return None
    arrays = prepared.open_arrays(folder, manifest, quiet=quiet)
    if arrays is None or prepared.read_manifest(folder) != manifest:
        return None
    return arrays, manifest


def _build(name: str, sc: Scan, folder: Path, opts: dict, names, workers: int, progress):
    from ..common.progress import bar

    size = tuple(opts["size"]) if opts["size"] else None
    exact = None
    if size is None:
        exact = _common_size(sc, sc.items(opts["seed"], opts["test"]))
    colours = opts.get("mask_palette")
    target = imgread.Target(size, opts["color"], opts["resize"], exact,
                            tuple(map(tuple, colours)) if colours else None)
    seg = sc.layout == "segmentation"
    job = DecodeJob(target, len(names) if names else None)
    items = sc.items(opts["seed"], opts["test"])
    n = len(items)
    shape = target.shape
    nbytes = n * int(np.prod(shape)) + (n * shape[0] * shape[1] if seg else 0)
    scratch: list[Path] = []
    # under the lock, scratch files of this variant are leftovers of killed processes
    for leftover in folder.parent.glob(f"{folder.name}.*.scratch"):
        leftover.unlink(missing_ok=True)
    # the prepared copy, and the scratch file it is written from when it is big
    space.need_disk(folder.parent, nbytes * (2 if nbytes > MEMORY_LIMIT else 1),
                    f"{name}: preparing {n:,} images of {'x'.join(map(str, shape))}",
                    " or give a smaller size= (--size)")
    try:
        images = _buffer(folder, (n, *shape), nbytes, scratch)
        masks = _buffer(folder, (n, *shape[:2]), nbytes, scratch) if seg else None
        ok = np.zeros(n, bool)
        present = np.zeros(256, np.int64)
        skips: dict[int, tuple[str, str]] = {}
        tasks = [(i, it.path, it.mask_path) for i, it in enumerate(items)]
        log.info("%s: decoding %d images on %d %s", name, n, workers,
                 "process" if workers == 1 else "processes")
        with bar(n, f"{name}: decoding", progress=progress, unit="img") as pbar:
            for rows, px, m, sk, pres in decode_all(tasks, job, workers, pbar.update):
                if rows:
                    # a chunk is a run of rows: a slice when none was skipped
                    idx = (slice(rows[0], rows[-1] + 1) if rows[-1] - rows[0] + 1 == len(rows)
                           else np.asarray(rows))
                    images[idx] = px
                    if masks is not None:
                        masks[idx] = m
                    ok[idx] = True
                present += pres
                for row, kind, reason in sk:
                    skips[row] = (kind, reason)
        # the copy is found again by the content key of the scan before decoding: a file
        # rewritten meanwhile (and later put back with its old size and time) would be served
        # as it was read, so a folder that changed while it was read is not kept
        if scan(sc.folder).content != sc.content:
            raise DlsetsError(f"{name}: {sc.folder} changed while it was being read (files "
                              "added, removed or rewritten); nothing was kept. Load it again "
                              "once it has settled")
        arrays, manifest = _assemble(name, sc, items, opts, images, masks, ok, skips, present,
                                     names, target)
        manifest = prepared.write(folder, arrays, manifest)
    finally:
        for p in scratch:
            p.unlink(missing_ok=True)
    log.info("%s: prepared arrays written to %s", name, folder)
    opened = prepared.open_arrays(folder, manifest)
    if opened is None:
        raise FormatError(f"{name}: the prepared arrays in {folder} could not be read back right "
                          "after writing them; check the disk (space, permissions) and try again")
    return opened, manifest


def _buffer(folder: Path, shape: tuple, nbytes: float, scratch: list) -> np.ndarray:
    """Room for the decoded pixels: memory, or a scratch file beside the prepared folder when
    they are big (the prepared files are then written from its pages)."""
    if nbytes <= MEMORY_LIMIT:
        return np.empty(shape, np.uint8)  # rows of skipped files are compacted away
    p = folder.with_name(f"{folder.name}.{os.getpid()}-{len(scratch)}.scratch")
    scratch.append(p)
    return scratch_file.array(p, shape, f"{folder.parent.name}: decoding")


def _common_size(sc: Scan, items: list[Sample]) -> tuple[int, int]:
    for it in items:
        got = imgread.probe_size(it.path)
        if got is not None:
            return got
    raise FormatError(f"{sc.folder}: none of its {len(items)} images can be read")


def _compact(a: np.ndarray, keep: np.ndarray, start: int, stop: int) -> int:
    """Move the kept rows of a[start:stop] down to a[start:], in place; returns their count."""
    idx = np.flatnonzero(keep[start:stop]) + start
    step = max(1, (64 << 20) // max(1, a[0].nbytes if len(a) else 1))  # 64 MB at a time
    for j in range(0, len(idx), step):
        part = idx[j:j + step]
        if part[0] != start + j or part[-1] != start + j + len(part) - 1:
            a[start + j:start + j + len(part)] = a[part]
    return len(idx)


def _assemble(name, sc: Scan, items, opts, images, masks, ok, skips, present, names, target):
    skipped = dict(sc.skipped)
    size_mismatch = [(items[r].rel, reason) for r, (kind, reason) in skips.items()
                     if kind == "size"]
    if size_mismatch:
        raise SizesDiffer(f"{sc.folder}: the images differ in size: "
                          f"{_sizes_found(size_mismatch, target, int(ok.sum()))}. Give "
                          "size=(H, W) (CLI: --size H W) to resize them all to one size; "
                          f"`dlsets info {shlex.quote(str(sc.folder))}` lists the sizes found")
    for r, (_, reason) in sorted(skips.items()):
        skipped[items[r].rel] = reason
    skipped = dict(sorted(skipped.items()))
    labels_all = np.fromiter((it.label for it in items), np.uint8, len(items))
    if sc.layout == "classes":
        have = np.bincount(labels_all[ok], minlength=len(sc.classes))
        empty = [c for c, k in zip(sc.classes, have, strict=True) if k == 0]
        if empty:
            why = [f"{rel}: {r}" for rel, r in skipped.items()
                   if any(f"/{c}/" in f"/{rel}" for c in empty)]
            raise FormatError(
                f"{sc.folder}: class folder(s) {', '.join(map(repr, empty))} hold no readable "
                "image" + (f" ({'; '.join(why[:5])}{' ...' if len(why) > 5 else ''})" if why
                           else "") + ". Add images, or remove the folder")
        classes = list(sc.classes)
    else:
        if not ok.any():
            raise FormatError(f"{sc.folder}: no image/mask pair could be read: "
                              f"{first_skips(skipped)}")
        top = int(np.flatnonzero(present).max()) if present.any() else 0
        if names is None and present.any() and set(np.flatnonzero(present)) <= {0, 255}:
            np.minimum(masks, 1, out=masks)  # black-and-white masks: binary classes 0/1
            top = 1 if present[255] else 0
        classes = list(names) if names is not None else [str(k) for k in range(max(2, top + 1))]
    arrays: dict[str, np.ndarray] = {}
    counts = {}
    start = 0
    bounds = {}
    for s in sc.splits:
        stop = start + sum(1 for it in items if it.split == s)
        bounds[s] = (start, stop)
        start = stop
    for s in sc.splits:
        a, b = bounds[s]
        kept = _compact(images, ok, a, b)
        arrays[f"{s}_images"] = images[a:a + kept]
        if masks is not None:
            _compact(masks, ok, a, b)
            arrays[f"{s}_masks"] = masks[a:a + kept]
        y = labels_all[a:b][ok[a:b]]
        arrays[f"{s}_labels"] = np.ascontiguousarray(y)
        counts[s] = np.bincount(y, minlength=len(classes) if sc.layout == "classes"
                                else 1).tolist()
    from PIL import __version__ as pil_version

    rule = ("from the folders" if sc.split_from == "folders" else
            f"per class, lowest sha256('{opts['seed']}/<class>/<file>') floor(n*{opts['test']}"
            "+0.5) to test" if sc.layout == "classes" else
            f"lowest sha256('{opts['seed']}/<path without extension>') floor(n*{opts['test']}"
            "+0.5) to test")
    manifest = {
        "name": name, "format": "folder", "sources": {"folder": sc.content},
        "content": sc.content, "options": opts, "layout": sc.layout,
        "split_from": sc.split_from, "splits": list(sc.splits), "classes": classes,
        "counts": counts, "skipped": list(skipped), "skip_reasons": skipped,
        "split_rule": rule, "decoder": f"pillow {pil_version}", "path": str(sc.folder),
        "root": sc.descended, "notes": sc.notes, "image_shape": list(target.shape),
    }
    if skipped:
        log.warning("%s: skipped %d file(s): %s", name, len(skipped), first_skips(skipped))
    return arrays, manifest


def _sizes_found(mismatch: list[tuple[str, str]], target, same: int) -> str:
    """"7 files 20x24, 1 file 10x40 (height x width, as --size takes them; e.g. b/wide.png)"
    from the size skips (their reasons start "is WxH") and the ``same`` files of the size
    read first."""
    from collections import Counter

    def hw(wh: str) -> str:
        w, _, h = wh.partition("x")
        return f"{h}x{w}"

    found = Counter({f"{target.exact[0]}x{target.exact[1]}": same})
    found.update(hw(why.split()[1]) for _, why in mismatch)
    shown = ", ".join(f"{n} file{'s' if n != 1 else ''} {wh}"
                      for wh, n in found.most_common(5) if n)
    more = f", {len(found) - 5} more sizes" if len(found) > 5 else ""
    return f"{shown}{more} (height x width, as --size takes them; e.g. {mismatch[0][0]})"


def _dataset(name, arrays, manifest, folder: Path, dtype, channels) -> Dataset:
    from .load_options import convert as _convert

    classes = tuple(manifest["classes"])
    splits, shapes = {}, {}
    for s in manifest["splits"]:
        x = _convert(arrays[f"{s}_images"], dtype, channels)
        y = np.asarray(arrays[f"{s}_labels"])
        m = arrays.get(f"{s}_masks")
        splits[s] = Split(x, y, None if m is None else np.asarray(m))
        counts = manifest["counts"].get(s, [])
        names = classes if manifest["layout"] == "classes" else ("all",)
        shapes[s] = {"images_shape": list(x.shape), "labels_shape": list(y.shape),
                     "class_counts": dict(zip(names, counts, strict=False))}
        if m is not None:
            shapes[s]["masks_shape"] = list(m.shape)
    skipped = list(manifest.get("skipped", []))
    info: dict[str, Any] = {
        "name": name, "format": "folder", "path": manifest.get("path"),
        "layout": manifest["layout"], "split_from": manifest["split_from"],
        "sources": dict(manifest["sources"]), "content_key": manifest["content"],
        "splits": shapes, "skipped": skipped, "skipped_count": len(skipped),
        "skip_reasons": dict(manifest.get("skip_reasons", {})),
        "prepared_dir": str(folder), "options": dict(manifest["options"]), "dtype": dtype,
        "split_rule": manifest.get("split_rule"), "decoder": manifest.get("decoder"),
    }
    if manifest.get("root"):
        info["root"] = manifest["root"]
    if manifest.get("notes"):
        info["notes"] = list(manifest["notes"])
    if manifest["layout"] == "segmentation":
        info["mask_classes"] = list(classes)
    extra = {s: splits[s] for s in splits if s not in ("train", "test")}
    return Dataset(name, splits["train"], splits["test"], classes, info, extra=extra)


def verify_folder(path: PathLike, *, cache_dir: PathLike | None = None,
                  repair: bool = True) -> list[str]:
    """Hash every prepared copy of the folder at ``path`` in full; returns what is wrong (one
    line per damaged copy, deleted when ``repair`` so the next load rebuilds it)."""
    return verify_slot(folder_slot(path, cache_dir), repair=repair)


def has_prepared(path: PathLike, cache_dir: PathLike | None = None) -> bool:
    """Whether the cache holds a prepared copy of the folder at ``path``."""
    slot = folder_slot(path, cache_dir)
    return slot.is_dir() and any(p.is_dir() for p in slot.glob("*"))


def verify_slot(slot: Path, *, repair: bool = True) -> list[str]:
    """:func:`verify_folder` for a folder's cache slot (``<cache>/_folders/<name>-<hash>``)."""
    problems = []
    for folder in sorted(p for p in slot.glob("*") if p.is_dir()):
        why = prepared.verify_or_remove(folder, repair=repair)
        if why is not None:
            problems.append(f"{folder}: {why}; " + ("deleted it; the next load rebuilds it"
                                                    if repair else "not repaired"))
    return problems


def cached_slots(cache_dir: PathLike | None = None) -> list[Path]:
    """Every folder's cache slot (``<cache>/_folders/<name>-<hash>``) in the cache, sorted."""
    root = config.cache_root(cache_dir)
    return sorted(p for p in (root / FOLDERS_DIR).glob("*") if p.is_dir())


def remove_prepared(path: PathLike, *, cache_dir: PathLike | None = None,
                    wait: float = removal.REMOVE_WAIT) -> Path | None:
    """Remove the prepared copies of the folder at ``path`` (its cache slot, whole, once every
    lock in it is held, waiting up to ``wait`` seconds; the folder itself is untouched);
    returns the slot, or None when nothing was cached."""
    return removal.remove_tree(folder_slot(path, cache_dir), str(path), wait)
