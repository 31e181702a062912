"""The version of dlsets (also ``dlsets.__version__``; pyproject.toml carries the same)."""

__version__ = "0.2.0"
