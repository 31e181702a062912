"""The ``dlsets`` command line: parses, calls the public API, prints."""

from .app import main

__all__ = ["main"]
