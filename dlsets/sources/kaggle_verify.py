"""``dlsets verify kaggle:...``: the pinned archives, the files unpacked from them (against the
unpack record's sizes and sha256) and the prepared copies, repaired as for built-in datasets."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DlsetsError, OptionError
from ..store import cache, locks, prepared
from ..store.names import confined
from . import download


def verify(name: str, *, cache_dir=None, repair: bool = True) -> list[str]:
    """What is wrong with a Kaggle dataset's cache, one line each, saying what was repaired.

    A damaged archive is deleted (the next fetch downloads it again). Unpacked files that were
    changed, deleted or added are unpacked again from the verified archive, or, when that is
    gone too, downloaded again and unpacked (``repair``); prepared copies are hashed in full
    and deleted when damaged."""
    from . import kaggle_fetch as kaggle

    ref, _ = kaggle._resolve(name)
    store = kaggle._Store(ref, cache_dir)
    problems = []
    for p in sorted(store.files.glob("*.zip")):
        why = store.check(p.name)
        if why is not None:
            if repair:
                p.unlink(missing_ok=True)
                store._update("verified.json", p.name, None)
            problems.append(f"{p.name}: {why}; " + ("deleted it; the next fetch downloads it "
                                                    "again" if repair else "not repaired"))
    for marker in sorted(store.dir.glob("extracted/*.json")):
        line = _verify_unpacked(kaggle, store, marker, repair)
        if line:
            problems.append(line)
    # prepared/v<N>-like-<name>/ holds arrays; prepared/v<N>/ holds a folder's variants
    copies = [p for p in store.dir.glob("prepared/*") if (p / prepared.MANIFEST).exists()]
    copies += [p for p in store.dir.glob("prepared/*/*") if p.is_dir()]
    for folder in sorted(copies):
        why = prepared.verify_or_remove(folder, repair=repair)
        if why is not None:
            problems.append(f"{folder}: {why}; " + ("deleted it" if repair else "not repaired"))
    return problems


def unpacked_damage(dest: Path, record: dict) -> list[str]:
    """The files under ``dest`` that differ from the unpack ``record`` (changed, missing or
    not unpacked by dlsets), as short descriptions; [] when all match."""
    files = record.get("files")
    if not isinstance(files, dict):
        return ["the unpack record lists no files"]
    bad = []
    for rel, want in sorted(files.items()):
        try:
            path = confined(dest, *rel.split("/"), what="unpacked file")
        except OptionError:
            bad.append(f"{rel!r} (a name the record must not hold)")
            continue
        try:
            if not isinstance(want, dict) or os.stat(path).st_size != want.get("size"):
                bad.append(f"{rel} (size changed)")
            elif download.hash_file(path).sha256 != want.get("sha256"):
                bad.append(f"{rel} (content changed)")
        except FileNotFoundError:
            bad.append(f"{rel} (deleted)")
        except OSError as exc:
            bad.append(f"{rel} (cannot be read: {exc.strerror or exc})")
    known = set(files)
    for top, _, names in os.walk(dest):
        for n in names:
            rel = Path(top, n).relative_to(dest).as_posix()
            if rel not in known:
                bad.append(f"{rel} (added)")
    return bad


def _verify_unpacked(kaggle, store, marker: Path, repair: bool) -> str | None:
    stem = marker.name.removesuffix(".json")
    dest = marker.with_suffix("")
    with locks.holding(str(dest) + ".lock", str(store.ref), doing="unpacking it"):
        record = cache.read_json(marker)
        if not record:
            return None
        bad = unpacked_damage(dest, record) if dest.is_dir() else ["the folder (deleted)"]
        if not bad:
            return None
        if repair:  # the next _unpack redoes it
            marker.unlink(missing_ok=True)
    shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    head = f"extracted/{stem}: {len(bad)} unpacked file(s) differ from the unpack record: {shown}"
    if not repair:
        return f"{head}; not repaired"
    fname = str(record.get("archive") or f"{stem}.zip")
    archive = store.files / fname
    had = archive.is_file() and store.check(fname) is None
    try:
        if not had:
            version = int(stem[1:]) if stem[1:].isdigit() else None
            kaggle._ensure(store, version, kaggle.credentials, None, False,
                           kaggle.Deadline(kaggle.config.deadline()))
        kaggle._unpack(store, fname, None)
    except DlsetsError as exc:
        return f"{head}; repair failed: {exc}"
    how = "unpacked again from the verified archive" if had else "downloaded again and unpacked"
    return f"{head}; repaired: {how}"
