"""``mf-ckpt merge``: turn a sharded mfcore checkpoint into one unified safetensors set.

The tensors are re-assembled to their global shapes (every rank's slice in place) and written under
their mfcore names in the Hugging Face file layout (``model.safetensors``, or
``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json`` past the shard size; the one
writer of that format lives in :mod:`mfcore.io.safetensors`), with the trainer state beside
them, for tools that want plain safetensors.
"""
import json
import os
from typing import List

from mfcore.checkpoint import layout as L
from mfcore.checkpoint.manager import load_checkpoint
from mfcore.io.safetensors import write_hf_weights


def merge(path: str, out_dir: str, max_shard_bytes: int = 5 * 10**9) -> List[str]:
    """Write the checkpoint at ``path`` (a step directory or root) unified into ``out_dir``."""
    ckpt = load_checkpoint(path)
    files = write_hf_weights(dict(sorted(ckpt.tensors.items())), out_dir, max_shard_bytes)
    with open(os.path.join(out_dir, L.STATE_FILE), "w") as f:
        json.dump(ckpt.trainer_state, f, indent=1, sort_keys=True)
    return files
