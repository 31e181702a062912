"""What the command modules share: what a NAME argument names and loading it, the checks of
--out and of the folder outputs' options, the Augmenter the options describe."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import OptionError

# The names `augment` writes one HDF5 file to (anything else is a folder of shards or an error).
_H5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def _progress(args) -> bool | None:
    return False if args.quiet else None


# --- a dataset name, a folder or a Kaggle dataset: one resolution for every command ---------


def _source_kind(name: str) -> str:
    """What ``name`` names, as the table of sources decides (see dlsets.sources.table):
    "kaggle" for ``kaggle:...``, "kaggle-entry" for a registry entry of a Kaggle dataset,
    "folder" for a folder of images, "registry" for a registry dataset."""
    from ..sources.kaggle_source import is_entry
    from ..sources.table import source_for

    kind = source_for(name).kind
    if kind == "hdf5-file":
        return "folder"  # the commands take folders of images, not the files dlsets wrote
    if kind == "kaggle" and is_entry(name):
        return "kaggle-entry"
    return kind


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


def _check_compression(args, fmt: str) -> None:
    """--compression is for HDF5 files and shards only: refused with another --format (before
    any work), and checked (lz4 needs its extra)."""
    compression = getattr(args, "compression", None)
    if compression is None:
        return
    if fmt != "hdf5":
        raise OptionError(f"--compression {compression} applies to HDF5 output (--format hdf5); "
                          f"--format {fmt} is written uncompressed: leave --compression out")
    from ..formats.h5 import check_compression

    check_compression(compression)


def _refuse_outputs(name: str, command: str) -> None:
    """A file or shard folder dlsets wrote, given where the commands take image folders: say
    what reads it instead of "not a folder" or "no class folders"."""
    from ..scale.layout import is_shard_folder
    from ..sources.h5file import is_file

    if is_file(name):
        raise OptionError(f"{name} is an HDF5 file, not a folder of images: `dlsets {command}` "
                          "takes a dataset name or a folder of images. In Python, "
                          f"dlsets.load({str(name)!r}) reads it; `dlsets verify {name}` checks it")
    if is_shard_folder(name):
        raise OptionError(f"{name} is a folder of shards, not a folder of images: in Python, "
                          f"dlsets.load_shards({str(name)!r}) reads it; `dlsets verify {name}/` "
                          "checks it")


def _load(args, name: str, **kw):
    """The Dataset behind ``name``, whatever it names (see :func:`_source_kind`)."""
    kind = _source_kind(name)
    if kind == "folder":
        _refuse_outputs(name, args.command)
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


def _outside_cache(args, *flags: str) -> None:
    """Each output option given (--out, --tensorboard) lies outside the cache in use
    (--cache-dir or the configured one): checked before any work, for files and folders."""
    from ..store.cache import check_outside

    for flag in flags:
        value = getattr(args, flag.removeprefix("--"), None)
        if value is not None:
            check_outside(value, f"{flag} {value}", args.cache_dir)


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


def _at_most(flag: str, value: int, available: int, name: str) -> None:
    if value > available:
        raise OptionError(
            f"{flag} {value} is more than the {available} training images of {name}: "
            f"give {flag} <= {available}"
        )
