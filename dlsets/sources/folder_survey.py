"""What a folder of images holds before anything is decoded: its layout, classes and the image
sizes found (each file's header only), for ``dlsets info ./folder`` without ``--size``.

A folder of mixed sizes cannot be loaded at its native size; this says which sizes it has, so
the user can pick ``--size``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..formats import image as imgread
from . import folder_scan


@dataclass
class Survey:
    scan: folder_scan.Scan
    sizes: Counter  # (height, width) -> files
    unreadable: list[str]  # relative paths whose header cannot be read
    per_class: dict[str, int]

    @property
    def mixed(self) -> bool:
        return len(self.sizes) > 1


def survey(path: folder_scan.PathLike) -> Survey:
    """List ``path`` (as :func:`dlsets.sources.folder_scan.scan`) and read every image's header."""
    sc = folder_scan.scan(path)
    sizes: Counter = Counter()
    unreadable: list[str] = []
    per_class: Counter = Counter()
    with imgread.quiet_bomb_warnings():
        for (_, cls), files in sc.groups.items():
            per_class[cls] += len(files)
            for p, _ in files:
                got = imgread.probe_size(p)
                if got is None:
                    unreadable.append(sc.rel(p))
                else:
                    sizes[got] += 1
    return Survey(sc, sizes, sorted(unreadable), dict(per_class))


def size_list(sizes: Counter, most: int = 8) -> str:
    """``"20x24 (50 files), 32x32 (3 files)"``: height x width, the commonest first."""
    shown = [f"{h}x{w} ({n} file{'s' if n != 1 else ''})" for (h, w), n in sizes.most_common(most)]
    more = f", and {len(sizes) - most} other sizes" if len(sizes) > most else ""
    return ", ".join(shown) + more


def lines(s: Survey, shown: str) -> list[str]:
    """What ``dlsets info`` says about a folder it has not loaded (sizes differ)."""
    sc = s.scan
    out = [f"{sc.folder.name}: {sc.layout} folder {sc.folder} (not loaded: the images differ "
           "in size)"]
    if sc.descended:
        out.append(f"  data in {sc.descended}/")
    if sc.layout == "classes":
        out.append(f"  {len(sc.classes)} classes: " + ", ".join(
            f"{c} ({s.per_class.get(c, 0)})" for c in sc.classes))
    else:
        out.append(f"  {sum(s.per_class.values())} image/mask pairs")
    out.append(f"  sizes found (height x width): {size_list(s.sizes)}")
    (h, w), _ = s.sizes.most_common(1)[0]
    out.append(f"  give --size H W to load them all at one size, e.g. dlsets info {shown} "
               f"--size {h} {w}")
    skipped = dict(sc.skipped)
    skipped.update((rel, "its header cannot be read") for rel in s.unreadable)
    if skipped:
        out.append(f"  skipped {len(skipped)} file(s):")
        for rel, why in sorted(skipped.items())[:10]:
            out.append(f"    {rel}: {why}")
        if len(skipped) > 10:
            out.append(f"    ... and {len(skipped) - 10} more")
    return out
