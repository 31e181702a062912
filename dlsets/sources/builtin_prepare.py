"""A registry dataset's prepared copy: found, checked against the registry, built under its
lock from the downloaded files, verified in full; its variants and extra splits."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path

from ..common import config
from ..data.dataset import SPLITS
from ..errors import FormatError, OfflineError, OptionError
from ..store import cache, prepared
from . import registry
from .builtin_parse import build
from .load_options import FORMAT_ARRAYS, dataset_info
from .registry import DatasetSpec

log = logging.getLogger("dlsets")

PathLike = str | os.PathLike


def _variant(spec: DatasetSpec, variant: str | None) -> str | None:
    """The variant to load: ``variant`` checked, or the dataset's default (None: it has none)."""
    if not spec.variants:
        if variant is not None:
            raise OptionError(f"{spec.name} has no variants; leave variant={variant!r} out")
        return None
    if variant is None:
        return spec.default_variant or next(iter(spec.variants))
    if variant not in spec.variants:
        raise OptionError(f"{spec.name} has no variant {variant!r}; use one of "
                          f"{list(spec.variants)}")
    return variant


def _for_variant(spec: DatasetSpec, variant: str | None) -> DatasetSpec:
    return replace(spec, classes=spec.variants[variant].classes) if variant else spec


def _extra_splits(spec: DatasetSpec, extra) -> tuple[str, ...]:
    """Names of the optional splits asked for by ``extra`` (False, True, a name or names)."""
    have = tuple(spec.extra_splits)
    if extra is None or extra is False:
        return ()
    if extra is True:
        return have
    names = [extra] if isinstance(extra, str) else list(extra)
    for n in names:
        if n not in have:
            raise OptionError(
                f"{spec.name} has no extra split {n!r}; "
                + (f"use one of {list(have)}" if have else "it has train and test only")
            )
    return tuple(n for n in have if n in names)


def prepared_info(name: str, *, cache_dir: PathLike | None = None,
                  variant: str | None = None) -> dict | None:
    """Facts about the prepared copy of ``name`` (shapes, class counts, source sha256,
    skipped files), or None when there is none (or it is stale); never loads or downloads.
    For a dataset with variants, of ``variant`` (default: the default one)."""
    spec = registry.get(name)
    variant = _variant(spec, variant)
    spec = _for_variant(spec, variant)
    folder = cache.prepared_dir(name, cache_dir, variant)
    manifest = prepared.read_manifest(folder)
    if (manifest is None or _layout_problem(spec, manifest)
            or _stale(spec, manifest, cache_dir, variant) or prepared.problem(folder, manifest)):
        return None
    return dataset_info(spec, manifest, "fine", folder, tuple(manifest.get("splits", SPLITS)))


def prepared_names(cache_dir: PathLike | None = None) -> list[str]:
    """The registry datasets that have a ``prepared`` folder in the cache, sorted (nothing is
    opened or checked: :func:`verify_prepared` does that)."""
    root, known = config.cache_root(cache_dir), set(registry.names())
    return sorted(d.parent.name for d in root.glob("*/prepared") if d.parent.name in known)


def _prepared_arrays(spec: DatasetSpec, cache_dir, download: bool, progress,
                     variant: str | None = None, wanted: tuple[str, ...] = ()):
    folder = cache.prepared_dir(spec.name, cache_dir, variant)
    got = _usable(spec, folder, cache_dir, variant=variant, wanted=wanted)
    if got is not None:
        return got
    # One process builds; the others wait here and then find the finished copy.
    with _prepared_lock(spec, cache.prepared_lock_path(spec.name, cache_dir)):
        # Quiet: whatever is wrong was logged by the check above (once, not twice); this one
        # only looks whether another process rebuilt the copy while we waited for the lock.
        got = _usable(spec, folder, cache_dir, quiet=True, variant=variant, wanted=wanted)
        if got is not None:
            return got
        files = _source_files(spec, cache_dir, download, progress, wanted)
        manifest = build(spec, files, folder, progress, variant, wanted)
        log.info("%s: prepared arrays written to %s", spec.name, folder)
        opened = prepared.open_arrays(folder, manifest)
        if opened is None:
            raise FormatError(
                f"{spec.name}: the prepared arrays in {folder} could not be read back right "
                "after writing them; check the disk (space, permissions) and try again"
            )
        return opened, manifest


def _usable(spec: DatasetSpec, folder: Path, cache_dir, quiet: bool = False,
            variant: str | None = None, wanted: tuple[str, ...] = ()):
    manifest = prepared.read_manifest(folder)
    if manifest is None:
        if (folder / prepared.MANIFEST).exists():
            log.log(logging.DEBUG if quiet else logging.WARNING,
                    "%s: prepared arrays in %s are damaged (%s); rebuilding them", spec.name,
                    folder, prepared.manifest_problem(folder))
        return None
    why = _layout_problem(spec, manifest)
    if why:
        log.log(logging.DEBUG if quiet else logging.WARNING,
                "%s: prepared arrays in %s are damaged (%s); rebuilding them", spec.name,
                folder, why)
        return None
    why = _stale(spec, manifest, cache_dir, variant)
    if why:
        log.log(logging.DEBUG if quiet else logging.INFO,
                "%s: prepared arrays are stale (%s); rebuilding them", spec.name, why)
        return None
    arrays = prepared.open_arrays(folder, manifest, quiet=quiet)
    if arrays is None:
        return None
    if prepared.read_manifest(folder) != manifest:
        # Another process rebuilt the folder between our reading the manifest and mapping the
        # arrays: what we mapped may belong to its manifest, not ours. Retry under the lock.
        log.info("%s: prepared arrays changed while being opened; reopening", spec.name)
        return None
    expected = {*FORMAT_ARRAYS.get(spec.format, ())}
    for s in (*SPLITS, *wanted):
        expected.add(f"{s}_images")
        if s in SPLITS or spec.extra_splits[s].labelled:
            expected.add(f"{s}_labels")
    missing = expected - set(arrays)
    if missing:
        # An extra split asked for the first time is no damage: rebuilt with it, said at info.
        first_time = all(m.split("_", 1)[0] in wanted for m in missing)
        level = logging.DEBUG if quiet else logging.INFO if first_time else logging.WARNING
        log.log(level, "%s: prepared arrays lack %s; rebuilding", spec.name, sorted(missing))
        return None
    return arrays, manifest


@contextlib.contextmanager
def _prepared_lock(spec: DatasetSpec, lock: Path):
    """``lock`` (the dataset's prepared.lock, for all its variants), held; a cache that cannot
    be written (read-only, full) is a WriteError / SpaceError that says what to do."""
    from ..store import space
    from ..store.locks import holding

    try:
        held = holding(lock)
        held.__enter__()
    except OSError as exc:
        if space.write_error(exc, lock, None, "") is exc:
            raise
        kind = space.SpaceError if exc.errno in space.FULL else space.WriteError
        raise kind(
            f"{spec.name}: cannot prepare its arrays in {lock.parent} ({exc.strerror or exc}); "
            "a cache that cannot be written can serve arrays prepared earlier, not make new "
            "ones: free some space there, or use another cache folder (DLSETS_CACHE, "
            "--cache-dir, cache_dir=)"
        ) from None
    try:
        yield
    finally:
        held.__exit__(None, None, None)


def _layout_problem(spec: DatasetSpec, manifest: dict) -> str | None:
    """What in a (well-formed) manifest does not fit ``spec``'s layout: the arrays it must
    have, images of the layout's shape in uint8, one uint8 label per image of a labelled
    split, class counts that add up (None when all fit). A load, ``info``, ``list`` and
    ``verify`` all ask this."""
    arrays = manifest["arrays"]
    if manifest.get("name") != spec.name:
        return f"the manifest is for {manifest.get('name')!r}"
    splits = manifest.get("splits", list(SPLITS))
    if not set(SPLITS) <= set(splits) or not set(splits) <= {*SPLITS, *spec.extra_splits}:
        return f"the manifest lists splits {splits}"
    expected = {*FORMAT_ARRAYS.get(spec.format, ())}
    for s in splits:
        expected.add(f"{s}_images")
        if s in SPLITS or spec.extra_splits[s].labelled:
            expected.add(f"{s}_labels")
    missing = expected - set(arrays)
    if missing:
        return f"the manifest lacks arrays {sorted(missing)}"
    for split in splits:
        images = arrays[f"{split}_images"]
        shape = images["shape"]
        if images["dtype"] != "|u1" or shape[1:] != list(spec.image_shape):
            return (f"{split}_images is {images['dtype']} {shape}, expected |u1 "
                    f"(N, {', '.join(map(str, spec.image_shape))})")
        prefixes = [("", spec.classes, "counts")] if f"{split}_labels" in expected else []
        if spec.format == "cifar100" and split in SPLITS:
            prefixes.append(("coarse_", spec.coarse_classes, "coarse_counts"))
        for prefix, classes, counts_key in prefixes:
            labels = arrays[f"{split}_{prefix}labels"]
            if labels["dtype"] != "|u1" or labels["shape"] != shape[:1]:
                return (f"{split}_{prefix}labels is {labels['dtype']} {labels['shape']}, "
                        f"expected |u1 [{shape[0]}]")
            counts = manifest.get(counts_key, {}).get(split)
            if counts is not None and (len(counts) != len(classes) or sum(counts) != shape[0]):
                return (f"its {counts_key} for {split} ({len(counts)} classes, {sum(counts)} "
                        f"images) do not fit {len(classes)} classes and {shape[0]} images")
    return None


def verify_prepared(name: str, *, cache_dir: PathLike | None = None,
                    repair: bool = True) -> str | None:
    """Hash every prepared array of ``name`` and its HDF5 variants in full against the
    sha256 recorded when they were written (a load hashes only the labels).

    Returns None when all match (or nothing is prepared), else what is wrong. With ``repair``
    a damaged prepared folder is deleted, or only the damaged HDF5 variant, so the next load
    rebuilds it from the downloaded files; the message says so. Never loads or downloads.
    """
    spec = registry.get(name)
    folders = ([cache.prepared_dir(spec.name, cache_dir, v) for v in spec.variants]
               if spec.variants else [cache.prepared_dir(spec.name, cache_dir)])
    folders = [f for f in folders if f.exists()]
    if not folders:
        return None
    # Under the builders' lock: a copy being written is not mistaken for a damaged one.
    with _prepared_lock(spec, cache.prepared_lock_path(spec.name, cache_dir)):
        problems = [p for f in folders if (p := _verify_folder(spec, f, repair)) is not None]
    return "\n".join(problems) or None


def _verify_folder(spec: DatasetSpec, folder: Path, repair: bool) -> str | None:
    """What is wrong in one prepared folder (hashed in full), after deleting it or its
    damaged HDF5 variants when ``repair``; None when nothing. The caller holds the lock."""
    manifest = prepared.read_manifest(folder)
    # What makes a load rebuild the copy makes verify call it damaged: the two agree.
    if manifest is None:
        why = prepared.manifest_problem(folder)
    else:
        variant = manifest.get("variant")
        layout = (_for_variant(spec, variant) if variant in spec.variants
                  else spec if not spec.variants else None)
        why = ("made for no variant of this dataset" if layout is None
               else _layout_problem(layout, manifest) or prepared.verify(folder, manifest))
    if why is not None:
        if repair:
            (folder / prepared.MANIFEST).unlink(missing_ok=True)  # unfinished from now on
            shutil.rmtree(folder, ignore_errors=True)
        done = "deleted it; the next load rebuilds it" if repair else "not repaired"
        return f"{spec.name}: prepared copy in {folder}: {why}; {done}"
    problems = []
    for path in sorted((folder / prepared.HDF5_DIR).glob("*.h5")):
        why = _hdf5_problem(path)
        if why is not None:
            if repair:
                path.unlink(missing_ok=True)
                _hdf5_sha_path(path).unlink(missing_ok=True)
            problems.append(f"{path.name}: {why}")
    if not problems:
        return None
    done = "deleted; the next load with format='hdf5' rebuilds them" if repair else "not repaired"
    return (f"{spec.name}: HDF5 variants in {folder / prepared.HDF5_DIR}: "
            f"{'; '.join(problems)}; {done}")


def _stale(spec: DatasetSpec, manifest: dict, cache_dir, variant: str | None = None
           ) -> str | None:
    """Why ``manifest`` was not made from the files ``spec`` names now (None if it was)."""
    if manifest.get("format") != spec.format:
        return f"made from {manifest.get('format')} files, the registry now says {spec.format}"
    if manifest.get("variant") != variant:
        return f"made for variant {manifest.get('variant')!r}, not {variant!r}"
    sources = manifest.get("sources", {})
    core = set(sources) - spec.optional_files()  # an extra split's files come on top of a set
    if core not in [set(s) for s in spec.file_sets] or not set(sources) <= set(spec.files):
        return f"made from {sorted(sources)}, which is not one of the registry's file sets"
    stats = manifest.get("source_stats", {})
    for fname, sha in sources.items():
        expected = spec.files[fname].sha256
        if expected and expected != sha:
            return f"{fname} had sha256 {sha}, the registry now says {expected}"
        if not expected and fname in stats:
            # No registry checksum to compare with: a changed file in the cache is the signal.
            try:
                st = (cache.files_dir(spec.name, cache_dir) / fname).stat()
            except OSError:
                continue
            if [st.st_size, st.st_mtime_ns] != stats[fname]:
                return f"{fname} in the cache changed since the arrays were made from it"
    return None


def _source_files(spec: DatasetSpec, cache_dir, download: bool, progress,
                  wanted: tuple[str, ...] = ()) -> dict[str, Path]:
    """A complete file set, plus the files of the extra splits in ``wanted``."""
    from ..store import elsewhere
    from .builtin_fetch import cached, fetch

    more = tuple(f for s in wanted for f in spec.extra_splits[s].files)
    if download:
        files = fetch(spec.name, cache_dir=cache_dir, progress=progress)
        if more:
            files.update(fetch(spec.name, files=more, cache_dir=cache_dir, progress=progress))
        return files
    have = cached(spec.name, cache_dir=cache_dir)
    for fs in spec.file_sets:
        if all(f in have for f in (*fs, *more)):
            return {f: have[f] for f in (*fs, *more)}
    options = " or ".join(" + ".join((*fs, *more)) for fs in spec.file_sets)
    missing = sorted({f for fs in spec.file_sets for f in (*fs, *more) if f not in have})
    where = cache.files_dir(spec.name, cache_dir)
    raise OfflineError(
        f"{spec.name}: not prepared yet and its files are not in the cache ({where}); "
        f"download=False forbids fetching them. Needed: {options} (missing: "
        f"{', '.join(missing)}). Run `dlsets fetch {spec.name}` (or `dlsets fetch {spec.name} "
        "--from DIR` with the files already downloaded), or call load with download=True."
        + elsewhere.hint(spec.name, cache_dir)
    )


def _hdf5_sha_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.sha256")


def _record_hdf5_sha(path: Path) -> None:
    """Store the sha256 of a freshly written HDF5 variant beside it, for verify_prepared."""
    from ..store import space

    with space.output(_hdf5_sha_path(path), 100, f"writing the checksum of {path.name}") as tmp:
        tmp.write_text(prepared.file_sha256(path) + "\n", encoding="ascii")


def _hdf5_problem(path: Path) -> str | None:
    """What is wrong with a prepared HDF5 variant (hashed in full), None when nothing."""
    try:
        from ..store.regular import read_bounded

        recorded = read_bounded(_hdf5_sha_path(path), 1024).decode("ascii").strip()
    except (OSError, ValueError):
        return "no sha256 was recorded when it was written"
    try:
        sha = prepared.file_sha256(path)
    except OSError as exc:
        return f"cannot be read ({exc})"
    return None if sha == recorded else f"sha256 {sha}, recorded {recorded}"
