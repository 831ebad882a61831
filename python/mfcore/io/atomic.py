"""Replacing a file atomically: readers see the old content or the new, never a part of either.

The one implementation of "write a temporary file beside the target, fsync it, rename it over the
target, fsync the directory". Everything mfcore writes in place of an earlier file (resolved
configs, weight files, indexes, tokenizers, resumable-state headers) goes through here.
"""
import contextlib
import json
import os
from typing import IO, Iterator

TMP_SUFFIX = ".tmp"


def fsync_dir(path: str) -> None:
    """Make a rename inside directory ``path`` durable."""
    fd = os.open(path or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str, durable: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``path`` for the caller (or a library) to write; when the block
    ends without error the file is fsynced and renamed onto ``path``. On error it is removed and
    ``path`` keeps what it had."""
    path = os.fspath(path)
    tmp = path + TMP_SUFFIX
    try:
        yield tmp
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    if durable:
        fsync_dir(os.path.dirname(path))


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", encoding: str = "utf-8", durable: bool = True) -> Iterator[IO]:
    """``open`` for writing, through :func:`atomic_path`."""
    with atomic_path(path, durable) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f


def write_text(path: str, text: str, durable: bool = True) -> None:
    with atomic_open(path, "w", durable=durable) as f:
        f.write(text)


def write_json(path: str, obj, durable: bool = True, **dump_options) -> None:
    with atomic_open(path, "w", durable=durable) as f:
        json.dump(obj, f, **dump_options)
