"""A MindSpore model's parameters as checkpoint tensors, and back.

Checkpoint names are ``model/<parameter name>`` for every parameter of the model (trainable or
not: MoE expert biases are state too) and ``optimizer/<state name>`` for optimizer state, so one
checkpoint holds both without collisions and tools can select either by prefix. MindSpore is only
touched through the objects passed in (``get_parameters``, ``asnumpy``, ``set_data``).
"""
from typing import Dict, Mapping, Optional

import numpy as np

from mfcore.checkpoint.layout import ShardSpec
from mfcore.errors import CheckpointError

MODEL_PREFIX = "model/"
OPTIMIZER_PREFIX = "optimizer/"


def model_arrays(model, specs: Optional[Mapping[str, ShardSpec]] = None) -> Dict[str, object]:
    """``{"model/<name>": array}`` (or ``(array, ShardSpec)`` for parameters named in ``specs``)."""
    out = {}
    for p in model.get_parameters():
        arr = p.asnumpy()
        spec = (specs or {}).get(p.name)
        out[MODEL_PREFIX + p.name] = (arr, spec) if spec is not None else arr
    return out


def assign_model_arrays(model, tensors: Mapping[str, np.ndarray], where: str) -> None:
    """Set every parameter of ``model`` from ``tensors`` (keys ``model/<name>``), checking shapes."""
    import mindspore as ms
    params = list(model.get_parameters())
    missing = [p.name for p in params if MODEL_PREFIX + p.name not in tensors]
    if missing:
        raise CheckpointError(f"{where}: no tensor for model parameter(s) {missing[:5]}"
                              f"{' and more' if len(missing) > 5 else ''}")
    for p in params:
        arr = tensors[MODEL_PREFIX + p.name]
        if tuple(arr.shape) != tuple(p.shape):
            raise CheckpointError(f"{where}: parameter {p.name!r} has shape {tuple(arr.shape)} in the "
                                  f"checkpoint, the model has {tuple(p.shape)}")
        p.set_data(ms.Tensor(np.ascontiguousarray(arr), dtype=p.dtype))


def strip_prefix(prefix: str, arrays: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
