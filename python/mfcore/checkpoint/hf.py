"""Hugging Face interchange: export a checkpoint's model, import HF weights to train from.

Export: the model config saved in the trainer state rebuilds the model, the checkpoint's
``model/*`` tensors (re-assembled from every rank's slices) fill it, and the models package's own
HF conversion (``hf_state_dict``: names, transposes, expert splitting) gives the HF tensors, written
as ``config.json`` + ``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json``.

Import: ``from_pretrained`` builds the model from an HF directory; its parameters become a
``step_00000000`` checkpoint marked ``weights_only`` (the trainer then starts at step 0 with a
fresh optimizer, but from these weights).
"""
import json
import os
from typing import List

from mfcore.checkpoint.manager import CheckpointManager, load_checkpoint
from mfcore.checkpoint.model_state import MODEL_PREFIX, assign_model_arrays, model_arrays
from mfcore.checkpoint.safetensors_set import write_set
from mfcore.errors import CheckpointError

# HF class names for config.json's "architectures" (transformers picks the model class from it)
ARCHITECTURES = {"llama": "LlamaForCausalLM", "deepseek_v3": "DeepseekV3ForCausalLM"}


def model_config_of(trainer_state: dict, where: str):
    """The model config a checkpoint was trained with (stored by the trainer as a dict)."""
    from mfcore.models import load_model_config
    cfg = trainer_state.get("model_config")
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{where}: the trainer state holds no model_config, so the model "
                              "cannot be rebuilt for export")
    return load_model_config(cfg)


def hf_config_json(model_cfg) -> dict:
    """``config.json`` content: the config's HF fields plus what transformers needs to load it."""
    from mfcore.models import config_to_dict
    data = config_to_dict(model_cfg)
    model_type = data.setdefault("model_type", "llama")
    data.setdefault("architectures", [ARCHITECTURES.get(model_type, "LlamaForCausalLM")])
    data.setdefault("torch_dtype", "float32")
    return data


def export_hf(path: str, out_dir: str, max_shard_bytes: int = 5 * 10**9) -> List[str]:
    """Export the model of the checkpoint at ``path`` to ``out_dir`` in Hugging Face layout."""
    from mfcore.models import build_model, hf_state_dict
    ckpt = load_checkpoint(path, names=lambda n: n.startswith(MODEL_PREFIX))
    model_cfg = model_config_of(ckpt.trainer_state, ckpt.path)
    model = build_model(model_cfg)
    assign_model_arrays(model, ckpt.tensors, ckpt.path)
    files = write_set(hf_state_dict(model), out_dir, max_shard_bytes)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf_config_json(model_cfg), f, indent=2, sort_keys=True)
    return files


def import_hf(in_dir: str, root: str) -> str:
    """Write the HF model in ``in_dir`` as checkpoint ``step_00000000`` under ``root``."""
    from mfcore.models import config_to_dict, from_pretrained, load_model_config
    config_path = os.path.join(in_dir, "config.json")
    if not os.path.exists(config_path):
        raise CheckpointError(f"{in_dir}: not a Hugging Face model directory (no config.json)")
    model_cfg = load_model_config(config_path)
    model = from_pretrained(in_dir)
    state = {"model_config": config_to_dict(model_cfg), "weights_only": True,
             "imported_from": os.path.abspath(in_dir)}
    mgr = CheckpointManager(root)
    report = mgr.save(0, model_arrays(model), state)
    return report.path
