"""Hugging Face interchange: the model's parameters ⇄ Hugging Face tensor names and layouts.

Names match 1:1. Three layout rules: parameters of cells marked ``HF_TRANSPOSED`` (projections,
the MoE router) are stored ``[in, out]`` here and ``[out, in]`` by Hugging Face; stacked expert
weights ``...experts.gate_proj.weight [E, in, out]`` are Hugging Face's ``...experts.{e}.gate_proj.weight``;
DeepSeek-V3's MTP modules share the embedding and output head, of which Hugging Face keeps copies
(``model.layers.{L+k}.embed_tokens.weight``, ``...shared_head.head.weight``): written on export,
ignored on import. MoE counters (``expert_load``, ``dropped_tokens``) are training state, not weights.
"""
import dataclasses
import logging
import os

import mindspore as ms
import numpy as np
from mindspore import Tensor, ops

from mfcore.errors import CheckpointError
from mfcore.models.build import build_model
from mfcore.models.config import config_to_dict, load_model_config
from mfcore.models.layers.linear import GroupedLinear
from mfcore.models.registry import family_of
from mfcore.io.atomic import write_json
from mfcore.io.safetensors import read_hf_weights, write_hf_weights

_TRAINING_STATE = ("expert_load", "dropped_tokens")
log = logging.getLogger("mfcore.models")


def _owner_cells(model):
    return dict(model.cells_and_names())


def _hf_entries(model):
    """``(our name, parameter, list of (hf name, converter to HF, expected HF shape))``."""
    cells = _owner_cells(model)
    for name, param in model.parameters_and_names():
        prefix, leaf = name.rsplit(".", 1)
        if leaf in _TRAINING_STATE:
            continue
        cell = cells.get(prefix)
        shape = tuple(param.shape)
        if isinstance(cell, GroupedLinear):
            base, proj = prefix.rsplit(".", 1)
            yield name, param, [(f"{base}.{e}.{proj}.{leaf}", e, (shape[2], shape[1]))
                                for e in range(shape[0])]
        elif getattr(cell, "HF_TRANSPOSED", False) and leaf == "weight":
            yield name, param, [(name, "T", shape[::-1])]
        else:
            yield name, param, [(name, None, shape)]


def _to_hf(value, how):
    if how is None:
        return value
    if how == "T":
        return value.T
    return value[how].T


def _hf_copies(model):
    """HF-only copies of our tensors (the family's rule, e.g. DeepSeek-V3's MTP embedding/head)."""
    return family_of(model.config).hf_copies(model.config)


def hf_state_dict(model):
    """``{Hugging Face name: numpy array}`` in Hugging Face layout (float32 master weights)."""
    tensors = {}
    for _, param, targets in _hf_entries(model):
        value = param.asnumpy()
        for hf_name, how, _ in targets:
            tensors[hf_name] = np.ascontiguousarray(_to_hf(value, how))
    tensors.update({copy: tensors[ours] for copy, ours in _hf_copies(model).items()})
    return tensors


def _ignorable(model, hf_name):
    if hf_name.endswith("rotary_emb.inv_freq"):
        return True
    if hf_name == "lm_head.weight" and getattr(model.config, "tie_word_embeddings", False):
        return True
    return hf_name in _hf_copies(model)


def _from_hf(tensors, name, targets, source):
    parts = []
    for hf_name, how, shape in targets:
        value = np.asarray(tensors[hf_name])
        if tuple(value.shape) != shape:
            raise CheckpointError(f"{source}: tensor {hf_name!r} has shape {tuple(value.shape)}, the "
                                  f"model expects {shape}")
        parts.append(value if how is None else value.T)
    return np.stack(parts) if isinstance(targets[0][1], int) else parts[0]


def load_hf_state_dict(model, tensors, source="state dict"):
    """Copy Hugging Face named ``tensors`` into ``model`` (in place); every weight must be present
    with the right shape and nothing unknown may be left over."""
    entries = list(_hf_entries(model))
    expected = {hf for _, _, targets in entries for hf, _, _ in targets}
    missing = sorted(expected - set(tensors))
    if missing:
        raise CheckpointError(f"{source}: missing {len(missing)} tensor(s), e.g. {missing[:5]}")
    unexpected = sorted(k for k in set(tensors) - expected if not _ignorable(model, k))
    if unexpected:
        raise CheckpointError(f"{source}: {len(unexpected)} tensor(s) the model does not have, "
                              f"e.g. {unexpected[:5]}")
    for name, param, targets in entries:
        value = _from_hf(tensors, name, targets, source).astype(np.float32)
        # assign in place: set_data would detach the Parameter from graphs already compiled
        ops.assign(param, Tensor(value, param.dtype))
    return model


# mfcore-only fields left out of config.json at these values (absent reads back as the same value)
_DEFAULTS_NOT_WRITTEN = {"moe_dispatch": "dropless"}


def _hf_config(config):
    data = {k: v for k, v in config_to_dict(config).items()
            if v is not None and _DEFAULTS_NOT_WRITTEN.get(k, object()) != v}
    data["architectures"] = [family_of(config).hf_architectures[config.model_type]]
    data["torch_dtype"] = "float32"
    return data


def save_pretrained(model, out_dir, max_shard_bytes=5 * 1024 ** 3):
    """Write ``config.json`` and the weights (one file, or shards + index) in Hugging Face layout."""
    os.makedirs(out_dir, exist_ok=True)
    files = write_hf_weights(hf_state_dict(model), out_dir, max_shard_bytes)
    write_json(os.path.join(out_dir, "config.json"), _hf_config(model.config), indent=2)
    return files


def from_pretrained(hf_dir, dtype=ms.float32, recompute="none"):
    """Build the model described by ``hf_dir/config.json`` and load its weights into it."""
    if not os.path.isdir(hf_dir):
        raise CheckpointError(f"{hf_dir}: not a directory")
    config = load_model_config(hf_dir)
    tensors = read_hf_weights(hf_dir)
    config = _without_absent_mtp(config, tensors, hf_dir)
    model = build_model(config, compute_dtype=dtype, recompute=recompute)
    return load_hf_state_dict(model, tensors, source=hf_dir)


def _without_absent_mtp(config, tensors, source):
    """``transformers``' DeepseekV3ForCausalLM has no MTP module: what it saves says
    ``num_nextn_predict_layers: 1`` but holds no MTP weights. Such a model is built without MTP
    (training new MTP layers from scratch is a config choice, not something to do silently)."""
    if not getattr(config, "num_nextn_predict_layers", 0):
        return config
    prefix = f"model.layers.{config.num_hidden_layers}."
    if any(name.startswith(prefix) for name in tensors):
        return config
    log.warning("%s: config.json asks for %d MTP layer(s) but the weights hold none (transformers does "
                "not save them); building the model without MTP", source, config.num_nextn_predict_layers)
    return dataclasses.replace(config, num_nextn_predict_layers=0)
