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
from mfcore.checkpoint.output_dir import check_replaceable, replaced_directory
from mfcore.io.safetensors import write_hf_weights


def merge(path: str, out_dir: str, max_shard_bytes: int = 5 * 10**9, overwrite: bool = False) -> List[str]:
    """Write the checkpoint at ``path`` (a step directory or root) unified into ``out_dir``
    (a fresh directory swapped in whole, see :mod:`.output_dir`)."""
    check_replaceable(os.path.abspath(out_dir), overwrite)
    ckpt = load_checkpoint(path)
    with replaced_directory(out_dir, "merge", overwrite) as tmp:
        files = write_hf_weights(dict(sorted(ckpt.tensors.items())), tmp, max_shard_bytes)
        with open(os.path.join(tmp, L.STATE_FILE), "w") as f:
            json.dump(ckpt.trainer_state, f, indent=1, sort_keys=True)
    return files
