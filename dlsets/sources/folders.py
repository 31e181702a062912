"""Folders of images as dlsets datasets: ``load_folder(path, size=(H, W))``.

Layouts (the ones ``torchvision.datasets.ImageFolder`` and Keras' ``image_dataset_from_directory``
read, plus segmentation pairs):

- ``root/<class>/<image>`` (images may sit in subfolders of their class folder);
- ``root/train/<class>/...`` with ``root/test/...`` and/or ``root/val/...`` (``training``,
  ``testing``, ``valid``, ``validation`` too); without ``test/``, ``val/`` is the test split;
- ``root/images/`` + ``root/masks/`` (or the same under ``train/``, ``test/``): pairs matched
  by their path without extension (``masks/a/b.png`` for ``images/a/b.jpg``; the mask's name
  may add ``_mask``, ``-mask``, ``_masks``, ``_seg``, ``_label`` or ``_gt``).

A root holding nothing but one folder that has subfolders (a Kaggle zip's wrapper folder) is
descended into. Names starting with "." and ``__MACOSX`` folders are ignored.

Split rule, when the folder has no train/test folders: within each class, files are ranked by
``sha256("<seed>/<class>/<path below the class folder>")`` and the ``floor(n * test + 0.5)``
lowest go to test (``test=0.1``: one in ten, as notMNIST). Segmentation pairs are ranked by
``sha256("<seed>/<path without extension>")`` over all pairs. The rule sees every file,
readable or not, so a file a decoder rejects moves no other file across the split; each split
is ordered by the same hash, which mixes the classes.

The decoded arrays are prepared once into the cache (``<cache>/_folders/<name>-<hash of the
path>/<options>/``, see :mod:`dlsets.store.prepared`), tagged with the folder's *content key*: the
sha256 of every file's relative path, size and modification time (nanoseconds) and of what was
skipped. A load lists and stats the folder (no file is read) and rebuilds when the key differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..data.dataset import Dataset
from ..errors import OptionError
from ..formats import image as imgread

# the modules load_folder is made of; their public names stay importable from here
from .folder_decode import FAST_FROM, INLINE, default_workers  # noqa: F401
from .folder_prepare import (  # noqa: F401
    FOLDERS_DIR,
    MEMORY_LIMIT,
    VERSION,
    SizesDiffer,
    cached_slots,
    folder_slot,
    has_prepared,
    load_prepared,
    remove_prepared,
    verify_folder,
    verify_slot,
)
from .folder_scan import (  # noqa: F401
    IGNORED,
    MASK_SUFFIXES,
    MAX_CLASSES,
    MAX_DEPTH,
    SPLIT_DIRS,
    PathLike,
    Scan,
    scan,
    split_key,
    test_count,
)

MAX_SIDE = 4096


# --- options -------------------------------------------------------------------------------


def _size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (size, size)
    ok = (isinstance(size, (tuple, list)) and len(size) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size)
          and all(1 <= v <= MAX_SIDE for v in size))
    if not ok:
        raise OptionError(f"size={size!r} is not allowed: give (height, width) in pixels, each "
                          f"1..{MAX_SIDE}, or None to keep the images' own (common) size")
    return int(size[0]), int(size[1])


def _color(color: str) -> str:
    if color == "greyscale":
        return "grayscale"
    if color not in imgread.COLORS:
        raise OptionError(f"color={color!r} is not allowed; use 'rgb' or 'grayscale'")
    return color


def _fraction(test) -> float:
    if isinstance(test, bool) or not isinstance(test, (int, float)) or not 0 <= test < 1:
        raise OptionError(f"test={test!r} is not allowed: give the fraction of each class that "
                          "goes to the test split, 0 <= test < 1 (default 0.1)")
    return float(test)


def _mask_classes(mask_classes) -> tuple[str, ...] | None:
    if mask_classes is None:
        return None
    if isinstance(mask_classes, (int, np.integer)) and not isinstance(mask_classes, bool):
        if not 2 <= mask_classes <= MAX_CLASSES:
            raise OptionError(f"mask_classes={mask_classes!r}: give 2..{MAX_CLASSES} classes")
        return tuple(str(k) for k in range(int(mask_classes)))
    if (isinstance(mask_classes, (list, tuple)) and 2 <= len(mask_classes) <= MAX_CLASSES
            and all(isinstance(c, str) for c in mask_classes)):
        return tuple(mask_classes)
    raise OptionError(f"mask_classes={mask_classes!r} is not allowed: give the number of mask "
                      f"classes (2..{MAX_CLASSES}) or their names")


def load_folder(
    path: PathLike,
    size: tuple[int, int] | int | None = None,
    *,
    color: str = "rgb",
    resize: str = "stretch",
    test: float = 0.1,
    seed: int = 0,
    mask_classes: int | Sequence[str] | None = None,
    mask_palette: Mapping | None = None,
    subdir: str | None = None,
    dtype: str = "uint8",
    channels: str | None = None,
    cache_dir: PathLike | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    download: bool = True,
    val: float | int | None = None,
    val_seed: int = 0,
) -> Dataset:
    """Load a folder of images (or a Kaggle dataset, ``"kaggle:OWNER/DATASET[/versions/N]"``)
    as a :class:`Dataset`, the same as the built-ins return.

    Images: uint8 (N, H, W, 3) for ``color="rgb"``, (N, H, W) for ``"grayscale"`` (``channels=``
    and ``dtype=`` as for :func:`dlsets.load`); ``size=(H, W)`` resizes every image the way
    ``resize`` says: ``"stretch"`` (ignore the aspect ratio, as Keras and torchvision's
    ``Resize((H, W))``), ``"crop"`` (scale to cover, centre crop) or ``"pad"`` (scale to fit,
    centre on black); ``size=None`` keeps the images' size, which must then be common to all.
    Labels (N,) uint8, the index of the class folder in ``classes`` (sorted names).
    Segmentation folders (images/ + masks/) give ``Split.masks`` (N, H, W) uint8 class maps,
    resized by nearest neighbour; ``mask_classes`` (a count or names) makes values outside
    them a skip; without it the classes are 0..max value, and masks holding only 0 and 255
    are read as binary 0/1. Labels are then all 0 and ``classes`` names the mask values.
    Colour-coded masks (CamVid, Cityscapes) take ``mask_palette``, a mapping of colours
    (``(r, g, b)``, ``"#rrggbb"`` or ``"r,g,b"``) to class indices; a mask holding a colour
    not in it is skipped, the reason naming the colour.

    Without train/test folders, ``test`` (a fraction) and ``seed`` drive the split rule
    described in :mod:`dlsets.sources.folders`. ``ds.info["skipped"]`` lists every file not used
    (relative path), ``ds.info["skip_reasons"]`` says why (not an image, corrupt, unsupported
    mode, too large, no mask, ...). ``subdir`` points inside the folder (or Kaggle dataset).
    The first load decodes on ``workers`` processes (default: all cores; big images share a
    memory budget, see :mod:`dlsets.sources.decode_pool`) with a progress bar; later loads
    memory-map the prepared copy (milliseconds) until the folder changes.
    ``val``/``val_seed`` carve a validation split from train as :func:`dlsets.load` does
    (a folder with its own ``val/`` has one already).
    """
    from .load_options import CHANNELS, DTYPES
    from .load_options import check_option as _check

    if val is not None:
        from ..data.splits import check_val

        check_val(val)

    _check("dtype", dtype, DTYPES)
    _check("channels", channels, CHANNELS)
    size = _size(size)
    color = _color(color)
    if resize not in imgread.RESIZE_MODES:
        raise OptionError(f"resize={resize!r} is not allowed; use one of "
                          f"{list(imgread.RESIZE_MODES)}")
    test = _fraction(test)
    from ..augment import params

    seed = params.check_seed(seed)
    names = _mask_classes(mask_classes)
    from ..formats import palette as _palette

    colours = _palette.check(mask_palette)
    if workers is None:
        workers = default_workers()
    elif isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise OptionError(f"workers={workers!r} is not allowed: give an integer >= 1")
    name = str(path)
    if name.startswith("kaggle:"):
        from . import kaggle_fetch as kaggle

        root, slot = kaggle.fetch_folder(name, cache_dir=cache_dir, progress=progress,
                                         download=download)
    else:
        root = Path(path).expanduser()
        slot = None
        name = root.resolve().name or str(root)
    if subdir:
        inner = (Path(root) / subdir).resolve()
        if Path(root).resolve() not in (inner, *inner.parents):
            raise OptionError(f"subdir={subdir!r} points outside {root}")
        root = inner
    if slot is None:
        slot = folder_slot(root, cache_dir)
    ds = load_prepared(name, root, slot, size=size, color=color, resize=resize, test=test,
               seed=seed, names=names, dtype=dtype, channels=channels, workers=workers,
               progress=progress, cache_dir=cache_dir, shown=str(path), palette=colours)
    if val is None:
        return ds
    from ..data.splits import with_validation

    return with_validation(ds, val, seed=params.check_seed(val_seed))

