"""The ``dlsets`` command line: a thin layer over the Python API that prints."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from ..errors import DlsetsError, OptionError
from .text import (
    ShownFormatter,
    bare_switches,
    call_spans,
    no_such_folder,
    shown,
    shown_counts,
    shown_message,
    unrecognized,
)

# Options with an optional probability (`--hflip` or `--hflip 0.3`) and what they mean alone.
_FLIPS = {"--hflip": "0.5", "--vflip": "0.5"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns 0 on success, 1 on an expected failure, 2 on a usage error."""
    parser = _parser()
    argv = bare_switches(sys.argv[1:] if argv is None else list(argv), _FLIPS)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's own parser (its usage), with the nearest option
        sub = parser.subcommands[args.command]
        sub.error(unrecognized(unknown, [o for a in sub._actions for o in a.option_strings]))
    # Only dlsets' own log, and only for this run: at DEBUG, filelock and urllib3 would bury it.
    log = logging.getLogger("dlsets")
    saved = log.level, log.propagate
    handler = logging.StreamHandler()
    handler.setFormatter(ShownFormatter("dlsets: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    log.propagate = False
    try:
        with warnings.catch_warnings():
            if not args.verbose:
                # NumPy's overflow/invalid-value notes are about pixels, not actions to take.
                warnings.simplefilter("ignore", RuntimeWarning)
            return args.run(args) or 0
    except DlsetsError as exc:
        text = str(exc)
        if isinstance(exc, OptionError):
            text = _as_flags(text)
        text += no_such_folder(text)
        print(f"dlsets: error: {shown_message(text)}", file=sys.stderr)
        return 1
    except OSError as exc:
        # A disk that is full or cannot be written, met where no writer said it better (inside
        # a library such as tensorboardX, say): one line, like every other expected failure.
        from ..store import space

        where = Path(exc.filename) if exc.filename else Path(getattr(args, "out", None) or ".")
        err = space.write_error(exc, where, None, f"dlsets {args.command}")
        if err is exc:
            if exc.errno is None:
                raise
            err = space.path_error(exc, where, f"dlsets {args.command}")
        print(f"dlsets: error: {shown_message(str(err))}", file=sys.stderr)
        return 1
    except MemoryError:
        # Sizes are checked against free memory first; a limit that check cannot see (ulimit)
        # or a library's own allocation still ends in one line, not a traceback.
        print(f"dlsets: error: dlsets {args.command} ran out of memory: ask for less (fewer "
              "images, copies or rows, a smaller batch) or free some memory", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dlsets: {_interrupted(args)}", file=sys.stderr)
        return 130
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]


# Python keywords that the API's messages name, and the options that set them here
_FLAGS = {"rotate": "--rotate", "shift": "--shift", "shear": "--shear", "zoom": "--zoom",
          "perspective": "--perspective", "fill": "--fill", "seed": "--seed",
          "label_mode": "--label-mode", "variant": "--variant", "target": "--target",
          "subset": "--subset", "compression": "--compression", "dtype": "--dtype",
          "channels": "--channels", "size": "--size", "color": "--color", "resize": "--resize",
          "test": "--test", "mask_classes": "--mask-classes", "mask_palette": "--mask-palette",
          "overwrite": "--overwrite",
          "out": "--out", "logdir": "--tensorboard", "hflip": "--hflip", "vflip": "--vflip"}
_KEYWORD = re.compile(r"\b(" + "|".join(_FLAGS) + r")=('[^']*'|\([^)]*\)|[^\s;,:)]+)")


def _as_flags(text: str) -> str:
    """An OptionError's ``rotate=400.0`` / ``label_mode='fine'`` as the options a CLI user
    types (``--rotate 400.0``, ``--label-mode fine``). Keywords inside a call's repr
    (``RandomAffine(rotate=(-15.0, 15.0))``) stay as they are: they describe an object, not
    an option; a ``(CLI: ...)`` remark for API users goes, since the text now says it."""
    def flag(m: re.Match) -> str:
        if any(lo <= m.start() < hi for lo, hi in calls):
            return m.group(0)
        value = m.group(2).strip("'")
        if value == "True":  # a switch: the flag alone
            return _FLAGS[m.group(1)]
        if value.startswith("(") and value.endswith(")"):
            value = " ".join(v.strip() for v in value[1:-1].split(","))
        return f"{_FLAGS[m.group(1)]} {value}"

    text = re.sub(r" ?\(CLI: [^()]*\)", "", text)
    calls = call_spans(text)
    return _KEYWORD.sub(flag, text).replace(" (wait=0)", "")


def _progress(args) -> bool | None:
    return False if args.quiet else None


# --- a dataset name, a folder or a Kaggle dataset: one resolution for every command ---------


def _source_kind(name: str) -> str:
    """"kaggle" for ``kaggle:...``, "folder" for a path, "registry" for a dataset name.

    A name with a path separator, or starting with "." or "~", is a folder; so is a bare word
    that is no registry name but an existing folder (``./mnist`` reaches a folder that a
    registry name shadows)."""
    import os

    from ..sources import registry

    if name.startswith("kaggle:"):
        return "kaggle"
    if "/" in name or os.sep in name or name.startswith((".", "~")):
        return "folder"
    if name in registry.names():
        spec = registry.get(name)
        return "kaggle-entry" if spec.format == "kaggle" else "registry"
    return "folder" if Path(name).is_dir() else "registry"


def _folder_options(args) -> dict:
    """load_folder keywords from the folder options a command was given."""
    out = {}
    if getattr(args, "size", None):
        out["size"] = tuple(args.size)
    for key in ("color", "resize", "test", "mask_classes"):
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    if getattr(args, "split_seed", None) is not None:
        out["seed"] = args.split_seed
    if getattr(args, "mask_palette", None) is not None:
        from ..formats.palette import name, read

        out["mask_palette"] = {name(code): k for code, k in read(args.mask_palette)}
    return out


def _load(args, name: str, **kw):
    """The Dataset behind ``name``, whatever it names (see :func:`_source_kind`)."""
    kind = _source_kind(name)
    if kind == "registry":
        from ..sources import loaders

        return loaders.load(name, cache_dir=args.cache_dir, progress=_progress(args), **kw)
    variant, extra = kw.pop("variant", None), kw.pop("extra", False)
    if variant is not None or extra:
        raise OptionError(f"--variant and --extra apply to registry datasets with variants or "
                          f"optional splits (emnist, svhn, stl10), not to {name}")
    if kind == "kaggle-entry":
        from ..sources import kaggle

        return kaggle.load_entry(name, cache_dir=args.cache_dir, progress=_progress(args),
                                 **_folder_options(args), **kw)
    from ..sources.folders import load_folder

    kw.pop("label_mode", None)
    return load_folder(name, cache_dir=args.cache_dir, progress=_progress(args),
                       **_folder_options(args), **kw)


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


def _interrupted(args) -> str:
    """What Ctrl-C left behind, for the command that was running."""
    if args.command in ("fetch", "verify"):
        return ("interrupted; nothing half-written was left under a final name. Run the command "
                "again (an interrupted download continues where it stopped).")
    out = getattr(args, "out", None)
    if args.command == "augment" and out and (
            getattr(args, "shards", None) is not None or str(out).endswith(("/", os.sep))
            or Path(out).is_dir()) and getattr(args, "format", None) != "caffe":
        from ..scale.shards import SHARD_FILE

        done = ([p for p in Path(out).iterdir() if SHARD_FILE.fullmatch(p.name)]
                if Path(out).is_dir() else [])
        return (f"interrupted; {len(done)} complete shard(s) in {shown(out)} are kept (the one "
                "being written was not). Run the same command again to write the rest.")
    if out:
        return (f"interrupted; {shown(out)} was not written (nothing half-written is left). Run "
                "the command again to write it.")
    return "interrupted; nothing half-written was left under a final name."


def _output(args, suffixes: tuple[str, ...], what: str) -> Path:
    """--out checked before any work: its extension, that a file can be written there, and
    that a file already there is a dlsets output (or --overwrite was given)."""
    from ..store import space, stamps

    out = Path(args.out)
    if suffixes and out.suffix.lower() not in suffixes:
        raise OptionError(f"--out {args.out}: {what}")
    space.check_output(out, f"--out {args.out}")
    if getattr(args, "overwrite", None) is not None:
        stamps.check_replace(out, args.overwrite, "--out")
    return out


def _cmd_list(args) -> int:
    from ..sources import acquire, loaders, registry
    from ..store import elsewhere

    rows, nearby = [], False
    for name in registry.names():
        spec = registry.get(name)
        if spec.format == "kaggle":
            from ..sources import kaggle

            rows.append((name, "?", kaggle.status(name, cache_dir=args.cache_dir),
                         f"{spec.title}  (user: kaggle {spec.extra['kaggle']})"))
            continue
        size = sum(spec.files[f].size or 0 for f in spec.default_files())
        # status() hashes nothing: listing must stay instant however much is cached
        have = {s.file for s in acquire.status(name, cache_dir=args.cache_dir) if s.verified}
        state = "cached" if any(set(s) <= set(have) for s in spec.file_sets) else "-"
        if any(loaders.prepared_info(name, cache_dir=args.cache_dir, variant=v) is not None
               for v in (list(spec.variants) or [None])):
            state = "prepared" if state == "-" else "cached, prepared"
        origin = "" if spec.builtin else f"  (user: like {spec.like})"
        if state == "-" and elsewhere.hint(name, args.cache_dir):
            state = "- (in ./cache)"
            nearby = True
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


def _shard_folders(names: Sequence[str]) -> list[str]:
    """The arguments of ``verify`` that are folders of shards, not dataset names."""
    from ..scale.shards import INDEX

    def folder(n: str) -> bool:
        p = Path(n)
        # a folder of images (see _source_kind) holds neither an index nor shard entries
        return p.is_dir() and ((p / INDEX).is_file() or any(p.glob(".*-of-*.json")))

    return [n for n in names if folder(n)]


def _verify_shards(folders: Sequence[str], args) -> int:
    from ..scale.shards import verify_shards

    bad = 0
    for f in folders:
        report = verify_shards(f, repair=not args.no_repair, progress=_progress(args))
        problems = not report.complete
        bad += problems
        if problems or not args.quiet:
            print("\n".join(map(shown, report.describe())))
    return 1 if bad else 0


def _cmd_verify(args) -> int:
    from ..common import config
    from ..sources import acquire, loaders, registry

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
    if args.names:
        prepared = args.names
    else:
        root, known = config.cache_root(args.cache_dir), set(registry.names())
        prepared = sorted(d.parent.name for d in root.glob("*/prepared") if d.parent.name in known)
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
    from ..common import config
    from ..sources import folders, kaggle

    root = config.cache_root(args.cache_dir)
    checked = bad = 0
    for slot in sorted(p for p in (root / folders.FOLDERS_DIR).glob("*") if p.is_dir()):
        problems = folders.verify_slot(slot, repair=not args.no_repair)
        checked += 1
        bad += bool(problems)
        for line in problems:
            print(line)
        if not problems and not args.quiet:
            print(f"{slot}: prepared arrays: ok")
    for store in sorted(p for p in (root / kaggle.KAGGLE_DIR).glob("*/*") if p.is_dir()):
        name = f"kaggle:{store.parent.name}/{store.name}"
        problems = kaggle.verify(name, cache_dir=args.cache_dir, repair=not args.no_repair)
        checked += 1
        bad += bool(problems)
        for line in problems:
            print(f"{shown(name)}: {shown(line)}")
        if not problems and not args.quiet:
            print(f"{shown(name)}: ok")
    return checked, bad


def _verify_others(args, others: list[str], names: list[str]) -> int:
    """verify for folders and Kaggle datasets (then the registry names, if any)."""
    from ..sources import folders

    bad = 0
    for name in others:
        if _source_kind(name) == "folder":
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
    if names:
        args.names = names
        return max(_cmd_verify(args), 1 if bad and args.no_repair else 0)
    return 1 if bad and args.no_repair else 0


def _cmd_path(args) -> int:
    from ..sources import registry
    from ..store import cache

    kind = _source_kind(args.name)
    if kind != "registry":
        print(_cache_place(args, kind))
        return 0
    registry.get(args.name)
    print(cache.dataset_dir(args.name, args.cache_dir))
    return 0


def _cache_place(args, kind: str) -> Path:
    """Where the cache keeps what it made of a folder or Kaggle dataset."""
    if kind == "folder":
        from ..sources.folders import folder_slot

        return folder_slot(args.name, args.cache_dir)
    from ..sources import kaggle

    return kaggle.dataset_dir(args.name, args.cache_dir)


def _cmd_remove(args) -> int:
    from ..sources import acquire, registry

    kind = _source_kind(args.name)
    wait = 0.0 if args.no_wait else args.wait
    if kind != "registry":
        from ..store.removal import remove_tree

        # every lock in it taken first (waiting up to --wait), then renamed away whole
        place = _cache_place(args, kind)
        if remove_tree(place, args.name, wait) is None:
            print(f"{shown(args.name)}: nothing cached")
        elif not args.quiet:
            extra = " (the folder itself is untouched)" if kind == "folder" else ""
            print(f"removed {shown(place)}{extra}")
        return 0
    registry.get(args.name)
    removed = acquire.remove(args.name, cache_dir=args.cache_dir, wait=wait)
    if not args.quiet:
        print(f"removed {shown(removed)}" if removed else f"{shown(args.name)}: nothing cached")
    return 0


def _cmd_export(args) -> int:
    out = Path(args.out)
    by_suffix = {".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5", ".npz": "npz"}.get(
        out.suffix.lower())
    fmt = args.format or by_suffix
    if fmt is None:
        raise OptionError(f"--out {out}: cannot tell the format from the name; give --format "
                          "hdf5, npz, caffe or convnetjs, or a name ending in .h5 or .npz")
    if by_suffix and by_suffix != fmt:
        raise OptionError(f"--out {out} ends in {out.suffix} but --format is {fmt}; "
                          "make them agree")
    _check_folder_options(args, fmt)
    if fmt in ("hdf5", "npz"):  # one file: checked before any work (folders: by their writer)
        _output(args, (), "")
    ds = _load(args, args.name, dtype=args.dtype, channels=args.channels,
               label_mode=args.label_mode, variant=args.variant, extra=args.extra or False)
    if fmt == "convnetjs" and any(ds[s].masks is not None for s in ds.split_names):
        raise OptionError(f"{shown(args.name)} has segmentation masks, which --format convnetjs "
                          "does not carry; nothing was written. Give --format hdf5 (--out "
                          "FILE.h5), npz (--out FILE.npz) or caffe: they keep the masks")
    if fmt == "hdf5":
        ds.to_hdf5(out, compression=args.compression, overwrite=args.overwrite)
    elif fmt == "caffe":
        from ..outputs.caffe import to_caffe

        to_caffe(ds, out, value_range=tuple(args.range or (0.0, 1.0)),
                 max_file_bytes=_file_bytes(args), progress=_progress(args))
    elif fmt == "convnetjs":
        ds.to_convnetjs(out, batch_size=args.batch_size)
    else:
        ds.to_npz(out, overwrite=args.overwrite)
    if not args.quiet:
        print(f"wrote {shown(out)}" + ("/" if fmt in ("caffe", "convnetjs") else ""))
    return 0


def _check_folder_options(args, fmt: str) -> None:
    """The options of the folder outputs (caffe, convnetjs) only with them, and theirs only."""
    if fmt == "caffe" or fmt == "convnetjs":
        if getattr(args, "dtype", "uint8") != "uint8" or getattr(args, "channels", None):
            raise OptionError(f"--dtype and --channels do not apply to --format {fmt}: Caffe "
                              "gets float32 (N, C, H, W) scaled into --range, ConvNetJS uint8 "
                              "rows; leave them out")
    given = {"--range": args.range is not None, "--max-file-mb": args.max_file_mb is not None,
             "--batch-size": getattr(args, "batch_size", None) is not None}
    allowed = {"caffe": ("--range", "--max-file-mb"), "convnetjs": ("--batch-size",)}
    for flag, present in given.items():
        if present and flag not in allowed.get(fmt, ()):
            owner = next(f for f, flags in allowed.items() if flag in flags)
            raise OptionError(f"{flag} applies to --format {owner} only, not {fmt}")
    if fmt == "convnetjs" and getattr(args, "extra", None):
        raise OptionError("--extra does not apply to --format convnetjs: the demos read train "
                          "and test only")


def _file_bytes(args) -> int:
    from ..outputs.caffe import DEFAULT_MAX_FILE_BYTES

    return DEFAULT_MAX_FILE_BYTES if args.max_file_mb is None else int(args.max_file_mb * 2**20)


def _augmenter(args):
    from ..augment import Augmenter

    aug = Augmenter(
        rotate=args.rotate,
        shift=args.shift,
        shear=args.shear,
        zoom=tuple(args.zoom) if args.zoom else None,
        elastic=tuple(args.elastic) if args.elastic else None,
        perspective=args.perspective,
        hflip=args.hflip,
        vflip=args.vflip,
        border=args.border,
        fill=args.fill,
        seed=args.seed,
    )
    if aug.identity:
        print("dlsets: warning: no transform given (--rotate, --shift, ...): the copies will "
              "equal their originals", file=sys.stderr)
    return aug


def _cmd_augment(args) -> int:
    from ..augment import expand_to_hdf5, take_subset
    from ..formats.h5 import hdf5_bytes
    from ..sources import registry
    from ..store import space

    fmt = args.format or "hdf5"
    _check_folder_options(args, fmt)
    if fmt == "caffe":
        if args.shards is not None or args.shard is not None or args.engine != "local":
            raise OptionError("--shards, --shard and --engine apply to hdf5 and webdataset "
                              "shards; --format caffe splits its files by --max-file-mb")
        sharded = False
    else:
        sharded = _shard_options(args)
    is_h5 = Path(args.out).suffix.lower() in _H5_SUFFIXES
    if not sharded and fmt == "hdf5" and not is_h5:
        raise OptionError(f"--out {args.out}: augment writes HDF5; give a name ending in .h5, "
                          "a folder (DIR/) for shards, or --format caffe and a folder")
    if fmt == "caffe" and is_h5:
        raise OptionError(f"--out {args.out}: --format caffe writes a folder (list files and "
                          "several .h5 files); give a folder name")
    if not sharded and fmt == "hdf5":
        out = _output(args, _H5_SUFFIXES, "augment writes HDF5; give a name ending in .h5")
        if _source_kind(args.name) == "registry":
            # Before loading anything: the output's size is known from the layout and --target.
            spec = registry.get(args.name)
            space.need_disk(out.absolute().parent, hdf5_bytes(args.target, spec.image_shape),
                            f"--target {args.target}: writing {args.target:,} samples to {out}",
                            " or ask for a smaller --target")
    ds = _load(args, args.name, variant=args.variant)
    x, y, masks = ds.train.images, ds.train.labels, ds.train.masks
    if args.subset:
        _at_most("--subset", args.subset, len(x), args.name)
        got = take_subset(x, y, args.subset, seed=args.seed, masks=masks)
        x, y, masks = got if masks is not None else (*got, None)
    if sharded:
        return _augment_shards(args, ds, x, y, masks)
    if args.target < len(x):
        raise OptionError(
            f"--target {args.target} is smaller than the {len(x)} training images it starts "
            f"from (originals come first): give --target >= {len(x)}, or --subset K with "
            f"K <= {args.target}"
        )
    if fmt == "caffe":
        from ..outputs.caffe import expand_to_caffe

        expand_to_caffe(x, y, args.target, args.out, augmenter=_augmenter(args), seed=args.seed,
                        balance=args.balance, classes=ds.classes, progress=_progress(args),
                        value_range=tuple(args.range or (0.0, 1.0)),
                        max_file_bytes=_file_bytes(args), masks=masks)
    else:
        expand_to_hdf5(
            x,
            y,
            target=args.target,
            out=args.out,
            augmenter=_augmenter(args),
            seed=args.seed,
            balance=args.balance,
            classes=ds.classes,
            progress=_progress(args),
            masks=masks,
            overwrite=args.overwrite,
        )
    if not args.quiet:
        print(f"wrote {args.target} samples to {shown(args.out)}"
              + (" (images, labels and masks)" if masks is not None else ""))
    return 0


_H5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def _shard_options(args) -> bool:
    """Whether ``augment`` writes a folder of shards; refuses contradictory options early."""
    out = str(args.out)
    folder = out.endswith(("/", os.sep)) or Path(out).is_dir()
    sharded = (folder or args.shards is not None or args.shard is not None
               or args.engine != "local" or args.format == "webdataset")
    if not sharded:
        return False
    if not folder and Path(out).suffix.lower() in (*_H5_SUFFIXES, ".tar"):
        raise OptionError(f"--out {out}: shards go into a folder (named NAME-00000-of-0000N.h5 "
                          "or .tar inside it): give --out DIR/, or drop --shards/--shard/"
                          "--engine/--format webdataset to write one .h5 file")
    if args.shard is not None and args.shards is None:
        raise OptionError("--shard I needs --shards N (the same N in every task of the array)")
    if args.shard is not None and args.engine != "local":
        raise OptionError(f"--shard runs one shard in this process; --engine {args.engine} "
                          "runs them all: give one or the other")
    if args.shards is not None and args.shards > args.target:
        raise OptionError(f"--shards {args.shards} is more than --target {args.target}: every "
                          f"shard needs at least one sample; give --shards <= {args.target}")
    if args.shard is not None and not 0 <= args.shard < args.shards:
        raise OptionError(f"--shard {args.shard} is outside 0..{args.shards - 1} "
                          f"(--shards {args.shards} numbers them from 0)")
    return True


def _augment_shards(args, ds, x, y, masks=None) -> int:
    from ..scale import shards

    if args.target < len(x):
        raise OptionError(
            f"--target {args.target} is smaller than the {len(x)} training images it starts "
            f"from (originals come first): give --target >= {len(x)}, or --subset K with "
            f"K <= {args.target}")
    kw = dict(augmenter=_augmenter(args), seed=args.seed, balance=args.balance,
              classes=ds.classes, format=args.format or "hdf5",
              name=_shard_name(args.name), progress=_progress(args), masks=masks)
    out = Path(args.out)
    if args.shard is not None:
        entry = shards.expand_shard(x, y, args.target, out, shard=args.shard,
                                    shards=args.shards, **kw)
        if not args.quiet:
            print(f"shard {args.shard} of {args.shards}: {out / entry['file']} "
                  f"({entry['count']} samples)")
            if (out / shards.INDEX).is_file():
                print(f"every shard is there: wrote {out / shards.INDEX}")
        return 0
    if args.engine == "ray":
        index = _on_ray(x, y, args, out, kw)
    else:
        index = shards.expand_to_shards(x, y, args.target, out, shards=args.shards, **kw)
    if not args.quiet:
        doc = shards.read_index(out)
        print(f"{out}/ holds {doc['count']} samples in {len(doc['shards'])} shards; index: "
              f"{index}")
    return 0


def _shard_name(name: str) -> str:
    """The dataset's name as a shard file prefix (a path's last part, for folders)."""
    return Path(name).name or "augmented"


def _on_ray(x, y, args, out: Path, kw: dict) -> Path:
    try:
        import ray

        from ..scale.ray import expand_on_ray
    except ImportError as exc:
        raise OptionError(f"--engine ray needs Ray ({exc}): pip install 'dlsets[ray]'") from None
    started = not ray.is_initialized()
    if started:
        # Ray's own notices (token authentication, "Started a local Ray instance", its
        # workers' output) are for -v; errors still show
        quiet = logging.WARNING if args.verbose else logging.ERROR
        logging.getLogger("ray").setLevel(quiet)
        from ..scale.ray import start

        start(ray, logging_level=quiet, log_to_driver=bool(args.verbose))
    try:
        return expand_on_ray(x, y, args.target, out, shards=args.shards, **kw)
    finally:
        if started and ray.is_initialized():
            ray.shutdown()


def _cmd_preview(args) -> int:
    from ..augment import preview_grid, save_png, take_subset
    from ..augment.preview import check_grid, default_scale
    from ..sources import registry

    if args.out is None and args.tensorboard is None:
        raise OptionError("preview writes a PNG (--out FILE.png), TensorBoard summaries "
                          "(--tensorboard LOGDIR) or both: give at least one")
    if args.out is not None:
        _output(args, (".png",), "preview writes PNG; give a name ending in .png")
    if _source_kind(args.name) == "registry":
        # Before loading anything: the grid's size follows from the layout and the options.
        check_grid(args.rows, args.copies, registry.get(args.name).image_shape,
                   scale=args.scale or 1)
    ds = _load(args, args.name, variant=args.variant)
    _at_most("--rows", args.rows, len(ds.train.images), args.name)
    got = take_subset(ds.train.images, ds.train.labels, args.rows, seed=args.seed,
                      masks=ds.train.masks)
    x = got[0]
    masks = got[2] if ds.train.masks is not None else None
    aug = _augmenter(args)
    if args.out is not None:
        grid = preview_grid(x, aug, n=args.rows, copies=args.copies, seed=args.seed,
                            masks=masks)
        scale = args.scale if args.scale is not None else default_scale(grid.shape[1])
        save_png(grid, args.out, scale=scale, overwrite=args.overwrite)
        if not args.quiet:
            print(f"wrote {shown(args.out)}")
    if args.tensorboard is not None:
        from ..outputs.tensorboard import write_tensorboard

        path = write_tensorboard(args.tensorboard, x, aug, n=args.rows, copies=args.copies,
                                 seed=args.seed, classes=ds.classes,
                                 labels={"train": ds.train.labels, "test": ds.test.labels})
        if not args.quiet:
            print(f"wrote {shown(path)} (tensorboard --logdir {shown(args.tensorboard)})")
    return 0


def _at_most(flag: str, value: int, available: int, name: str) -> None:
    if value > available:
        raise OptionError(
            f"{flag} {value} is more than the {available} training images of {name}: "
            f"give {flag} <= {available}"
        )


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


def _seconds(text: str, high: float | None = None, zero_ok: bool = False) -> float:
    from ..common.config import MAX_DEADLINE

    high = MAX_DEADLINE if high is None else high
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (0 <= value <= high and (value > 0 or zero_ok)):  # also refuses nan and inf
        span = f"from 0 to {high:.0f}" if zero_ok else f"above 0 and at most {high:.0f}"
        raise argparse.ArgumentTypeError(f"expected a number of seconds {span}, got {text}")
    return value


def _wait_seconds(text: str) -> float:
    from ..common.config import MAX_SECONDS

    return _seconds(text, MAX_SECONDS, zero_ok=True)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


AUGMENT_FORMATS = ("hdf5", "webdataset", "caffe")


def _overwrite_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--overwrite", action="store_true",
                    help="replace an existing --out file that dlsets did not write (one it "
                    "wrote is replaced anyway; a folder never is)")


def _variant_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--variant", metavar="V", default=None,
                    help="which of a dataset's variants (emnist: byclass, bymerge, balanced, "
                    "letters, digits, mnist; default balanced)")


def _caffe_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--range", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                    help="caffe: scale pixels into [LO, HI] (default 0 1)")
    sp.add_argument("--max-file-mb", type=_positive_float, metavar="MB", default=None,
                    help="caffe: largest .h5 file in MiB (default 512; Caffe reads one whole)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**64 - 1, got {text}"
                                         ) from None
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**64 - 1, got {text}")
    return value


def _common(suppress: bool) -> argparse.ArgumentParser:
    """Options every command takes, before or after the command name. On the subcommands their
    defaults are suppressed, so ``dlsets -q fetch X`` is not undone by fetch's own default."""
    kw = {"default": argparse.SUPPRESS} if suppress else {}
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache-dir", metavar="DIR", **kw,
                        help="cache folder (default: $DLSETS_CACHE, else $XDG_CACHE_HOME/dlsets, "
                        "else ~/.cache/dlsets)")
    common.add_argument("-q", "--quiet", action="store_true", **kw,
                        help="no progress bars or chatter")
    common.add_argument("-v", "--verbose", action="store_true", **kw, help="log what happens")
    return common


_NAME_HELP = ("a dataset name (dlsets list), a folder of images (./my-photos) or a Kaggle "
              "dataset (kaggle:OWNER/DATASET[/versions/N])")


def _parser() -> argparse.ArgumentParser:
    common = _common(suppress=True)
    p = argparse.ArgumentParser(
        prog="dlsets",
        description="Fetch, verify, load and augment the classic deep-learning image datasets.",
        parents=[_common(suppress=False)],
    )
    p.add_argument("--version", action="version", version=f"dlsets {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, parents=[common], help=help, description=help)
        sp.set_defaults(run=func)
        return sp

    folder = argparse.ArgumentParser(add_help=False)
    g = folder.add_argument_group("for a folder or kaggle:OWNER/DATASET")
    g.add_argument("--size", type=_positive_int, nargs=2, metavar=("H", "W"),
                   help="resize every image to H x W (default: keep their common size)")
    g.add_argument("--color", choices=("rgb", "grayscale"), default=None,
                   help="colour or one channel (default rgb)")
    g.add_argument("--resize", choices=("stretch", "crop", "pad"), default=None,
                   help="stretch to H x W (default), crop to cover, or pad to fit")
    g.add_argument("--test", type=float, default=None, metavar="FRAC",
                   help="fraction of each class for the test split, when there are no "
                   "train/test folders (default 0.1)")
    g.add_argument("--split-seed", type=int, default=None, metavar="N",
                   help="seed of the train/test split rule (default 0)")
    g.add_argument("--mask-classes", type=_positive_int, default=None, metavar="K",
                   help="segmentation: mask values must be 0..K-1 (others are skipped)")
    g.add_argument("--mask-palette", default=None, metavar="FILE",
                   help="segmentation with colour-coded masks: a JSON object of colours "
                   '("#rrggbb" or "r,g,b") to class indices')

    def add_folder(name: str, func, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, parents=[common, folder], help=help, description=help)
        sp.set_defaults(run=func)
        return sp

    add("list", _cmd_list, "list the datasets dlsets knows and what is cached")
    sp = add_folder("info", _cmd_info, "describe a dataset: source, licence, files, cache state")
    sp.add_argument("name", metavar="NAME", help=_NAME_HELP)

    sp = add_folder("fetch", _cmd_fetch, "download (or import) datasets into the cache, verified")
    sp.add_argument("names", nargs="+", metavar="NAME", help=_NAME_HELP)
    sp.add_argument("--mirror", action="append", default=[], metavar="URL",
                    help="base URL tried before the registry's own (repeatable)")
    sp.add_argument("--from", dest="source_dir", metavar="DIR",
                    help="import files from DIR (recognised by checksum); no network")
    sp.add_argument("--file", action="append", default=[], metavar="FILE",
                    help="fetch only this registry file (repeatable)")
    sp.add_argument("--deadline", type=_seconds, default=None, metavar="SECONDS",
                    help="give up after this long in all (default: $DLSETS_DEADLINE, else none); "
                    "what was downloaded is kept for the next fetch")

    sp = add("verify", _cmd_verify, "re-hash cached files and repair what fails; a folder "
             "(DIR/) of shards: hash every shard against its index")
    sp.add_argument("names", nargs="*", metavar="NAME",
                    help=_NAME_HELP + ", or a folder of shards")
    sp.add_argument("--mirror", action="append", default=[], metavar="URL")
    sp.add_argument("--no-repair", action="store_true", help="report failures, change nothing")
    sp.add_argument("--deadline", type=_seconds, default=None, metavar="SECONDS",
                    help="give up repairs after this long in all (default: $DLSETS_DEADLINE)")

    sp = add("path", _cmd_path, "print a dataset's cache folder")
    sp.add_argument("name", metavar="NAME", help=_NAME_HELP)
    sp = add("remove", _cmd_remove, "delete a dataset's cache folder")
    sp.add_argument("name", metavar="NAME", help=_NAME_HELP)
    sp.add_argument("--wait", type=_wait_seconds, default=60.0, metavar="SECONDS",
                    help="wait this long for a fetch, load or verify of it to finish (default 60)")
    sp.add_argument("--no-wait", action="store_true",
                    help="refuse at once while another process uses the dataset")

    sp = add_folder("export", _cmd_export, "write a dataset as one HDF5 or npz file, or a "
                    "folder for Caffe or ConvNetJS")
    sp.add_argument("name", metavar="NAME", help=_NAME_HELP)
    sp.add_argument("--format", choices=("hdf5", "npz", "caffe", "convnetjs"), default=None,
                    help="default: from the --out extension (.h5/.hdf5 or .npz); caffe: HDF5Data "
                    "files and list files; convnetjs: sprite-sheet PNGs and labels")
    sp.add_argument("--out", required=True, metavar="FILE|DIR",
                    help="file to write (a folder for caffe and convnetjs)")
    sp.add_argument("--compression", choices=("gzip", "lzf"), default=None,
                    help="HDF5 compression (default none: fastest to read)")
    sp.add_argument("--dtype", choices=("uint8", "float32"), default="uint8",
                    help="float32 is scaled to [0, 1] (default uint8)")
    sp.add_argument("--channels", choices=("last", "first"), default=None,
                    help="NHWC or NCHW (default: keras' layout, no channel axis for greyscale)")
    sp.add_argument("--label-mode", choices=("fine", "coarse"), default="fine",
                    help="CIFAR-100: the 100 fine or the 20 coarse classes (default fine)")
    sp.add_argument("--extra", action="append", default=[], metavar="SPLIT",
                    help="also an optional split (svhn: extra; stl10: unlabeled); repeatable")
    _overwrite_option(sp)
    sp.add_argument("--batch-size", type=_positive_int, metavar="N",
                    help="convnetjs: images per PNG (default 3000 greyscale, 1000 colour)")
    _variant_option(sp)
    _caffe_options(sp)

    aug = argparse.ArgumentParser(add_help=False)
    g = aug.add_argument_group("augmentation (each off unless given)")
    g.add_argument("--rotate", type=float, metavar="DEG", help="rotate by up to +-DEG degrees")
    g.add_argument("--shift", type=float, metavar="FRAC", help="shift by up to FRAC of the size")
    g.add_argument("--shear", type=float, metavar="DEG", help="shear by up to +-DEG degrees")
    g.add_argument("--zoom", type=float, nargs=2, metavar=("LO", "HI"), help="scale in [LO, HI]")
    g.add_argument("--elastic", type=float, nargs=2, metavar=("ALPHA", "SIGMA"),
                   help="elastic deformation strength and smoothness")
    g.add_argument("--perspective", type=float, metavar="S",
                   help="largest corner move, as a fraction of the image size (at most 0.25)")
    g.add_argument("--hflip", type=float, nargs="?", const=float(_FLIPS["--hflip"]),
                   default=False, metavar="P",
                   help="mirror left-right with probability P (default 0.5 when given without "
                   "P; off unless given: digits and letters must not mirror)")
    g.add_argument("--vflip", type=float, nargs="?", const=float(_FLIPS["--vflip"]),
                   default=False, metavar="P",
                   help="mirror top-bottom with probability P (default 0.5 when given)")
    g.add_argument("--border", choices=("constant", "reflect", "edge"), default="constant",
                   help="how pixels from outside the image are filled (default constant)")
    g.add_argument("--fill", type=float, default=0, help="fill value for --border constant")
    g.add_argument("--seed", type=_seed, default=0,
                   help="random seed: the same seed gives the same images (default 0)")

    sp = sub.add_parser(
        "augment",
        parents=[common, aug, folder],
        help="expand a dataset's train split to N samples in an HDF5 file",
        description="Expand the train split of NAME to exactly N samples "
        "(originals first, then augmented copies).",
    )
    sp.set_defaults(run=_cmd_augment)
    sp.add_argument("name", metavar="NAME", help=_NAME_HELP)
    sp.add_argument("--target", type=_positive_int, required=True, metavar="N",
                    help="number of samples to write, originals included")
    sp.add_argument("--out", required=True, metavar="FILE",
                    help="HDF5 file to write, or a folder (DIR/) for shards")
    _overwrite_option(sp)
    sp.add_argument("--no-balance", dest="balance", action="store_false",
                    help="copy originals uniformly instead of evening out the classes")
    sp.add_argument("--subset", type=_positive_int, metavar="K",
                    help="start from a stratified subset of K training images")
    g = sp.add_argument_group("output format and shards (shards: --out DIR/)")
    g.add_argument("--format", choices=AUGMENT_FORMATS, default=None,
                   help="hdf5 (default: one .h5 file, or shards in the same layout for --out "
                   "DIR/), webdataset (tar shards) or caffe (a folder of HDF5Data files)")
    g.add_argument("--shards", type=_positive_int, metavar="N",
                   help="split the output into N shard files (default: ~256 MB each)")
    g.add_argument("--shard", type=int, metavar="I",
                   help="write only shard I (0..N-1): one task of a job array")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: in this process; ray: one Ray task per shard on the cluster "
                   "ray.init() finds (RAY_ADDRESS) or a local one")
    _variant_option(sp)
    _caffe_options(sp)

    sp = sub.add_parser("preview", parents=[common, aug, folder],
                        help="PNG grid of originals beside augmented copies",
                        description="Write a PNG grid: each row an original training image "
                        "followed by augmented copies.")
    sp.set_defaults(run=_cmd_preview)
    sp.add_argument("name", metavar="NAME", help=_NAME_HELP)
    sp.add_argument("--out", metavar="PNG", help="PNG file to write")
    _overwrite_option(sp)
    sp.add_argument("--tensorboard", metavar="LOGDIR",
                    help="also (or instead) write TensorBoard image summaries and class "
                    "histograms into LOGDIR (needs dlsets[tensorboard])")
    _variant_option(sp)
    sp.add_argument("--rows", type=_positive_int, default=8,
                    help="original images, one per row (default 8)")
    sp.add_argument("--copies", type=_positive_int, default=7,
                    help="augmented copies beside each original (default 7)")
    sp.add_argument("--scale", type=_positive_int, default=None,
                    help="enlarge the grid by pixel repetition (default: up to 4, keeping "
                    "the grid at most 2,000 pixels wide)")
    p.subcommands = sub.choices
    return p


if __name__ == "__main__":
    sys.exit(main())
