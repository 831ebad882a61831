"""mfcore.models: Llama 2/3 and DeepSeek-V3 as MindSpore Cells with Hugging Face parameter names.

Entry points:

- ``load_model_config(name_or_path_or_dict)`` → :class:`LlamaConfig` / :class:`DeepseekV3Config`
- ``build_model(config, compute_dtype=ms.float32, recompute="none"|"full"|"selective")`` → Cell;
  ``model(input_ids)`` → fp32 logits ``[b, s, vocab]``; ``model(input_ids, labels, loss_mask,
  position_ids=None, attention_mask=None)`` → fp32 scalar SUM over tokens of ``loss_mask * CE``
  (+ MTP and auxiliary terms, scaled so that dividing by the loss-token count gives their mean)
- ``count_parameters(config)``, ``flops_per_token(config, seq_length)``
- ``from_pretrained(hf_dir, dtype=...)``, ``save_pretrained(model, out_dir)``,
  ``hf_state_dict(model)``, ``load_hf_state_dict(model, tensors)``
- MoE balance: ``expert_load(model)`` → numpy ``[moe_layers, experts]`` tokens routed to each expert
  since the last reset; ``update_expert_bias(model, load=None, rate=None)`` applies DeepSeek-V3's
  aux-loss-free bias step (``bias += rate * sign(mean_load - load)``), resets the counters and returns
  the load it used. Call it between optimizer steps; with data parallelism, sum ``expert_load`` over
  the data-parallel ranks first and pass it as ``load``.
"""
import importlib

from mfcore.models.config import (DeepseekV3Config, LlamaConfig, config_from_dict, config_to_dict,
                                  load_model_config, shipped_model_names)
from mfcore.models.registry import build_model, resolve_compute_dtype

_LAZY = {
    "count_parameters": "mfcore.models.counting",
    "parameter_breakdown": "mfcore.models.counting",
    "flops_per_token": "mfcore.models.counting",
    "from_pretrained": "mfcore.models.hf",
    "save_pretrained": "mfcore.models.hf",
    "hf_state_dict": "mfcore.models.hf",
    "load_hf_state_dict": "mfcore.models.hf",
    "expert_load": "mfcore.models.layers.moe",
    "update_expert_bias": "mfcore.models.layers.moe",
}

__all__ = ["DeepseekV3Config", "LlamaConfig", "build_model", "config_from_dict", "config_to_dict",
           "load_model_config", "resolve_compute_dtype", "shipped_model_names", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mfcore.models' has no attribute {name!r}")
