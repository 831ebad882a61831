"""Export an mfcore checkpoint to MindSpore's native ``.ckpt`` format (on request).

The ``.ckpt`` holds the global tensors under their mfcore names, so ``mindspore.load_checkpoint``
+ ``load_param_into_net`` put them into a model built with the same parameter names. MindSpore is
imported only here, and only when an export is asked for.
"""
import os
from typing import Dict, Optional, Sequence

import numpy as np

from mfcore.checkpoint.manager import load_checkpoint
from mfcore.errors import CheckpointError


def save_ms_ckpt(tensors: Dict[str, np.ndarray], out_file: str) -> str:
    """Write ``tensors`` (name → numpy) as a MindSpore ``.ckpt`` file; returns its path."""
    import mindspore as ms
    if not out_file.endswith(".ckpt"):
        raise CheckpointError(f"{out_file}: a MindSpore checkpoint file name must end in .ckpt")
    os.makedirs(os.path.dirname(os.path.abspath(out_file)), exist_ok=True)
    items = [{"name": name, "data": ms.Tensor(np.ascontiguousarray(arr))}
             for name, arr in sorted(tensors.items())]
    # written beside the target and renamed over it when complete; MindSpore makes it read-only
    # for the owner, the umask decides instead
    tmp = f"{out_file[:-len('.ckpt')]}.tmp-{os.getpid()}.ckpt"
    try:
        ms.save_checkpoint(items, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out_file)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return out_file


def export_ms_ckpt(path: str, out_file: str, prefixes: Optional[Sequence[str]] = None) -> str:
    """Export the checkpoint at ``path`` (step directory or root) to ``out_file``; ``prefixes``
    keeps only tensors whose names start with one of them (e.g. the model, not the optimizer)."""
    ckpt = load_checkpoint(path)
    tensors = {k: v for k, v in ckpt.tensors.items()
               if not prefixes or any(k.startswith(p) for p in prefixes)}
    if not tensors:
        raise CheckpointError(f"{ckpt.path}: no tensors start with {list(prefixes or [])}")
    return save_ms_ckpt(tensors, out_file)
