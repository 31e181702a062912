"""The augmentation commands: ``augment`` (the train split expanded into HDF5, shards or a
Caffe folder) and ``preview`` (a PNG grid or TensorBoard summaries)."""

from __future__ import annotations

from pathlib import Path

from ..errors import OptionError
from .shards import _augment_shards, _shard_options
from .shared import (
    _H5_SUFFIXES,
    _at_most,
    _augmenter,
    _check_compression,
    _check_folder_options,
    _file_bytes,
    _load,
    _output,
    _outside_cache,
    _progress,
    _source_kind,
)
from .text import shown


def _cmd_augment(args) -> int:
    from ..augment import expand_to_hdf5, take_subset
    from ..sources.builtin import need_hdf5_room

    _outside_cache(args, "--out")
    fmt = args.format or "hdf5"
    _check_folder_options(args, fmt)
    _check_compression(args, fmt)
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
            need_hdf5_room(args.name, args.target, out,
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
            compression=args.compression,
        )
    if not args.quiet:
        print(f"wrote {args.target} samples to {shown(args.out)}"
              + (" (images, labels and masks)" if masks is not None else ""))
    return 0


_GRID_FLAGS = {"rows": "--rows", "copies": "--copies", "scale": "--scale"}


def _cmd_preview(args) -> int:
    from ..augment import preview_grid, save_png, take_subset
    from ..augment.preview import check_grid, default_scale
    from ..sources import registry

    if args.out is None and args.tensorboard is None:
        raise OptionError("preview writes a PNG (--out FILE.png), TensorBoard summaries "
                          "(--tensorboard LOGDIR) or both: give at least one")
    _outside_cache(args, "--out", "--tensorboard")
    if args.out is not None:
        _output(args, (".png",), "preview writes PNG; give a name ending in .png")
    if _source_kind(args.name) == "registry":
        # Before loading anything: the grid's size follows from the layout and the options.
        check_grid(args.rows, args.copies, registry.get(args.name).image_shape,
                   scale=args.scale or 1, names=_GRID_FLAGS)
    ds = _load(args, args.name, variant=args.variant)
    _at_most("--rows", args.rows, len(ds.train.images), args.name)
    got = take_subset(ds.train.images, ds.train.labels, args.rows, seed=args.seed,
                      masks=ds.train.masks)
    x = got[0]
    masks = got[2] if ds.train.masks is not None else None
    # the library checks again with its own keywords; these say what was typed
    if args.out is not None:
        check_grid(args.rows * (1 if masks is None else 2), args.copies, x.shape[1:],
                   scale=args.scale or 1, names=_GRID_FLAGS)
    if args.tensorboard is not None:
        from ..outputs.tensorboard import check_room

        check_room(args.rows, args.copies, x.shape[1:], names=_GRID_FLAGS)
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
