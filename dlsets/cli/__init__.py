"""The ``dlsets`` command line: parses, calls the public API, prints."""

from .app import AUGMENT_FORMATS, main  # noqa: F401  (AUGMENT_FORMATS: dlsets.cli's in 0.1)

__all__ = ["main"]
