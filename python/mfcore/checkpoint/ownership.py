"""A run owns its checkpoint directory: a fresh run (``resume: none``) never saves beside another
run's checkpoints, where rotation (which keeps the highest steps) would delete the new ones and a
later ``--resume auto`` would silently continue the old run.

:func:`claim_for_new_run` refuses such a directory with the ways out, or, with ``overwrite``,
moves the old checkpoints aside (renamed, never deleted) before the run writes anything.
"""
import os
import time
from typing import List, Optional

from mfcore.checkpoint import layout as L
from mfcore.checkpoint.save import list_steps
from mfcore.errors import CheckpointError


def previous_run_entries(directory: str) -> List[str]:
    """The step directories and ``latest`` pointer a previous run left in ``directory``."""
    steps = [os.path.basename(p) for _, p in list_steps(directory)]
    latest = [L.LATEST_FILE] if os.path.lexists(os.path.join(directory, L.LATEST_FILE)) else []
    return steps + latest


def aside_path(directory: str) -> str:
    """A free name beside ``directory`` for the old checkpoints (``<dir>.old-<UTC time>``)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    base = f"{directory.rstrip(os.sep)}.old-{stamp}"
    path, n = base, 1
    while os.path.lexists(path):
        path, n = f"{base}-{n}", n + 1
    return path


def claim_for_new_run(directory: str, overwrite: bool, move: bool = True) -> Optional[str]:
    """Make ``directory`` this fresh run's own; returns where old checkpoints were moved, if any.

    Raises CheckpointError naming the directory, its newest entry and the three choices when it
    holds another run's checkpoints and ``overwrite`` is false. ``move=False`` (ranks other than 0)
    only checks; rank 0 does the move."""
    directory = os.path.abspath(directory)
    found = previous_run_entries(directory)
    if not found:
        return None
    if not overwrite:
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise CheckpointError(
            f"{directory}: holds checkpoints of another run ({shown}); a new run (--resume none) "
            "would mix with them. Choose another run.output_dir (or checkpoint.dir), continue that "
            "run with --resume auto, or pass --overwrite to move the old checkpoints aside")
    if not move:
        return None
    aside = aside_path(directory)
    os.rename(directory, aside)
    os.makedirs(directory, exist_ok=True)
    return aside
