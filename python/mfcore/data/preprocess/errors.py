"""The user errors of ``mf-preprocess``: each names the file (and line) and what is wrong with it."""
from mfcore.errors import DataError


class PreprocessError(DataError):
    """Base class of every preprocessing error a user can cause."""


class InputError(PreprocessError):
    """An input file that is missing, unreadable, corrupt, or holds a record that cannot be used."""


class TokenizerError(PreprocessError):
    """A tokenizer file that does not load, or lacks what the options need (an EOD token)."""


class OutputError(PreprocessError):
    """An output location that cannot be written, or a work directory that cannot be resumed."""
