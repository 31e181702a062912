"""The ``dlsets`` command line: a thin layer over the Python API that prints."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import DlsetsError, OptionError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns 0 on success, 1 on an expected failure, 2 on a usage error."""
    parser = _parser()
    args = parser.parse_args(argv)
    # Only dlsets' own log, and only for this run: at DEBUG, filelock and urllib3 would bury it.
    log = logging.getLogger("dlsets")
    saved = log.level, log.propagate
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("dlsets: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    log.propagate = False
    try:
        return args.run(args) or 0
    except DlsetsError as exc:
        print(f"dlsets: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dlsets: {_interrupted(args)}", file=sys.stderr)
        return 130
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]


def _progress(args) -> bool | None:
    return False if args.quiet else None


def _interrupted(args) -> str:
    """What Ctrl-C left behind, for the command that was running."""
    if args.command in ("fetch", "verify"):
        return ("interrupted; nothing half-written was left under a final name. Run the command "
                "again (an interrupted download continues where it stopped).")
    if getattr(args, "out", None):
        return (f"interrupted; {args.out} was not written (nothing half-written is left). Run "
                "the command again to write it.")
    return "interrupted; nothing half-written was left under a final name."


def _output(args, suffixes: tuple[str, ...], what: str) -> Path:
    """--out checked before any work: its extension, and that a file can be written there."""
    from . import space

    out = Path(args.out)
    if suffixes and out.suffix.lower() not in suffixes:
        raise OptionError(f"--out {args.out}: {what}")
    space.check_output(out, f"--out {args.out}")
    return out


def _cmd_list(args) -> int:
    from . import acquire, loaders, registry

    rows = []
    for name in registry.names():
        spec = registry.get(name)
        size = sum(spec.files[f].size or 0 for f in spec.default_files())
        # status() hashes nothing: listing must stay instant however much is cached
        have = {s.file for s in acquire.status(name, cache_dir=args.cache_dir) if s.verified}
        state = "cached" if any(set(s) <= set(have) for s in spec.file_sets) else "-"
        if loaders.prepared_info(name, cache_dir=args.cache_dir) is not None:
            state = "prepared" if state == "-" else "cached, prepared"
        origin = "" if spec.builtin else f"  (user: like {spec.like})"
        rows.append((name, _size(size) if size else "?", state, spec.title + origin))
    _table(("name", "download", "state", "title"), rows)
    return 0


def _cmd_info(args) -> int:
    from . import acquire, loaders, registry

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
    out.append(f"image shape: {tuple(spec.image_shape)}; {len(spec.classes)} classes: "
               + ", ".join(spec.classes))
    if spec.coarse_classes:
        out.append(f"{len(spec.coarse_classes)} coarse classes: " + ", ".join(spec.coarse_classes))
    if len(spec.file_sets) > 1:
        sets = " | ".join(" + ".join(s) for s in spec.file_sets)
        out.append(f"complete file sets (first is downloaded): {sets}")
    out.append("files:")
    for st in acquire.status(args.name, cache_dir=args.cache_dir):
        out.append(f"  {st.describe()}")
    info = loaders.prepared_info(args.name, cache_dir=args.cache_dir)
    if info is None:
        out.append(f"not prepared yet (runs on first load: dlsets.load({args.name!r}))")
    else:
        out.extend(_prepared_lines(info, spec.name))
    print("\n".join(out))
    return 0


def _prepared_lines(info: dict, name: str) -> list[str]:
    lines = ["prepared:"]
    for split in ("train", "test"):
        s = info.get("splits", {}).get(split)
        if not s:
            continue
        counts = s.get("class_counts")
        tail = f"; per class: {counts}" if counts else ""
        lines.append(f"  {split}: images {tuple(s['images_shape'])}, "
                     f"labels {tuple(s['labels_shape'])}{tail}")
    skipped = info.get("skipped") or []
    if skipped:
        names = ", ".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else "")
        lines.append(f"  skipped {len(skipped)} unreadable image(s): {names}")
        if len(skipped) > 10:
            lines.append(f"  (all names: dlsets.load({name!r}).info['skipped'])")
    return lines


def _cmd_fetch(args) -> int:
    from . import acquire

    for name in args.names:
        paths = acquire.fetch(
            name,
            files=args.file or None,
            cache_dir=args.cache_dir,
            mirrors=args.mirror,
            source_dir=args.source_dir,
            progress=_progress(args),
        )
        if not args.quiet:
            for fname, path in paths.items():
                print(f"{name}: {fname} -> {path}")
    return 0


def _cmd_verify(args) -> int:
    from . import acquire, config, loaders, registry

    results = acquire.verify(
        args.names or None,
        cache_dir=args.cache_dir,
        mirrors=args.mirror,
        repair=not args.no_repair,
        progress=_progress(args),
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
        elif not args.quiet and (loaders.prepared_info(name, cache_dir=args.cache_dir)):
            print(f"{name}: prepared arrays: ok")
    if not results and not prepared:
        print("nothing in the cache to verify")
    return 1 if failed or (damaged and args.no_repair) else 0


def _cmd_path(args) -> int:
    from . import cache, registry

    registry.get(args.name)
    print(cache.dataset_dir(args.name, args.cache_dir))
    return 0


def _cmd_remove(args) -> int:
    from . import acquire, registry

    registry.get(args.name)
    removed = acquire.remove(args.name, cache_dir=args.cache_dir)
    if not args.quiet:
        print(f"removed {removed}" if removed else f"{args.name}: nothing cached")
    return 0


def _cmd_export(args) -> int:
    from . import loaders

    out = _output(args, (), "")
    by_suffix = {".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5", ".npz": "npz"}.get(
        out.suffix.lower())
    fmt = args.format or by_suffix
    if fmt is None:
        raise OptionError(f"--out {out}: cannot tell the format from the name; give --format "
                          "hdf5 or npz, or a name ending in .h5 or .npz")
    if by_suffix and by_suffix != fmt:
        raise OptionError(f"--out {out} ends in {out.suffix} but --format is {fmt}; "
                          "make them agree")
    ds = loaders.load(args.name, cache_dir=args.cache_dir, progress=_progress(args),
                      dtype=args.dtype, channels=args.channels, label_mode=args.label_mode)
    if fmt == "hdf5":
        ds.to_hdf5(out, compression=args.compression)
    else:
        ds.to_npz(out)
    if not args.quiet:
        print(f"wrote {out}")
    return 0


def _augmenter(args):
    from .augment import Augmenter

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
    from . import loaders, registry, space
    from .augment import expand_to_hdf5, take_subset
    from .h5 import hdf5_bytes

    out = _output(args, (".h5", ".hdf5", ".hdf"), "augment writes HDF5; give a name ending in .h5")
    # Before loading anything: the output's size is known from the layout and --target.
    spec = registry.get(args.name)
    space.need_disk(out.absolute().parent, hdf5_bytes(args.target, spec.image_shape),
                    f"--target {args.target}: writing {args.target:,} samples to {out}",
                    " or ask for a smaller --target")
    ds = loaders.load(args.name, cache_dir=args.cache_dir, progress=_progress(args))
    x, y = ds.train.images, ds.train.labels
    if args.subset:
        _at_most("--subset", args.subset, len(x), args.name)
        x, y = take_subset(x, y, args.subset, seed=args.seed)
    if args.target < len(x):
        raise OptionError(
            f"--target {args.target} is smaller than the {len(x)} training images it starts "
            f"from (originals come first): give --target >= {len(x)}, or --subset K with "
            f"K <= {args.target}"
        )
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
    )
    if not args.quiet:
        print(f"wrote {args.target} samples to {args.out}")
    return 0


def _cmd_preview(args) -> int:
    from . import loaders, registry
    from .augment import preview_grid, save_png, take_subset
    from .augment.preview import check_grid

    _output(args, (".png",), "preview writes PNG; give a name ending in .png")
    # Before loading anything: the grid's size follows from the layout and the options.
    check_grid(args.rows, args.copies, registry.get(args.name).image_shape, scale=args.scale)
    ds = loaders.load(args.name, cache_dir=args.cache_dir, progress=_progress(args))
    _at_most("--rows", args.rows, len(ds.train.images), args.name)
    x, y = take_subset(ds.train.images, ds.train.labels, args.rows, seed=args.seed)
    grid = preview_grid(x, _augmenter(args), n=args.rows, copies=args.copies, seed=args.seed)
    save_png(grid, args.out, scale=args.scale)
    if not args.quiet:
        print(f"wrote {args.out}")
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


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _seed(text: str) -> int:
    value = int(text)
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

    add("list", _cmd_list, "list the datasets dlsets knows and what is cached")
    sp = add("info", _cmd_info, "describe a dataset: source, licence, files, cache state")
    sp.add_argument("name", metavar="NAME")

    sp = add("fetch", _cmd_fetch, "download (or import) datasets into the cache, verified")
    sp.add_argument("names", nargs="+", metavar="NAME")
    sp.add_argument("--mirror", action="append", default=[], metavar="URL",
                    help="base URL tried before the registry's own (repeatable)")
    sp.add_argument("--from", dest="source_dir", metavar="DIR",
                    help="import files from DIR (recognised by checksum); no network")
    sp.add_argument("--file", action="append", default=[], metavar="FILE",
                    help="fetch only this registry file (repeatable)")

    sp = add("verify", _cmd_verify, "re-hash cached files and repair what fails")
    sp.add_argument("names", nargs="*", metavar="NAME")
    sp.add_argument("--mirror", action="append", default=[], metavar="URL")
    sp.add_argument("--no-repair", action="store_true", help="report failures, change nothing")

    sp = add("path", _cmd_path, "print a dataset's cache folder")
    sp.add_argument("name", metavar="NAME")
    sp = add("remove", _cmd_remove, "delete a dataset's cache folder")
    sp.add_argument("name", metavar="NAME")

    sp = add("export", _cmd_export, "write a dataset as one HDF5 or npz file")
    sp.add_argument("name", metavar="NAME")
    sp.add_argument("--format", choices=("hdf5", "npz"), default=None,
                    help="default: from the --out extension (.h5/.hdf5 or .npz)")
    sp.add_argument("--out", required=True, metavar="FILE", help="file to write")
    sp.add_argument("--compression", choices=("gzip", "lzf"), default=None,
                    help="HDF5 compression (default none: fastest to read)")
    sp.add_argument("--dtype", choices=("uint8", "float32"), default="uint8",
                    help="float32 is scaled to [0, 1] (default uint8)")
    sp.add_argument("--channels", choices=("last", "first"), default=None,
                    help="NHWC or NCHW (default: keras' layout, no channel axis for greyscale)")
    sp.add_argument("--label-mode", choices=("fine", "coarse"), default="fine",
                    help="CIFAR-100: the 100 fine or the 20 coarse classes (default fine)")

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
    g.add_argument("--hflip", action="store_true", help="mirror left-right half of the time "
                   "(off by default: digits and letters must not mirror)")
    g.add_argument("--vflip", action="store_true", help="mirror top-bottom half of the time")
    g.add_argument("--border", choices=("constant", "reflect", "edge"), default="constant",
                   help="how pixels from outside the image are filled (default constant)")
    g.add_argument("--fill", type=float, default=0, help="fill value for --border constant")
    g.add_argument("--seed", type=_seed, default=0,
                   help="random seed: the same seed gives the same images (default 0)")

    sp = sub.add_parser(
        "augment",
        parents=[common, aug],
        help="expand a dataset's train split to N samples in an HDF5 file",
        description="Expand the train split of NAME to exactly N samples "
        "(originals first, then augmented copies).",
    )
    sp.set_defaults(run=_cmd_augment)
    sp.add_argument("name", metavar="NAME")
    sp.add_argument("--target", type=_positive_int, required=True, metavar="N",
                    help="number of samples to write, originals included")
    sp.add_argument("--out", required=True, metavar="FILE", help="HDF5 file to write")
    sp.add_argument("--no-balance", dest="balance", action="store_false",
                    help="copy originals uniformly instead of evening out the classes")
    sp.add_argument("--subset", type=_positive_int, metavar="K",
                    help="start from a stratified subset of K training images")

    sp = sub.add_parser("preview", parents=[common, aug], help="PNG grid of originals beside "
                        "augmented copies", description="Write a PNG grid: each row an original "
                        "training image followed by augmented copies.")
    sp.set_defaults(run=_cmd_preview)
    sp.add_argument("name", metavar="NAME")
    sp.add_argument("--out", required=True, metavar="PNG", help="PNG file to write")
    sp.add_argument("--rows", type=_positive_int, default=8,
                    help="original images, one per row (default 8)")
    sp.add_argument("--copies", type=_positive_int, default=7,
                    help="augmented copies beside each original (default 7)")
    sp.add_argument("--scale", type=_positive_int, default=4,
                    help="enlarge the grid by pixel repetition (default 4)")
    return p


if __name__ == "__main__":
    sys.exit(main())
