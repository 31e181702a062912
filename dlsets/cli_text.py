"""Text the command line prints: user-given names shown safely, and near-miss flag suggestions."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable

_CONTROL = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shown(name: object) -> str:
    """A user-given name (file, folder, class) as one printable line: bytes that were not
    UTF-8 (held surrogate-escaped) as ``\\xe9``, a newline as ``\\n``, other unprintable
    characters as ``\\u....``; everything else, accents included, as it is."""
    text = os.fspath(name) if isinstance(name, os.PathLike) else str(name)
    out = []
    for c in text:
        if "\udc80" <= c <= "\udcff":
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        elif c in _CONTROL:
            out.append(_CONTROL[c])
        elif not c.isprintable() and c != " ":
            out.append(f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return "".join(out)


def shown_message(text: str) -> str:
    """An error message for printing: its lines kept, anything unprintable in them escaped."""
    return "\n".join(shown(line) for line in text.split("\n"))


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to a mistyped ``word`` (``--rotation`` -> ``--rotate``), if any."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None
