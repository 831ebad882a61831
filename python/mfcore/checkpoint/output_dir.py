"""Directory outputs (``mf-ckpt export-hf``, ``merge``) are replaced whole, never edited in place.

Everything is written into a fresh ``<out>.tmp-<pid>`` beside the target and swapped in only when
complete (one atomic ``renameat2(RENAME_EXCHANGE)`` where the kernel has it), so no stale file of an
earlier export survives (an old single ``model.safetensors`` beside new shards would be loaded
first) and a failed export leaves the old directory as it was. Each output holds a marker,
``.mfcore-output.json``; a non-empty directory without it (not written by mfcore) is refused unless
``overwrite``, and is then moved aside to ``<out>.old-<time>``, not deleted.
"""
import contextlib
import ctypes
import json
import os
import shutil
import time
from typing import Iterator, Optional

from mfcore.errors import CheckpointError

MARKER = ".mfcore-output.json"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def written_by_mfcore(path: str) -> bool:
    return os.path.isfile(os.path.join(path, MARKER))


def check_replaceable(out: str, overwrite: bool) -> None:
    """Refuses a target that is a file, or a non-empty directory mfcore did not write (unless ``overwrite``)."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise CheckpointError(f"{out}: exists and is not a directory")
    if os.path.isdir(out) and os.listdir(out) and not written_by_mfcore(out) and not overwrite:
        raise CheckpointError(f"{out}: a non-empty directory mfcore did not write; choose another "
                              "output directory or pass --overwrite (the old one is moved aside)")


def _exchange(a: str, b: str) -> bool:
    """Atomically swaps two paths; False where renameat2 is unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_in(tmp: str, out: str) -> Optional[str]:
    """Puts ``tmp`` at ``out``; returns where a non-mfcore old directory was kept, if any."""
    if not os.path.isdir(out):
        os.rename(tmp, out)
        return None
    keep = not written_by_mfcore(out) and bool(os.listdir(out))
    if _exchange(tmp, out):
        old = tmp  # the old contents now sit at tmp
    else:
        old = f"{out}.old-{os.getpid()}"
        os.rename(out, old)
        os.rename(tmp, out)
    if keep:
        aside = f"{out}.old-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
        os.rename(old, aside)
        return aside
    shutil.rmtree(old, ignore_errors=True)
    return None


@contextlib.contextmanager
def replaced_directory(out_dir: str, command: str, overwrite: bool = False) -> Iterator[str]:
    """``with replaced_directory(out, "export-hf") as tmp:`` write into ``tmp``; on success it
    becomes ``out`` (the old contents are gone, or moved aside when mfcore did not write them)."""
    out = os.path.abspath(out_dir)
    check_replaceable(out, overwrite)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = f"{out}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        yield tmp
        with open(os.path.join(tmp, MARKER), "w", encoding="utf-8") as f:
            json.dump({"written_by": f"mf-ckpt {command}"}, f)
        aside = _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(parent)
    if aside:
        print(f"{out}: the previous contents were moved to {aside}")
