"""Kaggle datasets (and competition data) loaded: ``kaggle:OWNER/DATASET[/versions/N]``.

The download, pinning and unpacking are in :mod:`dlsets.sources.kaggle_fetch` (names parsed by
:mod:`dlsets.sources.kaggle_ref`); their public names are importable from here too. The
unpacked archive is read as an image folder, or in a built-in dataset's layout when asked
(``like="mnist"``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..data.dataset import Dataset
from ..errors import FormatError, OptionError
from ..store import locks
from .kaggle_auth import Credentials, credentials  # noqa: F401  (importable from here)
from .kaggle_fetch import (  # noqa: F401  (importable from here, as before the split)
    API,
    KAGGLE_DIR,
    _fetch,
    _resolve,
    _Store,
    api_base,
    cached_names,
    current_version,
    dataset_dir,
    fetch,
    fetch_folder,
    remove,
    status,
)
from .kaggle_ref import MAX_VERSION, WEB, Ref, check_version, parse_ref  # noqa: F401

PathLike = str | os.PathLike


def verify(name: str, *, cache_dir: PathLike | None = None, repair: bool = True) -> list[str]:
    """What is wrong with a Kaggle dataset's cache (archives, unpacked files, prepared copies),
    repaired when ``repair``: see :func:`dlsets.sources.kaggle_verify.verify`."""
    from .kaggle_verify import verify as _verify

    return _verify(name, cache_dir=cache_dir, repair=repair)


# --- loading -------------------------------------------------------------------------------


def load_kaggle(name: str, *, like: str | None = None, subdir: str | None = None,
                classes=None, label_mode: str = "fine", dtype: str = "uint8",
                channels: str | None = None, cache_dir: PathLike | None = None,
                progress: bool | None = None, download: bool = True, **folder_options
                ) -> Dataset:
    """A Kaggle dataset as a :class:`Dataset`: downloaded once (verified, pinned), unpacked,
    then read as an image folder (``folder_options`` as for :func:`dlsets.load_folder`:
    ``size``, ``color``, ``resize``, ``test``, ``seed``, ``mask_classes``) or, with
    ``like="mnist"`` (any built-in name), from files in that dataset's layout (IDX files or
    ``mnist.npz``; the CIFAR or notMNIST archive) found in the download."""
    if like is None:
        from .folders import load_folder

        ref, _ = _resolve(name)
        ds = load_folder(str(ref), subdir=subdir, dtype=dtype, channels=channels,
                         cache_dir=cache_dir, progress=progress, download=download,
                         **folder_options)
        ds.name = ds.info["name"] = name
        return ds
    if folder_options:
        raise OptionError(f"{sorted(folder_options)} apply to image folders; a dataset read "
                          f"like {like} keeps that layout")
    return _load_like(name, like, subdir, classes, label_mode, dtype, channels, cache_dir,
                      progress, download)


FOLDER_OPTIONS = ("size", "color", "resize", "test", "seed", "mask_classes")


def load_entry(name: str, **kw) -> Dataset:
    """A registry entry with a ``kaggle`` key: its options, overridden by the caller's (None
    means not given)."""
    from . import registry

    spec = registry.get(name)
    kw = {k: v for k, v in kw.items() if v is not None}
    like = spec.extra.get("like")
    if like:
        for key in (*FOLDER_OPTIONS, "subdir"):
            kw.pop(key, None)
        if spec.classes != registry.get(like).classes:
            kw.setdefault("classes", list(spec.classes))
        return load_kaggle(name, like=like, subdir=spec.extra["options"].get("subdir"), **kw)
    kw.pop("label_mode", None)
    options = {**spec.extra["options"], **kw}
    return load_kaggle(name, **options)


def _like_files(like_spec, root: Path, record: dict, label: str) -> dict[str, str]:
    """The unpacked files that make up a dataset in ``like_spec``'s layout: relative path ->
    sha256 (from the unpack record)."""
    from .builtin_parse import idx_role

    files = {rel: f["sha256"] for rel, f in record.get("files", {}).items()}
    base = Path(record.get("_root", ""))
    inside = {rel: sha for rel, sha in files.items() if _under(rel, base)}
    if like_spec.format == "idx":
        npz = [r for r in inside if r.lower().endswith(".npz")]
        roles: dict[tuple, str] = {}
        for rel in sorted(inside):
            role = idx_role(rel.rsplit("/", 1)[-1])
            if None not in role and role not in roles and not rel.lower().endswith(".npz"):
                roles[role] = rel
        if len(roles) == 4:
            return {rel: inside[rel] for rel in roles.values()}
        if len(npz) == 1:
            return {npz[0]: inside[npz[0]]}
        raise FormatError(f"{label}: no complete set of {like_spec.name} files in the download "
                          "(four IDX files named train/t10k images/labels, or one .npz); it "
                          f"holds: {', '.join(sorted(inside)[:12])}")
    archives = [r for r in inside if r.lower().endswith((".tar.gz", ".tgz", ".tar", ".tar.xz",
                                                          ".tar.bz2"))]
    if len(archives) != 1:
        raise FormatError(f"{label}: expected one {like_spec.name} archive (.tar.gz) in the "
                          f"download, found {archives or 'none'}; give subdir= to pick one")
    return {archives[0]: inside[archives[0]]}


def _under(rel: str, base: Path) -> bool:
    return not str(base) or str(base) == "." or rel.startswith(base.as_posix() + "/")


def _load_like(name, like, subdir, classes, label_mode, dtype, channels, cache_dir, progress,
               download):
    from ..data.dataset import Split
    from ..store import prepared
    from . import registry
    from .builtin_parse import parse
    from .load_options import (
        CHANNELS,
        DTYPES,
        LABEL_MODES,
        check_option,
        class_names,
        convert,
        dataset_info,
    )
    from .registry import DatasetSpec, FileSpec

    check_option("dtype", dtype, DTYPES)
    check_option("channels", channels, CHANNELS)
    check_option("label_mode", label_mode, LABEL_MODES)
    base = registry.get(like)
    if not base.builtin:
        builtins = [b for b in registry.names() if registry.get(b).builtin]
        raise OptionError(f"like={like!r}: give a built-in dataset ({', '.join(builtins)})")
    store, fname, root, record = _fetch(name, cache_dir, progress, network=download)
    record = dict(record, _root=subdir or "")
    chosen = _like_files(base, root, record, str(store.ref))
    files = {rel: root.joinpath(*rel.split("/")) for rel in chosen}
    spec = DatasetSpec(
        name=name, like=like, format=base.format,
        files={rel: FileSpec(rel, sha, None, record["files"][rel]["size"], ())
               for rel, sha in chosen.items()},
        file_sets=(tuple(chosen),), image_shape=base.image_shape,
        classes=tuple(classes) if classes else base.classes,
        coarse_classes=base.coarse_classes, title=name, builtin=False, source=str(store.ref))
    if label_mode == "coarse" and spec.format != "cifar100":
        raise OptionError("label_mode='coarse' exists for CIFAR-100-like datasets only")
    folder = store.dir / "prepared" / f"{fname.removesuffix('.zip')}-like-{like}"

    def usable():
        manifest = prepared.read_manifest(folder)
        if (manifest is None or manifest.get("sources") != chosen
                or manifest.get("format") != spec.format):
            return None
        arrays = prepared.open_arrays(folder, manifest)
        return None if arrays is None else (arrays, manifest)

    got = usable()
    if got is None:
        with locks.holding(str(folder) + ".lock", name, doing="preparing it"):
            got = usable()
            if got is None:
                arrays, manifest = parse(spec, files, progress)
                manifest = prepared.write(folder, arrays, manifest)
                opened = prepared.open_arrays(folder, manifest)
                if opened is None:
                    raise FormatError(f"{name}: the prepared arrays in {folder} could not be "
                                      "read back right after writing them; check the disk")
                got = opened, manifest
    arrays, manifest = got
    info = dataset_info(spec, manifest, label_mode, folder)
    prefix = "coarse_" if label_mode == "coarse" else ""
    names = class_names(spec, manifest, label_mode == "coarse")
    splits = {}
    for s in ("train", "test"):
        x = convert(arrays[f"{s}_images"], dtype, channels)
        splits[s] = Split(x, arrays[f"{s}_{prefix}labels"])
        info["splits"][s]["images_shape"] = list(x.shape)
    info.update(dtype=dtype, kaggle=str(store.ref), archive=fname)
    return Dataset(name, splits["train"], splits["test"], tuple(names), info)
