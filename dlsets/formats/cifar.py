"""CIFAR-10 / CIFAR-100 archives: binary records (the default) or Python 2 pickles.

Pixels are stored as a R plane, a G plane and a B plane of 32x32 each; every reader here
returns them as (N, 32, 32, 3) uint8 and labels as (N,) uint8.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from ..errors import FormatError
from ..store import space
from . import archive
from .limits import Limits
from .unpickle import restricted_loads

PIXELS = 3 * 32 * 32


@dataclass
class CifarArrays:
    """What a CIFAR archive holds. ``coarse_*`` are set for CIFAR-100 only."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    coarse_train: np.ndarray | None = None
    coarse_test: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)
    coarse_classes: list[str] = field(default_factory=list)


def planes_to_nhwc(pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(N, 3072) rows of R, G, B planes -> contiguous (N, 32, 32, 3) uint8 (into ``out``)."""
    n = len(pixels)
    if out is None:
        out = np.empty((n, 32, 32, 3), dtype=np.uint8)
    planes = pixels.reshape(n, 3, 1024)
    flat = out.reshape(n, 1024, 3)
    # One plane at a time: contiguous reads, and 3x faster than a 4-D transpose copy.
    for c in range(3):
        flat[:, :, c] = planes[:, c]
    return out


def parse_records(data: bytes, *, label_bytes: int, name: str = "CIFAR records",
                  out: np.ndarray | None = None):
    """Binary records -> (images (N, 32, 32, 3) uint8, labels (N, label_bytes) uint8).

    CIFAR-10 records are 1 label byte + 3072 pixels; CIFAR-100 records are coarse label,
    fine label, 3072 pixels (``label_bytes=2``). Images are written into ``out`` if given.
    """
    size = label_bytes + PIXELS
    if len(data) % size:
        raise FormatError(
            f"{name}: {len(data)} bytes is not a whole number of {size}-byte records "
            f"({label_bytes} label byte(s) + {PIXELS} pixels); the file is damaged"
        )
    rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, size)
    return planes_to_nhwc(rec[:, label_bytes:], out), np.array(rec[:, :label_bytes])


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def normalize_keys(obj: dict) -> dict:
    """Dict keys as str, whether the pickle was read with encoding 'bytes' or 'latin1'."""
    if not isinstance(obj, dict):
        raise FormatError(f"expected a dict in a CIFAR pickle, found {type(obj).__name__}")
    return {_text(k): v for k, v in obj.items()}


def parse_batch(obj: dict, *, name: str = "CIFAR batch") -> dict[str, np.ndarray]:
    """A CIFAR python batch dict -> {'images': (N, 32, 32, 3), 'labels' or 'fine_labels' /
    'coarse_labels': (N,) uint8}, for keys given as bytes or str."""
    d = normalize_keys(obj)
    if "data" not in d:
        raise FormatError(f"{name}: no 'data' entry (keys: {sorted(d)})")
    data = np.asarray(d["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        raise FormatError(
            f"{name}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, {PIXELS})"
        )
    out = {"images": planes_to_nhwc(data)}
    keys = [k for k in ("labels", "fine_labels", "coarse_labels") if k in d]
    if not keys:
        raise FormatError(f"{name}: no labels (keys: {sorted(d)})")
    for k in keys:
        labels = np.asarray(d[k])
        if labels.dtype.kind not in "iub":
            raise FormatError(f"{name}: {k!r} holds {labels.dtype} values; expected integers")
        if labels.shape != (len(data),) or labels.size and (labels.min() < 0 or labels.max() > 255):
            raise FormatError(f"{name}: {k!r} has shape {labels.shape} or values outside 0..255; "
                              f"expected {len(data)} labels")
        out[k] = labels.astype(np.uint8)
    return out


RECORDS_PER_BATCH = 10_000  # CIFAR-10's batch files each hold 10,000 records
PICKLE_PER_RECORD = 256  # a pickled record's label, file name and opcodes, with room to spare
SMALL_MEMBER = 1 << 20  # readme, label names, meta: kilobytes in the real archives
_CHUNK_RECORDS = 1024  # records parsed at a time from a streamed member


def _data_names(coarse: bool) -> re.Pattern:
    """Member base names that hold records: group 2 is ".bin" for the binary flavour."""
    return re.compile(r"(train|test)(\.bin)?" if coarse
                      else r"(data_batch_\d+|test_batch)(\.bin)?")


def _bounds(coarse: bool, limits: Limits):
    """Per-member byte bounds (a function of the member path) and the archive's inflated total
    that a CIFAR archive of this layout can reach."""
    record = (2 if coarse else 1) + PIXELS
    per_file = limits.max_images if coarse else min(RECORDS_PER_BATCH, limits.max_images)
    data = _data_names(coarse)

    def member(path: str) -> int:
        m = data.fullmatch(path.rsplit("/", 1)[-1])
        if m is None:
            return SMALL_MEMBER
        if m.group(2):
            return per_file * record
        return per_file * (PIXELS + PICKLE_PER_RECORD) + SMALL_MEMBER

    # train and test, pickled at worst, plus the tar headers and small members
    total = 2 * limits.max_images * (PIXELS + PICKLE_PER_RECORD) + 64 * SMALL_MEMBER
    return member, total


class _MemberFile(io.RawIOBase):
    """A tar member as a binary file (for the unpickler, which reads it as it goes)."""

    def __init__(self, member) -> None:
        self._m = member

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        return self._m.readinto(b) if self._m.left else 0


def _records(member, label_bytes: int, name: str, limits: Limits):
    """Stream binary records into (images (N, 32, 32, 3), labels (N, label_bytes))."""
    size = label_bytes + PIXELS
    if member.size % size:
        raise FormatError(
            f"{name}: {member.size} bytes is not a whole number of {size}-byte records "
            f"({label_bytes} label byte(s) + {PIXELS} pixels); the file is damaged"
        )
    n = member.size // size
    limits.check_count(n, name, "records")
    space.need_memory(n * size, f"reading {name}")
    images = np.empty((n, 32, 32, 3), np.uint8)
    labels = np.empty((n, label_bytes), np.uint8)
    for start in range(0, n, _CHUNK_RECORDS):
        k = min(_CHUNK_RECORDS, n - start)
        rec = np.frombuffer(member.read(k * size), np.uint8).reshape(k, size)
        planes_to_nhwc(rec[:, label_bytes:], images[start:start + k])
        labels[start:start + k] = rec[:, :label_bytes]
    return images, labels


def read_cifar_tar(
    source: str | os.PathLike | BinaryIO,
    *,
    coarse: bool,
    encoding: str = "bytes",
    name: str | None = None,
    limits: Limits | None = None,
) -> CifarArrays:
    """Read a CIFAR tarball (binary or python flavour, told apart by its members).

    ``coarse=True`` reads CIFAR-100 (fine and coarse labels). Members are streamed from the
    archive, each bounded by what it can hold (a CIFAR-10 batch 10,000 records, at most
    ``limits.max_images`` per split); pickles go through the restricted unpickler with
    ``encoding``. Anything beyond the bounds is a FormatError naming the archive.
    """
    label = name or (os.fspath(source) if isinstance(source, str | os.PathLike)
                     else str(getattr(source, "name", "archive")))
    limits = limits or Limits((32, 32, 3), layout="a CIFAR archive")
    per_member, total = _bounds(coarse, limits)
    label_bytes = 2 if coarse else 1
    data_names = _data_names(coarse)
    members: dict[str, Any] = {}
    for m in archive.iter_members(source, name=label, max_member=per_member, max_total=total):
        base = m.path.rsplit("/", 1)[-1]
        where = f"{label}:{base}"
        match = data_names.fullmatch(base)
        if base in members:  # one name in two folders: as ambiguous as one path twice
            raise FormatError(archive.duplicate(label, base))
        if match and match.group(2):
            members[base] = _records(m, label_bytes, where, limits)
        elif match or base.endswith("meta"):
            members[base] = restricted_loads(io.BufferedReader(_MemberFile(m), 1 << 16),
                                             encoding=encoding, name=where, size=m.size)
        elif base.endswith(".txt"):
            members[base] = m.read()
    if any(n.endswith(".bin") for n in members):
        return _from_binary(members, coarse=coarse, label=label)
    return _from_python(members, coarse=coarse, label=label)


def _batch_order(names, suffix: str, label: str) -> list[str]:
    """The training batches ``data_batch_<i><suffix>`` in numeric order; they must be numbered
    1..N, each once, without a gap (a missing batch would load a smaller set silently)."""
    found: dict[int, str] = {}
    for n in names:
        if m := re.fullmatch(r"data_batch_(\d+)" + re.escape(suffix), n):
            i = int(m.group(1))
            if i in found or i == 0:
                what = f"{n} and {found[i]} are both batch {i}" if i in found else \
                    f"{n}: batches are numbered from 1"
                raise FormatError(f"{label}: {what}; the archive is damaged or was packed "
                                  "wrongly: repack it as data_batch_1..N")
            found[i] = n
    if found and max(found) != len(found):  # a gap; names kept few for a number like 10**9
        gaps = _missing(found, max(found), suffix)
        have = ", ".join(found[i] for i in sorted(found)[:8])
        raise FormatError(
            f"{label}: missing {gaps} (it has {have}"
            f"{', ...' if len(found) > 8 else ''}); CIFAR training batches are numbered from 1 "
            "without a gap. The archive is damaged or incomplete: delete it and fetch again, "
            "or repack it as data_batch_1..N")
    return [found[i] for i in sorted(found)]


def _missing(found, last: int, suffix: str) -> str:
    """The batch names absent from ``found`` up to ``last``, the first few of them."""
    names = []
    for i in range(1, last + 1):
        if i not in found:
            if len(names) == 8:
                return ", ".join(names) + ", ..."
            names.append(f"data_batch_{i}{suffix}")
    return ", ".join(names)


def _check_batch_count(members, train: list[str], label: str) -> None:
    """The python batches say "training batch i of N": all N must be there."""
    for n in train:
        said = _text(normalize_keys(members[n]).get("batch_label", ""))
        m = re.fullmatch(r"training batch (\d+) of (\d+)", said.strip())
        if m and int(m.group(2)) > len(train):
            last = int(m.group(2))
            missing = _missing(dict.fromkeys(range(1, len(train) + 1)), last, "")
            raise FormatError(
                f"{label}: {n} says it is {said!r} but the archive has {len(train)}; missing "
                f"{missing}. The archive is incomplete: delete it and fetch again")


def _require(members, wanted, label):
    missing = [w for w in wanted if w not in members]
    if missing:
        raise FormatError(
            f"{label}: missing {', '.join(missing)} (members: {', '.join(sorted(members))})"
        )


def _names(members, fname) -> list[str]:
    if fname not in members:
        return []
    return [s.strip() for s in members[fname].decode("utf-8", "replace").splitlines()
            if s.strip()]


def _join(parts: list[np.ndarray], what: str) -> np.ndarray:
    space.need_memory(sum(p.nbytes for p in parts), f"joining the {what}")
    return np.concatenate(parts) if len(parts) != 1 else parts[0]


def _from_binary(members, *, coarse, label) -> CifarArrays:
    if coarse:
        _require(members, ["train.bin", "test.bin"], label)
        xtr, ltr = members["train.bin"]
        xte, lte = members["test.bin"]
        return CifarArrays(
            xtr, ltr[:, 1].copy(), xte, lte[:, 1].copy(),
            coarse_train=ltr[:, 0].copy(), coarse_test=lte[:, 0].copy(),
            classes=_names(members, "fine_label_names.txt"),
            coarse_classes=_names(members, "coarse_label_names.txt"),
        )
    train = _batch_order(members, ".bin", label)
    if not train:
        raise FormatError(f"{label}: no data_batch_N.bin members")
    _require(members, ["test_batch.bin"], label)
    xte, lte = members["test_batch.bin"]
    return CifarArrays(
        _join([members[n][0] for n in train], "training batches"),
        np.concatenate([members[n][1][:, 0] for n in train]),
        xte,
        lte[:, 0].copy(),
        classes=_names(members, "batches.meta.txt"),
    )


def _from_python(members, *, coarse, label) -> CifarArrays:
    def load(n):
        return parse_batch(members[n], name=f"{label}:{n}")

    def meta(n, key):
        if n not in members:
            return []
        d = normalize_keys(members[n])
        names = d.get(key, [])
        if not isinstance(names, list | tuple):
            raise FormatError(f"{label}:{n}: {key!r} is not a list of names")
        return [_text(v) for v in names]

    if coarse:
        _require(members, ["train", "test"], label)
        tr, te = load("train"), load("test")
        for b, n in ((tr, "train"), (te, "test")):
            if "fine_labels" not in b or "coarse_labels" not in b:
                raise FormatError(f"{label}:{n}: CIFAR-100 batches need fine_labels and "
                                  "coarse_labels")
        return CifarArrays(
            tr["images"], tr["fine_labels"], te["images"], te["fine_labels"],
            coarse_train=tr["coarse_labels"], coarse_test=te["coarse_labels"],
            classes=meta("meta", "fine_label_names"),
            coarse_classes=meta("meta", "coarse_label_names"),
        )
    train = _batch_order(members, "", label)
    if not train:
        raise FormatError(f"{label}: no data_batch_N members (is this a CIFAR-10 archive?)")
    _check_batch_count(members, train, label)
    _require(members, ["test_batch"], label)
    parts = [load(n) for n in train]
    te = load("test_batch")
    for b, n in [*zip(parts, train, strict=True), (te, "test_batch")]:
        if "labels" not in b:
            raise FormatError(f"{label}:{n}: CIFAR-10 batches need 'labels'")
    return CifarArrays(
        _join([p["images"] for p in parts], "training batches"),
        np.concatenate([p["labels"] for p in parts]),
        te["images"],
        te["labels"],
        classes=meta("batches.meta", "label_names"),
    )
