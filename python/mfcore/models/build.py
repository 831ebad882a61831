"""``build_model``: a config (or anything :func:`load_model_config` takes) → its family's Cell, with the
compute dtype resolved and recompute applied (MindSpore is imported here, so the package face
imports this module on first use only)."""
import mindspore as ms

from mfcore.errors import ConfigError
from mfcore.models.config import load_model_config
from mfcore.models.dtypes import COMPUTE_DTYPES, compute_dtype_name, device_problem
from mfcore.models.registry import family_of

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


def set_loss_chunk_tokens(model, tokens):
    """Compute the LM head and the loss in chunks of ``tokens`` tokens in training (0: unchunked),
    see :mod:`mfcore.models.layers.head_loss`."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise ConfigError(f"loss chunk tokens must be an integer >= 0, got {tokens!r}")
    chunked = getattr(model, "chunked_loss", None)
    if chunked is None:
        raise ConfigError(f"a {type(model).__name__} has no chunked LM head loss")
    chunked.set_chunk_tokens(tokens)


def build_model(config, compute_dtype=ms.float32, recompute="none", loss_chunk_tokens=0):
    """The ``nn.Cell`` for ``config``: fp32 master weights, products in ``compute_dtype``, the LM head
    and loss in chunks of ``loss_chunk_tokens`` tokens in training (0: unchunked)."""
    config = load_model_config(config)
    dtype = resolve_compute_dtype(compute_dtype)
    if recompute not in RECOMPUTE_MODES:
        raise ConfigError(f"recompute must be one of {', '.join(RECOMPUTE_MODES)}, got {recompute!r}")
    model = family_of(config).model_class()(config, dtype)
    apply_recompute(model, recompute)
    set_loss_chunk_tokens(model, loss_chunk_tokens)
    return model
