"""``build_model``: a config (or anything :func:`load_model_config` takes) → the family's Cell."""
import mindspore as ms

from mfcore.errors import ConfigError
from mfcore.models.config import DeepseekV3Config, LlamaConfig, load_model_config

RECOMPUTE_MODES = ("none", "full", "selective")
_COMPUTE_DTYPES = {"float32": ms.float32, "float16": ms.float16, "bfloat16": ms.bfloat16,
                   "fp32": ms.float32, "fp16": ms.float16, "bf16": ms.bfloat16}


def resolve_compute_dtype(dtype):
    """A MindSpore float dtype from a dtype or its name; bfloat16 is refused on CPU."""
    if isinstance(dtype, str):
        if dtype not in _COMPUTE_DTYPES:
            raise ConfigError(f"compute dtype {dtype!r} is not one of {', '.join(_COMPUTE_DTYPES)}")
        dtype = _COMPUTE_DTYPES[dtype]
    if dtype not in (ms.float32, ms.float16, ms.bfloat16):
        raise ConfigError(f"compute dtype {dtype} is not float32, float16 or bfloat16")
    if dtype == ms.bfloat16 and ms.get_context("device_target") == "CPU":
        raise ConfigError("compute dtype bfloat16 is not available on CPU: MindSpore 2.10's CPU "
                          "backend has no bfloat16 MatMul; use float32 or float16 there")
    return dtype


def apply_recompute(model, mode):
    """Recompute in the backward: ``full`` = every decoder layer, ``selective`` = the attention core
    and the MLP activations (the large, cheap-to-redo tensors)."""
    if mode not in RECOMPUTE_MODES:
        raise ConfigError(f"recompute must be one of {', '.join(RECOMPUTE_MODES)}, got {mode!r}")
    if mode == "none":
        return
    for layer in model.decoder_layers():
        if mode == "full":
            layer.recompute()
            continue
        for _, cell in layer.cells_and_names():
            if type(cell).__name__ in ("CoreAttention", "SwiGLU"):
                cell.recompute()


def build_model(config, compute_dtype=ms.float32, recompute="none"):
    """The ``nn.Cell`` for ``config``: fp32 master weights, products in ``compute_dtype``."""
    config = load_model_config(config)
    dtype = resolve_compute_dtype(compute_dtype)
    if recompute not in RECOMPUTE_MODES:
        raise ConfigError(f"recompute must be one of {', '.join(RECOMPUTE_MODES)}, got {recompute!r}")
    if isinstance(config, LlamaConfig):
        from mfcore.models.llama import LlamaForCausalLM
        model = LlamaForCausalLM(config, dtype)
    elif isinstance(config, DeepseekV3Config):
        from mfcore.models.deepseek_v3 import DeepseekV3ForCausalLM
        model = DeepseekV3ForCausalLM(config, dtype)
    else:
        raise ConfigError(f"no model family for config of type {type(config).__name__}")
    apply_recompute(model, recompute)
    return model
