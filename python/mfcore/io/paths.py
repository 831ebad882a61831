"""Paths read from files stay inside their directory.

A name that a file on disk supplies (a checkpoint index's shard file, ``latest``, an HF
``weight_map`` entry) is joined to its directory only through :func:`contained_path`: an absolute
path, a ``..`` component, a NUL byte or a symlink leading out of the directory is refused with an
error naming the file the name came from, so an edited or hostile file cannot make mfcore read (or
later overwrite) anything outside.
"""
import os
from typing import Type

from mfcore.errors import MfcoreError


class UnsafePathError(MfcoreError, ValueError):
    """A name read from a file would lead outside its directory."""


def contained_path(directory: str, name, source: str, error: Type[Exception] = UnsafePathError) -> str:
    """``directory/name`` for a ``name`` read from the file ``source``; raises ``error`` (a
    subclass of MfcoreError, e.g. CheckpointError) when it is not a plain relative name inside."""
    problem = _name_problem(name)
    if problem is None:
        path = os.path.join(directory, name)
        root = os.path.realpath(directory)
        if os.path.commonpath([root, os.path.realpath(path)]) == root:
            return path
        problem = "leads outside the directory through a symbolic link"
    raise error(f"{source}: names {name!r}, which {problem}; only names inside {directory} are read")


def _name_problem(name):
    if not isinstance(name, str) or not name.strip():
        return "is not a file name"
    if "\x00" in name:
        return "holds a NUL byte"
    if os.path.isabs(name) or name.startswith("\\"):
        return "is an absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "climbs out with '..'"
    return None
