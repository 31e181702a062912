"""The ``dlsets`` command line: parses, calls the public API, prints."""

from .app import AUGMENT_FORMATS, main  # noqa: F401  (AUGMENT_FORMATS: dlsets.cli's before 0.3)

__all__ = ["main"]
