"""mfcore.models: Llama 2/3 and DeepSeek-V3 as MindSpore Cells with Hugging Face parameter names.

Entry points:

- ``load_model_config(name_or_path_or_dict)`` → :class:`LlamaConfig` / :class:`DeepseekV3Config`;
  ``apply_overrides(config, {field: value})`` (derived fields such as ``head_dim`` derived again)
- ``build_model(config, compute_dtype=ms.float32, recompute="none"|"full"|"selective",
  loss_chunk_tokens=0)`` → Cell (``set_loss_chunk_tokens(model, n)`` changes the last later);
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
  every rank that routed its own tokens first (``ParallelContext.routing_sum``) and pass it as ``load``. ``dropped_tokens(model)`` → numpy
  ``[moe_layers]`` (token, expert) pairs dropped over capacity since the last reset (None unless
  ``moe_dispatch: capacity``).
"""
from mfcore.models.config import (DeepseekV3Config, LlamaConfig, apply_overrides, config_from_dict,
                                  config_to_dict, load_model_config, shipped_model_names)
from mfcore.models.counting import count_parameters, flops_per_token, parameter_breakdown

# Entry points that need MindSpore are imported on first use: importing it takes seconds, and the
# configs, parameter counts and weight files (mf-ckpt) do not need it.
_WITH_MINDSPORE = {"build_model": "build", "resolve_compute_dtype": "build", "set_loss_chunk_tokens": "build",
                   "expert_load": "layers.moe", "update_expert_bias": "layers.moe",
                   "dropped_tokens": "layers.moe",
                   "from_pretrained": "hf", "save_pretrained": "hf", "hf_state_dict": "hf",
                   "load_hf_state_dict": "hf"}


def __getattr__(name):
    if name not in _WITH_MINDSPORE:
        raise AttributeError(f"module 'mfcore.models' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f"mfcore.models.{_WITH_MINDSPORE[name]}"), name)


__all__ = ["DeepseekV3Config", "LlamaConfig", "apply_overrides", "build_model", "config_from_dict", "config_to_dict",
           "count_parameters", "dropped_tokens", "expert_load", "flops_per_token", "from_pretrained",
           "hf_state_dict", "load_hf_state_dict", "load_model_config", "parameter_breakdown",
           "resolve_compute_dtype", "save_pretrained", "set_loss_chunk_tokens", "shipped_model_names",
           "update_expert_bias"]


def __dir__():
    return sorted(__all__)
