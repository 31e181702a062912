"""The cache commands: list, info, fetch, verify, path and remove."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import OptionError
from .shards import _shard_folders, _verify_shards
from .shared import _load, _progress, _source_kind
from .text import shown, shown_counts


def _cmd_list(args) -> int:
    from ..sources import acquire, registry
    from ..store import elsewhere

    rows, nearby = [], False
    for name in registry.names():
        spec = registry.get(name)
        state = acquire.cache_state(name, cache_dir=args.cache_dir)
        if spec.format == "kaggle":
            rows.append((name, "?", state,
                         f"{spec.title}  (user: kaggle {spec.extra['kaggle']})"))
            continue
        size = sum(spec.files[f].size or 0 for f in spec.default_files())
        origin = "" if spec.builtin else f"  (user: like {spec.like})"
        nearby = nearby or state == acquire.NEARBY_STATE
        rows.append((name, _size(size) if size else "?", state, spec.title + origin))
    _table(("name", "download", "state", "title"), rows)
    if nearby:
        print(f"(in ./cache): cached in {Path(elsewhere.NEARBY).resolve()}, not in the cache in "
              f"use; use it with --cache-dir {elsewhere.NEARBY} or DLSETS_CACHE")
    return 0


def _cmd_info(args) -> int:
    from ..sources import acquire, loaders, registry

    if _source_kind(args.name) != "registry":
        from ..sources.folders import SizesDiffer

        try:
            ds = _load(args, args.name)
        except SizesDiffer:
            if _source_kind(args.name) != "folder":
                raise
            from ..sources import folder_survey

            print("\n".join(folder_survey.lines(folder_survey.survey(args.name), args.name)))
            return 0
        print("\n".join(_folder_lines(ds)))
        return 0
    spec = registry.get(args.name)
    out = [f"{spec.title} ({spec.name})"]
    if spec.description:
        out.append(spec.description)
    if not spec.builtin:
        out.append(f"user entry from {spec.source}, laid out like {spec.like}")
    for label, value in (
        ("homepage", spec.homepage),
        ("licence", spec.license),
        ("citation", spec.citation),
    ):
        if value:
            out.append(f"{label}: {value}")
    if spec.variants:
        out.append(f"image shape: {tuple(spec.image_shape)}; variants (--variant V, "
                   f"load(..., variant=V); default {spec.default_variant}):")
        for v, vs in spec.variants.items():
            ready = loaders.prepared_info(args.name, cache_dir=args.cache_dir, variant=v)
            out.append(f"  {v}{' (prepared)' if ready else ''}: {vs.description} "
                       f"{len(vs.classes)} classes: {', '.join(vs.classes)}")
    else:
        out.append(f"image shape: {tuple(spec.image_shape)}; {len(spec.classes)} classes: "
                   + ", ".join(spec.classes))
    if spec.extra_splits:
        parts = [n + ("" if s.labelled else " (no labels)")
                 + (f" (needs {', '.join(s.files)})" if s.files else "")
                 for n, s in spec.extra_splits.items()]
        out.append(f"extra splits (--extra NAME, load(..., extra=True)): {', '.join(parts)}")
    if spec.coarse_classes:
        out.append(f"{len(spec.coarse_classes)} coarse classes: " + ", ".join(spec.coarse_classes))
    if len(spec.file_sets) > 1:
        sets = " | ".join(" + ".join(s) for s in spec.file_sets)
        out.append(f"complete file sets (first is downloaded): {sets}")
    out.append("files:")
    for st in acquire.status(args.name, cache_dir=args.cache_dir):
        out.append(f"  {st.describe()}")
    infos = [(v, loaders.prepared_info(args.name, cache_dir=args.cache_dir, variant=v))
             for v in (list(spec.variants) or [None])]
    infos = [(v, i) for v, i in infos if i is not None]
    if not infos:
        out.append(f"not prepared yet (runs on first load: dlsets.load({args.name!r}))")
    for v, info in infos:
        lines = _prepared_lines(info, spec.name)
        if v is not None:
            lines[0] = f"prepared ({v}):"
        out.extend(lines)
    print("\n".join(out))
    return 0


def _prepared_lines(info: dict, name: str) -> list[str]:
    lines = ["prepared:"]
    for split, s in info.get("splits", {}).items():
        counts = s.get("class_counts")
        tail = f"; per class: {shown_counts(counts)}" if counts else ""
        labels = (f"labels {tuple(s['labels_shape'])}" if s.get("labels_shape") is not None
                  else "no labels")
        lines.append(f"  {split}: images {tuple(s['images_shape'])}, {labels}{tail}")
    skipped = info.get("skipped") or []
    if skipped:
        names = ", ".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else "")
        lines.append(f"  skipped {len(skipped)} unreadable image(s): {names}")
        if len(skipped) > 10:
            lines.append(f"  (all names: dlsets.load({name!r}).info['skipped'])")
    return lines


def _cmd_fetch(args) -> int:
    import time

    from ..sources import acquire

    # One deadline for the whole command, however many datasets it names.
    end = None if args.deadline is None else time.monotonic() + args.deadline
    for name in args.names:
        kind = _source_kind(name)
        left = None if end is None else max(end - time.monotonic(), 1e-3)
        if kind in ("kaggle", "kaggle-entry"):
            from ..sources import kaggle

            where = kaggle.fetch(name, cache_dir=args.cache_dir, progress=_progress(args),
                                 deadline=left)
            if not args.quiet:
                print(f"{shown(name)}: {shown(where)}")
            continue
        if kind == "folder":  # fetching a folder = preparing it in the cache
            ds = _load(args, name)
            if not args.quiet:
                print(f"{shown(name)}: {len(ds.train)} train + {len(ds.test)} test images "
                      f"prepared in {shown(ds.info['prepared_dir'])}")
            continue
        paths = acquire.fetch(
            name,
            files=args.file or None,
            cache_dir=args.cache_dir,
            mirrors=args.mirror,
            source_dir=args.source_dir,
            progress=_progress(args),
            deadline=left,
        )
        if not args.quiet:  # downloaded (bytes, time), imported or cached: said per file
            for outcome in paths.details.values():
                print(f"{shown(name)}: {outcome.describe()}")
    return 0


def _cmd_verify(args) -> int:
    from ..sources import acquire, loaders, registry
    from ..sources.builtin_prepare import prepared_names

    folders = _shard_folders(args.names)
    if folders:
        code = _verify_shards(folders, args)
        args.names = [n for n in args.names if n not in folders]
        if not args.names:
            return code
        return max(code, _cmd_verify(args))
    others = [n for n in args.names if _source_kind(n) != "registry"]
    if others:
        return _verify_others(args, others, [n for n in args.names if n not in others])
    results = acquire.verify(
        args.names or None,
        cache_dir=args.cache_dir,
        mirrors=args.mirror,
        repair=not args.no_repair,
        progress=_progress(args),
        deadline=args.deadline,
    )
    failed = [r for r in results if not r.ok]
    if not args.quiet or failed:
        for r in results:
            print(r.describe())
    # The arrays parsed from those files are checked too: a load hashes only their labels.
    prepared = args.names or prepared_names(args.cache_dir)
    damaged = 0
    for name in prepared:
        problem = loaders.verify_prepared(name, cache_dir=args.cache_dir,
                                          repair=not args.no_repair)
        if problem:
            damaged += 1
            print(problem if problem.startswith(f"{name}:") else f"{name}: {problem}")
        elif not args.quiet and any(
                loaders.prepared_info(name, cache_dir=args.cache_dir, variant=v)
                for v in (list(registry.get(name).variants) or [None])):
            print(f"{shown(name)}: prepared arrays: ok")
    checked = 0
    if not args.names:  # and what the cache holds of folders and Kaggle datasets
        checked, bad = _verify_cached_sources(args)
        damaged += bad
    if not results and not prepared and not checked:
        print("nothing in the cache to verify")
    return 1 if failed or (damaged and args.no_repair) else 0


def _verify_cached_sources(args) -> tuple[int, int]:
    """Verify every prepared folder copy and Kaggle download in the cache: (checked, bad)."""
    from ..sources import folders, kaggle

    checked = bad = 0
    for slot in folders.cached_slots(args.cache_dir):
        problems = folders.verify_slot(slot, repair=not args.no_repair)
        checked += 1
        bad += bool(problems)
        for line in problems:
            print(line)
        if not problems and not args.quiet:
            print(f"{slot}: prepared arrays: ok")
    for name in kaggle.cached_names(args.cache_dir):
        problems = kaggle.verify(name, cache_dir=args.cache_dir, repair=not args.no_repair)
        checked += 1
        bad += bool(problems)
        for line in problems:
            print(f"{shown(name)}: {shown(line)}")
        if not problems and not args.quiet:
            print(f"{shown(name)}: ok")
    return checked, bad


def _verify_others(args, others: list[str], names: list[str]) -> int:
    """verify for HDF5 files, folders and Kaggle datasets (then the registry names, if any)."""
    from ..sources import folders
    from ..sources.h5file import is_file, verify_file

    bad = damaged = 0
    for name in others:
        if is_file(name):  # an HDF5 file dlsets wrote: read whole; nothing to repair
            problems = verify_file(name)
            damaged += bool(problems)
            for line in problems:
                print(shown(line))
            if not problems and not args.quiet:
                print(f"{shown(name)}: ok (every dataset read whole)")
            continue
        if _source_kind(name) == "folder":
            path = Path(name).expanduser()
            if not path.is_dir():
                raise OptionError(f"{shown(name)}: " + (
                    "not a folder, a shard folder or an HDF5 file (.h5) dlsets wrote"
                    if path.exists() else "no such folder"))
            if not folders.has_prepared(path, args.cache_dir):
                if not args.quiet:
                    print(f"{shown(name)}: no prepared copy in the cache, nothing to verify "
                          "(a load or export prepares one)")
                continue
            problems = folders.verify_folder(name, cache_dir=args.cache_dir,
                                             repair=not args.no_repair)
        else:
            from ..sources import kaggle

            problems = kaggle.verify(name, cache_dir=args.cache_dir, repair=not args.no_repair)
        bad += bool(problems)
        for line in problems:
            print(f"{shown(name)}: {shown(line)}")
        if not problems and not args.quiet:
            print(f"{shown(name)}: ok")
    code = 1 if damaged or (bad and args.no_repair) else 0
    if names:
        args.names = names
        return max(_cmd_verify(args), code)
    return code


def _cmd_path(args) -> int:
    from ..sources import table

    kind = _source_kind(args.name).replace("kaggle-entry", "kaggle")
    print(table.place(args.name, args.cache_dir, source=table.of_kind(kind)))
    return 0


def _cmd_remove(args) -> int:
    from ..sources import acquire, registry

    kind = _source_kind(args.name)
    wait = 0.0 if args.no_wait else args.wait
    if kind != "registry":
        # every lock in it taken first (waiting up to --wait), then renamed away whole
        if kind == "folder":  # its prepared copies; dlsets.remove takes registry names only
            from ..sources.folders import remove_prepared

            removed = remove_prepared(args.name, cache_dir=args.cache_dir, wait=wait)
        else:
            from ..sources import kaggle

            removed = kaggle.remove(args.name, cache_dir=args.cache_dir, wait=wait)
        if removed is None:
            print(f"{shown(args.name)}: nothing cached")
        elif not args.quiet:
            extra = " (the folder itself is untouched)" if kind == "folder" else ""
            print(f"removed {shown(removed)}{extra}")
        return 0
    registry.get(args.name)
    removed = acquire.remove(args.name, cache_dir=args.cache_dir, wait=wait)
    if not args.quiet:
        print(f"removed {shown(removed)}" if removed else f"{shown(args.name)}: nothing cached")
    return 0


def _folder_lines(ds) -> list[str]:
    """What `dlsets info` says about a folder (or Kaggle) dataset."""
    info = ds.info
    lines = [f"{shown(ds.name)}: {info.get('layout')} folder {shown(info.get('path'))}"]
    if info.get("root"):
        lines.append(f"  data in {shown(info['root'])}/")
    what = "mask classes" if info.get("layout") == "segmentation" else "classes"
    lines.append(f"  {len(ds.classes)} {what}: " + ", ".join(map(shown, ds.classes)))
    lines.append(f"  split: {info.get('split_rule')}")
    for note in info.get("notes", []):
        lines.append(f"  note: {shown(note)}")
    for split in ds.split_names:
        s = info["splits"].get(split, {})
        masks = f", masks {tuple(s['masks_shape'])}" if "masks_shape" in s else ""
        counts = s.get("class_counts")
        tail = (f"; per class: {shown_counts(counts)}" if counts and info.get("layout") == "classes"
                else "")
        lines.append(f"  {split}: images {tuple(s.get('images_shape', ()))}{masks}{tail}")
    reasons = info.get("skip_reasons", {})
    if reasons:
        lines.append(f"  skipped {len(reasons)} file(s):")
        for rel, why in list(reasons.items())[:10]:
            lines.append(f"    {shown(rel)}: {shown(why)}")
        if len(reasons) > 10:
            lines.append("    ... (all of them: dlsets.load_folder(...).info['skip_reasons'])")
    lines.append(f"  prepared in {shown(info.get('prepared_dir'))}")
    lines.append(f"  content key {info.get('content_key')}")
    return lines


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _table(header: Sequence[str], rows: list[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
