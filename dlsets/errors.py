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


class DeadlineError(DownloadError):
    """A fetch ran past its deadline (``deadline=``, ``--deadline``, ``DLSETS_DEADLINE``); what
    was downloaded so far is kept and the next fetch continues from it."""

class AuthError(DlsetsError):
    """A source needs credentials: none were found, they were refused, or they lack a right
    (for Kaggle: a dataset's terms or a competition's rules not accepted)."""


class OfflineError(DlsetsError):
    """A file is missing and the network is forbidden."""


class FormatError(DlsetsError):
    """A file's content does not follow its format."""


class UnsafeArchiveError(FormatError):
    """An archive member would land outside its destination or is a link."""


class UnsafePickleError(FormatError):
    """A pickle names something other than numpy arrays and builtin containers."""


class MissingDependencyError(DlsetsError, ImportError):
    """An optional package (a dlsets extra) is needed and not installed; the message names the
    ``pip install 'dlsets[...]'`` that adds it."""


class SpaceError(DlsetsError):
    """Not enough free disk space or memory for what was asked; nothing was written."""


class WriteError(DlsetsError):
    """An output cannot be written there: a read-only folder, no permission, a file where a
    folder should be."""


class ReplayError(DlsetsError, RuntimeError):
    """A copy of an Augmenter (forked, pickled or copied) was asked for the next samples of
    its counter: it would repeat the transforms its sibling copies make. Pass ``ids=``."""
