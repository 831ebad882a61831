"""Hugging Face interchange: export a checkpoint's model, import HF weights to train from.

Export: the model config saved in the trainer state rebuilds the model, the checkpoint's
``model/*`` tensors (re-assembled from every rank's slices) fill it, and the models package's own
HF conversion and writer (``save_pretrained``: names, transposes, expert splitting) write
``config.json`` + ``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json`` (or a single
``model.safetensors`` when everything fits in one file, as Hugging Face does).

Import: ``from_pretrained`` builds the model from an HF directory; its parameters become a
``step_00000000`` checkpoint marked ``weights_only`` (the trainer then starts at step 0 with a
fresh optimizer, but from these weights).
"""
import os
from typing import List

from mfcore.checkpoint.manager import CheckpointManager, load_checkpoint
from mfcore.checkpoint.model_state import MODEL_PREFIX, assign_model_arrays, model_arrays
from mfcore.checkpoint.output_dir import check_replaceable, replaced_directory
from mfcore.errors import CheckpointError


def model_config_of(trainer_state: dict, where: str):
    """The model config a checkpoint was trained with (stored by the trainer as a dict)."""
    from mfcore.models import load_model_config
    cfg = trainer_state.get("model_config")
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{where}: the trainer state holds no model_config, so the model "
                              "cannot be rebuilt for export")
    return load_model_config(cfg)


def export_hf(path: str, out_dir: str, max_shard_bytes: int = 5 * 10**9, overwrite: bool = False) -> List[str]:
    """Export the model of the checkpoint at ``path`` to ``out_dir`` in Hugging Face layout
    (written whole into a fresh directory swapped in at the end, see :mod:`.output_dir`)."""
    from mfcore.models import build_model
    from mfcore.models.hf import save_pretrained
    check_replaceable(os.path.abspath(out_dir), overwrite)
    ckpt = load_checkpoint(path, names=lambda n: n.startswith(MODEL_PREFIX))
    model_cfg = model_config_of(ckpt.trainer_state, ckpt.path)
    model = build_model(model_cfg)
    assign_model_arrays(model, ckpt.tensors, ckpt.path)
    with replaced_directory(out_dir, "export-hf", overwrite) as tmp:
        return save_pretrained(model, tmp, max_shard_bytes)


def import_hf(in_dir: str, root: str) -> str:
    """Write the HF model in ``in_dir`` as checkpoint ``step_00000000`` under ``root``."""
    from mfcore.models import config_to_dict
    from mfcore.models.hf import from_pretrained
    if not os.path.exists(os.path.join(in_dir, "config.json")):
        raise CheckpointError(f"{in_dir}: not a Hugging Face model directory (no config.json)")
    model = from_pretrained(in_dir)
    state = {"model_config": config_to_dict(model.config), "weights_only": True,
             "imported_from": os.path.abspath(in_dir)}
    mgr = CheckpointManager(root)
    report = mgr.save(0, model_arrays(model), state)
    return report.path
