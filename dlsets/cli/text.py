"""Text the command line prints: user-given names shown safely, near-miss flag suggestions,
and the parsing of its messages (reprs left alone)."""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

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


class ShownFormatter(logging.Formatter):
    """Log lines with the names put into them (the record's arguments) shown escaped."""

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(record.args, tuple):
            record.args = tuple(shown(a) if isinstance(a, (str, os.PathLike)) else a
                                for a in record.args)
        return super().format(record)


def shown_counts(counts) -> str:
    """Per-class counts, each class name shown as every other print shows it."""
    if isinstance(counts, dict):
        return "{" + ", ".join(f"{shown(k)}: {v}" for k, v in counts.items()) + "}"
    return str(counts)


def no_such_folder(text: str) -> str:
    """For "unknown dataset 'X'": that no folder X is here either (a typo of a folder name)."""
    m = re.match(r"unknown dataset ('[^']*'|\"[^\"]*\")", text)
    if m is None:
        return ""
    name = m.group(1)[1:-1]
    here = Path.cwd()
    if Path(name).is_file():
        return f"\n{shown(name)} in {shown(here)} is a file, not a folder of images."
    return (f"\nNor is there a folder {shown(name)} in {shown(here)}: a folder of images is "
            f"given by its path (./{shown(name)}, or an absolute one).")


def call_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each ``Name(...)`` in ``text``, parentheses balanced."""
    spans = []
    for m in re.finditer(r"[A-Za-z_][\w.]*\(", text):
        if spans and m.start() < spans[-1][1]:
            continue  # inside the previous call
        depth, i = 0, m.end() - 1
        while i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            if depth == 0:
                break
            i += 1
        spans.append((m.start(), i + 1))
    return spans
