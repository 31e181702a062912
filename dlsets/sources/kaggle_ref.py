"""Kaggle dataset names: ``kaggle:OWNER/DATASET[/versions/N]`` or ``kaggle:competitions/NAME``
parsed into a :class:`Ref` (below the registry, whose Kaggle entries are checked with it)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import OptionError
from ..store.names import check_component

WEB = "https://www.kaggle.com"
_REF = re.compile(r"^(?:kaggle:)?(?:(competitions)/([\w.-]+)|([\w.-]+)/([\w.-]+)"
                  r"(?:/versions/([0-9]+))?)/?$")
MAX_VERSION = 1_000_000
"""The highest version number accepted (from a name, a registry entry or Kaggle's answer)."""


@dataclass(frozen=True)
class Ref:
    """What a ``kaggle:`` name points at: a dataset (owner, slug, optional version) or a
    competition's data (slug, ``owner == "competitions"``)."""

    owner: str
    slug: str
    version: int | None = None

    @property
    def competition(self) -> bool:
        return self.owner == "competitions"

    @property
    def page(self) -> str:
        if self.competition:
            return f"{WEB}/competitions/{self.slug}"
        return f"{WEB}/datasets/{self.owner}/{self.slug}"

    def __str__(self) -> str:
        tail = f"/versions/{self.version}" if self.version else ""
        return f"kaggle:{self.owner}/{self.slug}{tail}"


def parse_ref(name: str) -> Ref:
    """``kaggle:OWNER/DATASET``, ``kaggle:OWNER/DATASET/versions/N`` or
    ``kaggle:competitions/NAME`` (also without the ``kaggle:`` prefix) -> :class:`Ref`."""
    m = _REF.match(name.strip()) if isinstance(name, str) else None
    if not m:
        raise OptionError(f"{str(name)[:120]!r} is not a Kaggle dataset name: give "
                          "kaggle:OWNER/DATASET, kaggle:OWNER/DATASET/versions/N or "
                          "kaggle:competitions/NAME (as in "
                          "the dataset's URL, https://www.kaggle.com/datasets/OWNER/DATASET)")
    try:  # each part becomes a folder of the cache
        if m.group(1):
            return Ref("competitions", check_component(m.group(2), "competition"))
        check_component(m.group(3), "owner")
        check_component(m.group(4), "dataset")
        version = check_version(m.group(5), "version") if m.group(5) else None
    except OptionError as exc:
        raise OptionError(f"Kaggle name {name[:120]!r}: {exc}") from None
    return Ref(m.group(3), m.group(4), version)


def check_version(value: object, where: str) -> int:
    """``value`` as a version number: an integer from 1 to MAX_VERSION (a string of digits
    for a name), else an OptionError quoting it."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 7:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        shown = repr(value) if not isinstance(value, str) or len(value) <= 40 else \
            f"{value[:20]!r}... ({len(value)} characters)"
        raise OptionError(f"{where}: {shown} is not a version number (an integer from 1 to "
                          f"{MAX_VERSION:,})")
    return value
