"""``dlsets verify DIR/``: every shard of a folder hashed against its entry, and index.json
written (or rewritten, when damaged) from the shards' own checked entries once all verify."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FormatError, OptionError
from .layout import FORMATS, INDEX, NAME, SIDECAR, sha256_file, shard_file
from .shard_index import entry_or_none, read_index, write_index


@dataclass
class ShardReport:
    """What :func:`verify_shards` found in a folder of shards."""

    folder: Path
    shards: int
    ok: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    index: str = "missing"  # "present", "written", "missing", "damaged" or "rewritten"
    problem: str | None = None  # the folder is not a (single) expansion's
    index_problem: str | None = None  # why index.json was not believed
    bad_entries: list[str] = field(default_factory=list)  # shards whose own entry is damaged
    unreadable: str | None = None  # what load_shards refuses, the hashes being right

    @property
    def complete(self) -> bool:
        return self.problem is None and self.unreadable is None and \
            len(self.ok) == self.shards and self.index in ("present", "written", "rewritten")

    def describe(self) -> list[str]:
        where = f"{self.folder}/"
        if self.problem:
            return [f"{where}: {self.problem}"]
        lines = [f"{where}{f}: damaged (its bytes do not hash to its entry)"
                 for f in self.damaged]
        lines += [f"{where}{f}: missing" + (" (its entry is damaged)" if f in self.bad_entries
                                            else "") for f in self.missing]
        state = {"present": "index.json: ok", "written": "wrote index.json",
                 "missing": "no index.json yet",
                 "damaged": f"index.json is damaged ({self.index_problem})",
                 "rewritten": f"index.json was damaged ({self.index_problem}): rewrote it "
                              "from the shards' entries"}[self.index]
        lines.append(f"{where}: {len(self.ok)} of {self.shards} shards verified; {state}")
        if self.unreadable:
            lines.append(f"{where}: the shards hash to their entries, but reading them back "
                         f"fails: {self.unreadable}. Write the expansion again into a new "
                         "folder (dlsets augment ... --out NEWDIR/)")
        if self.damaged or self.missing:
            lines.append(f"{where}: run the same augment command again: it writes only the "
                         "shards that are missing or damaged")
        return lines


def verify_shards(folder: str | os.PathLike, *, repair: bool = True,
                  progress: bool | None = None) -> ShardReport:
    """Hash every shard in ``folder`` against its entry (index.json, else the shards' own
    entries); with ``repair``, write index.json when every shard verifies and it is missing
    or damaged. Nothing is deleted: a damaged or missing shard is rewritten by running its
    expansion again."""
    from ..common.progress import bar

    folder = Path(folder)
    doc, index_problem = None, None
    try:
        doc = read_index(folder)
    except FormatError as exc:
        if (folder / INDEX).exists() or (folder / INDEX).is_symlink():
            why = str(exc).removeprefix(f"{folder / INDEX}: ")
            index_problem = why.split(": the index is damaged")[0]
    bad_entries: list[str] = []
    if doc is not None:
        settings, key = doc["settings"], doc["key"]
        entries = {e["file"]: e for e in doc["shards"]}
        files = list(doc["files"])
    else:
        if not folder.is_dir():
            return ShardReport(folder, 0, problem="no dlsets shards or index.json here")
        metas = []
        for p in sorted(folder.glob(".*.json")):
            if SIDECAR.fullmatch(p.name):
                if (m := entry_or_none(p)) is not None:
                    metas.append(m)
                elif p.exists():
                    bad_entries.append(p.name[1:-5])
        keys = {m["key"] for m in metas}
        if not metas:
            return ShardReport(folder, 0, problem="no dlsets shards or index.json here"
                               + (f" that can be read ({index_problem})" if index_problem
                                  else ""))
        if len(keys) > 1:
            return ShardReport(folder, 0, problem="holds the shards of more than one expansion")
        settings, key = metas[0]["settings"], metas[0]["key"]
        entries = {m["entry"]["file"]: m["entry"] for m in metas}
        try:
            files = _files_of(settings)
        except (KeyError, TypeError, ValueError):
            return ShardReport(folder, 0, problem="the shards' entries are malformed")
    report = ShardReport(folder, len(files), index="present" if doc else "missing",
                         index_problem=index_problem, bad_entries=bad_entries)
    if index_problem:
        report.index = "damaged"
    with bar(sum(e["size"] for e in entries.values()), "verify", progress=progress,
             unit="B") as pbar:
        for f in files:
            path, entry = folder / f, entries.get(f)
            if entry is None or not path.is_file():
                report.missing.append(f)
            elif path.stat().st_size == entry["size"] and sha256_file(path) == entry["sha256"]:
                report.ok.append(f)
            else:
                report.damaged.append(f)
            pbar.update(entry["size"] if entry else 0)
    if repair and report.index in ("missing", "damaged") and len(report.ok) == len(files):
        write_index(folder, settings, key, [entries[f] for f in files])
        report.index = "written" if report.index == "missing" else "rewritten"
    if report.index in ("present", "written", "rewritten") and len(report.ok) == len(files):
        # the hashes say the bytes are the ones written; the reader's own checks say whether
        # it takes them (a shard reached through a link out of the folder, say)
        from .shard_reader import check_shards

        try:
            check_shards(folder)
        except (FormatError, OptionError) as exc:
            report.unreadable = _VERIFY_HINT.sub("", str(exc)).rstrip(" .:;,")
    return report


# The reader's messages send the user to `dlsets verify`: not said by verify itself.
_VERIFY_HINT = re.compile(r"[:.;,]? *\(?[Rr]un `dlsets verify [^`]*`[^.;)]*\)?")


def _files_of(settings: dict) -> list[str]:
    """The shard files the settings of an entry name, their number bounded."""
    from .shard_index import MAX_SHARDS

    n, name, fmt = settings["shards"], settings["name"], settings["format"]
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SHARDS or \
            not isinstance(name, str) or not NAME.fullmatch(name) or fmt not in FORMATS:
        raise ValueError("malformed settings")
    return [shard_file(name, i, n, fmt) for i in range(n)]
