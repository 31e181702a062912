"""The shard side of ``augment`` and ``verify``: checking the shard options, writing shards
here, one shard of a job array or on Ray, and verifying folders of shards."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import OptionError
from .shared import _H5_SUFFIXES, _augmenter, _progress
from .text import shown


def _shard_folders(names: Sequence[str]) -> list[str]:
    """The arguments of ``verify`` that are folders of shards, not dataset names."""
    from ..scale.layout import is_shard_folder

    return [n for n in names if is_shard_folder(n)]


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
              name=_shard_name(args.name), progress=_progress(args), masks=masks,
              compression=args.compression)
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
        import ray  # noqa: F401  (the extra is there, or the option is refused)

        from ..scale.ray import expand_on_ray, session
    except ImportError as exc:
        raise OptionError(f"--engine ray needs Ray ({exc}): pip install 'dlsets[ray]'") from None
    with session(verbose=bool(args.verbose)):
        return expand_on_ray(x, y, args.target, out, shards=args.shards, **kw)
