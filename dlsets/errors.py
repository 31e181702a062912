"""The dlsets exception family: catch ``DlsetsError`` to catch them all."""

from __future__ import annotations


class DlsetsError(Exception):
    """Base of every error dlsets raises on purpose."""


class RegistryError(DlsetsError):
    """A registry entry is unknown, malformed or conflicts with another."""


class OptionError(DlsetsError, ValueError):
    """An argument has a value outside the ones allowed."""


class DownloadError(DlsetsError):
    """Every source for a file failed."""


class ChecksumError(DownloadError):
    """Bytes on disk or from a server do not match the registry (a DownloadError when every
    source sent such bytes)."""


class OfflineError(DlsetsError):
    """A file is missing and the network is forbidden."""


class FormatError(DlsetsError):
    """A file's content does not follow its format."""


class UnsafeArchiveError(FormatError):
    """An archive member would land outside its destination or is a link."""


class UnsafePickleError(FormatError):
    """A pickle names something other than numpy arrays and builtin containers."""


class ReplayError(DlsetsError, RuntimeError):
    """A copy of an Augmenter (forked, pickled or copied) was asked for the next samples of
    its counter: it would repeat the transforms its sibling copies make. Pass ``ids=``."""
