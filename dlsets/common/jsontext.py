"""Parsing JSON that a user or another process wrote: hostile nesting is an error, not a crash.

``json.loads`` recurses once per nesting level, so ``[[[[...]]]]`` a few thousand deep raises
RecursionError; :func:`loads` turns that into :class:`TooDeep`, a ValueError like every other
"not valid JSON", so callers' handling of bad JSON covers it too.
"""

from __future__ import annotations

import json
from typing import Any


class TooDeep(ValueError):
    """The JSON nests arrays or objects too deeply to be parsed."""


def loads(data: str | bytes) -> Any:
    """``json.loads(data)``; TooDeep (a ValueError) when it is nested too deeply."""
    try:
        return json.loads(data)
    except RecursionError:
        raise TooDeep("its JSON is nested too deeply (arrays or objects within each other "
                      "thousands of levels deep)") from None
