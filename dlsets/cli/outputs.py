"""The ``export`` command: a dataset as one HDF5 or npz file, or a folder for Caffe or
ConvNetJS."""

from __future__ import annotations

from pathlib import Path

from ..errors import OptionError
from .shared import (
    _check_compression,
    _check_folder_options,
    _file_bytes,
    _load,
    _output,
    _outside_cache,
    _progress,
)
from .text import shown


def _cmd_export(args) -> int:
    _outside_cache(args, "--out")
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
    _check_compression(args, fmt)
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
