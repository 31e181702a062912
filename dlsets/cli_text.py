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


def unrecognized(args: list[str], options: Iterable[str]) -> str:
    """argparse's "unrecognized arguments" line, with the option each mistyped flag was
    probably meant to be (``--rotation`` -> ``--rotate``)."""
    options = [o for o in options if o.startswith("--")]
    hints = []
    for a in args:
        if a.startswith("--"):
            near = suggest(a.split("=", 1)[0], options)
            if near:
                hints.append(f"{a.split('=', 1)[0]}: did you mean {near}?")
    return "unrecognized arguments: " + " ".join(map(shown, args)) + (
        " (" + "; ".join(hints) + ")" if hints else "")


def bare_switches(argv: list[str], flags: dict[str, str]) -> list[str]:
    """``argv`` with each flag of ``flags`` (options taking an optional number) that is not
    followed by a number written with its default value (``--hflip`` -> ``--hflip=0.5``), so
    that ``--hflip mnist`` keeps ``mnist`` as the dataset rather than taking it as the value."""
    out = list(argv)
    for i, a in enumerate(argv):
        if a == "--":
            break
        if a in flags and not (i + 1 < len(argv) and _number(argv[i + 1])):
            out[i] = f"{a}={flags[a]}"
    return out


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
