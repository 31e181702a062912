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
from . import augment, data, outputs
from .text import (
    ShownFormatter,
    bare_switches,
    call_spans,
    no_such_folder,
    shown,
    shown_message,
    unrecognized,
)

# Options with an optional probability (`--hflip` or `--hflip 0.3`) and what they mean alone.
_FLIPS = {"--hflip": "0.5", "--vflip": "0.5"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns 0 on success, 1 on an expected failure, 2 on a usage error, 141
    when the reader of its output went away (``dlsets list | head -1``)."""
    try:
        try:
            return _main(argv)
        finally:
            if sys.stdout is not None:
                sys.stdout.flush()  # here, not at exit, where a closed pipe is only reported
    except BrokenPipeError:
        return _reader_gone()


def _reader_gone() -> int:
    """The recipe of Python's docs (signal, "Note on SIGPIPE"): what is still buffered for
    stdout goes to devnull, so the flush at exit raises nothing; no message, the status of a
    command ended by SIGPIPE (128 + 13)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # a stdout with no descriptor (captured)
        pass
    return 141


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader closed it (a broken pipe elsewhere, to a worker
    process say, is an error to report)."""
    try:
        import select

        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (OSError, ValueError, AttributeError):  # no poll (Windows), no descriptor
        return True


def _main(argv: Sequence[str] | None) -> int:
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
        if isinstance(exc, BrokenPipeError) and _stdout_gone():
            raise  # the reader of our output went away: not an error (see main)
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
          "out": "--out", "logdir": "--tensorboard", "hflip": "--hflip", "vflip": "--vflip",
          "elastic alpha": "--elastic ALPHA", "elastic sigma": "--elastic SIGMA",
          "value_range": "--range", "max_file_bytes": "--max-file-mb",
          "batch_size": "--batch-size", "scale": "--scale"}
# Keywords whose value the CLI gave in another unit: shown in the option's own.
_UNITS = {"max_file_bytes": lambda v: f"{int(v.replace(',', '')) / 2**20:g}"}
_KEYWORD = re.compile(r"\b(" + "|".join(_FLAGS)
                      + r")=('[^']*'|\([^)]*\)|\d{1,3}(?:,\d{3})+\b|[^\s;,:)]+)")


def _as_flags(text: str) -> str:
    """An OptionError's ``rotate=400.0`` / ``label_mode='fine'`` as the options a CLI user
    types (``--rotate 400.0``, ``--label-mode fine``). Keywords inside a call's repr
    (``RandomAffine(rotate=(-15.0, 15.0))``) stay as they are: they describe an object, not
    an option; a ``(CLI: ...)`` remark for API users goes, since the text now says it."""
    def flag(m: re.Match) -> str:
        if any(lo <= m.start() < hi for lo, hi in calls):
            return m.group(0)
        value = m.group(2).strip("'")
        if m.group(1) in _UNITS:
            try:
                value = _UNITS[m.group(1)](value)
            except ValueError:
                pass
        if value == "True":  # a switch: the flag alone
            return _FLAGS[m.group(1)]
        if value.startswith("(") and value.endswith(")"):
            value = " ".join(v.strip() for v in value[1:-1].split(","))
        return f"{_FLAGS[m.group(1)]} {value}"

    text = re.sub(r" ?\(CLI: [^()]*\)", "", text)
    calls = call_spans(text)
    return _KEYWORD.sub(flag, text).replace(" (wait=0)", "")


def _interrupted(args) -> str:
    """What Ctrl-C left behind, for the command that was running."""
    if args.command in ("fetch", "verify"):
        return ("interrupted; nothing half-written was left under a final name. Run the command "
                "again (an interrupted download continues where it stopped).")
    out = getattr(args, "out", None)
    if args.command == "augment" and out and (
            getattr(args, "shards", None) is not None or str(out).endswith(("/", os.sep))
            or Path(out).is_dir()) and getattr(args, "format", None) != "caffe":
        from ..scale.layout import complete_shards

        folder = str(out).rstrip("/" + os.sep) or str(out)
        if not Path(folder).is_dir():  # never made, or removed as it was left empty
            return (f"interrupted; {shown(folder)}/ does not exist: no shard was written. Run "
                    "the same command again to write them.")
        done = complete_shards(out)
        return (f"interrupted; {len(done)} complete shard(s) in {shown(out)} are kept (the one "
                "being written was not). Run the same command again to write the rest.")
    if out:
        return (f"interrupted; {shown(out)} was not written (nothing half-written is left). Run "
                "the command again to write it.")
    return "interrupted; nothing half-written was left under a final name."


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
    g.add_argument("--split-seed", type=_seed, default=None, metavar="N",
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

    add("list", data._cmd_list, "list the datasets dlsets knows and what is cached")
    sp = add_folder("info", data._cmd_info,
                    "describe a dataset: source, licence, files, cache state")
    sp.add_argument("name", metavar="NAME", help=_NAME_HELP)

    sp = add_folder("fetch", data._cmd_fetch,
                    "download (or import) datasets into the cache, verified")
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

    sp = add("verify", data._cmd_verify, "re-hash cached files and repair what fails; a folder "
             "(DIR/) of shards: hash every shard against its index")
    sp.add_argument("names", nargs="*", metavar="NAME",
                    help=_NAME_HELP + ", or a folder of shards")
    sp.add_argument("--mirror", action="append", default=[], metavar="URL")
    sp.add_argument("--no-repair", action="store_true", help="report failures, change nothing")
    sp.add_argument("--deadline", type=_seconds, default=None, metavar="SECONDS",
                    help="give up repairs after this long in all (default: $DLSETS_DEADLINE)")

    sp = add("path", data._cmd_path, "print a dataset's cache folder")
    sp.add_argument("name", metavar="NAME", help=_NAME_HELP)
    sp = add("remove", data._cmd_remove, "delete a dataset's cache folder")
    sp.add_argument("name", metavar="NAME", help=_NAME_HELP)
    sp.add_argument("--wait", type=_wait_seconds, default=60.0, metavar="SECONDS",
                    help="wait this long for a fetch, load or verify of it to finish (default 60)")
    sp.add_argument("--no-wait", action="store_true",
                    help="refuse at once while another process uses the dataset")

    sp = add_folder("export", outputs._cmd_export, "write a dataset as one HDF5 or npz file, or a "
                    "folder for Caffe or ConvNetJS")
    sp.add_argument("name", metavar="NAME", help=_NAME_HELP)
    sp.add_argument("--format", choices=("hdf5", "npz", "caffe", "convnetjs"), default=None,
                    help="default: from the --out extension (.h5/.hdf5 or .npz); caffe: HDF5Data "
                    "files and list files; convnetjs: sprite-sheet PNGs and labels")
    sp.add_argument("--out", required=True, metavar="FILE|DIR",
                    help="file to write (a folder for caffe and convnetjs)")
    sp.add_argument("--compression", choices=("gzip", "lzf", "lz4"), default=None,
                    help="HDF5 compression (default none: fastest to read; lz4 decodes fastest, "
                    "needs pip install 'dlsets[lz4]')")
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
    sp.set_defaults(run=augment._cmd_augment)
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
    g.add_argument("--compression", choices=("gzip", "lzf", "lz4"), default=None,
                   help="HDF5 compression (default none: fastest to read; lz4 decodes fastest, "
                   "needs pip install 'dlsets[lz4]')")
    _variant_option(sp)
    _caffe_options(sp)

    sp = sub.add_parser("preview", parents=[common, aug, folder],
                        help="PNG grid of originals beside augmented copies",
                        description="Write a PNG grid: each row an original training image "
                        "followed by augmented copies.")
    sp.set_defaults(run=augment._cmd_preview)
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
