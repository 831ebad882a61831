"""The error classes users see. Every one of them is reported by the commands as one clear line.

Library modules raise a subclass of :class:`MfcoreError` for bad input (a malformed file, a wrong
flag, an inconsistent config); anything else escaping is a bug and keeps its traceback.
"""


class MfcoreError(Exception):
    """Base class of every user-facing error raised by mfcore."""


class ConfigError(MfcoreError, ValueError):
    """An invalid or inconsistent configuration."""


class DataError(MfcoreError, ValueError):
    """A dataset, index or corpus that cannot be used as given."""


class CheckpointError(MfcoreError, RuntimeError):
    """A checkpoint that is missing, incomplete, corrupt or does not match the run."""
