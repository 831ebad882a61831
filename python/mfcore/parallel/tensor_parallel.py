"""Tensor parallelism applied to a model from outside it (Megatron style)."""
from mfcore.errors import ConfigError


def parallelize_model(model, ctx):
    """Return ``model`` with its projections split over ``ctx``'s TP group (no-op when TP is 1)."""
    if ctx.tp_size == 1:
        return model
    raise ConfigError("parallel.tensor > 1 is not available yet in this build")
