"""``build_model``: a config (or anything :func:`load_model_config` takes) → the family's Cell."""
import mindspore as ms

from mfcore.errors import ConfigError
from mfcore.models.config import DeepseekV3Config, LlamaConfig, load_model_config
from mfcore.models.dtypes import COMPUTE_DTYPES, compute_dtype_name, device_problem

RECOMPUTE_MODES = ("none", "full", "selective")


def resolve_compute_dtype(dtype):
    """A MindSpore float dtype from a dtype or its name; bfloat16 is refused on CPU."""
    by_dtype = {getattr(ms, name): name for name in COMPUTE_DTYPES}
    if isinstance(dtype, str):
        name = compute_dtype_name(dtype)
    elif dtype in by_dtype:
        name = by_dtype[dtype]
    else:
        raise ConfigError(f"compute dtype {dtype} is not one of {', '.join(COMPUTE_DTYPES)}")
    problem = device_problem(name, ms.get_context("device_target"))
    if problem:
        raise ConfigError(f"compute dtype {problem}")
    return getattr(ms, name)


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
