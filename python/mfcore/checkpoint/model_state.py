"""A MindSpore model's parameters as checkpoint tensors, and back.

Checkpoint names are ``model/<parameter name>`` for every parameter of the model (trainable or
not: MoE expert biases are state too) and ``optimizer/<state name>`` for optimizer state, so one
checkpoint holds both without collisions and tools can select either by prefix. MindSpore is only
touched through the objects passed in (``get_parameters``, ``asnumpy``, ``set_data``).
"""
from typing import Dict, Mapping, Optional

import numpy as np

from mfcore.checkpoint.layout import ShardSpec
from mfcore.checkpoint.stateful import Block
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


class ModelState:
    """The model as a stateful component: every parameter as this rank's block of the global
    tensor. ``layouts`` maps a parameter name to its layout (``.spec``, ``.writes(coords)``; from
    :func:`mfcore.parallel.param_layout.param_layouts`), ``coords`` is this rank's place in the
    parallel grid; without them every parameter is whole and written by this process."""

    def __init__(self, model, layouts: Optional[Mapping[str, object]] = None,
                 coords: Optional[Mapping[str, int]] = None):
        self.model, self.layouts, self.coords = model, dict(layouts or {}), dict(coords or {})

    def state_dict(self) -> Dict[str, Block]:
        out = {}
        for p in self.model.get_parameters():
            lay = self.layouts.get(p.name)
            spec = lay.spec if lay is not None else ShardSpec.whole(p.shape)
            writes = lay.writes(self.coords) if lay is not None else not any(self.coords.values())
            out[p.name] = Block(p.asnumpy(), spec, writes)
        return out

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        assign_model_arrays(self.model, {MODEL_PREFIX + k: v for k, v in state.items()}, "checkpoint")


def with_prefix(prefix: str, arrays: Mapping[str, object]) -> Dict[str, object]:
    return {prefix + k: v for k, v in arrays.items()}


def strip_prefix(prefix: str, arrays: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
