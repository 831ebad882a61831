"""How this rank's parameters and optimizer state sit in the global tensors a checkpoint stores.

- Tensor parallelism: the parallel code records ``model.tp_shard_axes`` (parameter name → axis);
  rank ``tp_rank`` holds slice ``tp_rank`` of ``tp_size`` along it. Parameters and their AdamW
  moments are saved as those slices of the global shape.
- ZeRO-1 (an optimizer with ``dp``/``rank``/``numels``/``shard``): each DP rank holds a flat slice
  ``[rank * shard, rank * shard + shard)`` of every moment, zero-padded past the end. Moments are
  saved unpadded as slices of the flat ``(numel,)`` global.
- Replicated tensors are written by data-parallel rank 0 only.

On load each rank asks for its own block; when the checkpoint holds a moment in the other form
(flat vs shaped, i.e. saved with ZeRO and resumed without it or the reverse) the whole tensor is
read and cut here. Names: ``<param>.exp_avg`` / ``<param>.exp_avg_sq`` and ``adam_step``.
"""
from typing import Dict, Optional, Tuple

import numpy as np

from mfcore.checkpoint import ShardSpec
from mfcore.errors import CheckpointError

MOMENTS = ("exp_avg", "exp_avg_sq")
STEP_KEY = "adam_step"


def tp_specs(model, ctx) -> Dict[str, ShardSpec]:
    """Parameter name → its TP slice of the global tensor (only split parameters)."""
    axes = getattr(model, "tp_shard_axes", None) or {}
    tp, r = getattr(ctx, "tp_size", 1), getattr(ctx, "tp_rank", 0)
    specs = {}
    for p in model.get_parameters():
        if p.name in axes:
            axis, shape = axes[p.name], list(p.shape)
            offsets = [0] * len(shape)
            offsets[axis] = r * shape[axis]
            shape[axis] *= tp
            specs[p.name] = ShardSpec(tuple(shape), tuple(offsets))
    return specs


def zero_layout(optimizer) -> Optional[Tuple[int, int, Dict[str, Tuple[int, int]]]]:
    """``(dp, dp_rank, {param: (numel, shard)})`` for a ZeRO-1 optimizer, None for a dense one."""
    if not hasattr(optimizer, "shard") or not hasattr(optimizer, "numels"):
        return None
    sizes = {p.name: (int(n), int(s)) for p, n, s in zip(optimizer.params, optimizer.numels, optimizer.shard)}
    return int(optimizer.dp), int(optimizer.rank), sizes


def _zero_slice(dp_rank: int, numel: int, shard: int) -> Tuple[int, int]:
    start = min(dp_rank * shard, numel)
    return start, max(0, min(shard, numel - start))


def _zero_key(name: str, kind: str, dp: int, rank: int) -> str:
    return f"{name}.{kind}.shard{rank}of{dp}"


def optimizer_blocks(optimizer, specs: Dict[str, ShardSpec], first_dp: bool) -> Dict[str, object]:
    """This rank's optimizer tensors to save: name → array or (block, ShardSpec)."""
    state = optimizer.state_arrays()
    out: Dict[str, object] = {STEP_KEY: state[STEP_KEY]} if first_dp else {}
    zero = zero_layout(optimizer)
    for p in optimizer.params:
        for kind in MOMENTS:
            if zero is None:
                if first_dp:
                    arr, spec = state[f"{p.name}.{kind}"], specs.get(p.name)
                    out[f"{p.name}.{kind}"] = (arr, spec) if spec else arr
                continue
            if specs:
                raise CheckpointError("checkpoints of ZeRO-1 together with tensor parallelism are "
                                      "not supported yet")
            dp, rank, sizes = zero
            numel, shard = sizes[p.name]
            start, length = _zero_slice(rank, numel, shard)
            if length:
                block = state[_zero_key(p.name, kind, dp, rank)][:length]
                out[f"{p.name}.{kind}"] = (block, ShardSpec((numel,), (start,)))
    return out


def plan_optimizer_block(optimizer, specs: Dict[str, ShardSpec], name: str, saved_shape):
    """The block of optimizer tensor ``name`` this rank reads (None: read it whole, see above)."""
    pname, _, kind = name.rpartition(".")
    if kind not in MOMENTS:
        return None
    zero = zero_layout(optimizer)
    if zero is not None:
        dp, rank, sizes = zero
        numel, shard = sizes[pname]
        if tuple(saved_shape) != (numel,):
            return None
        start, length = _zero_slice(rank, numel, shard)
        return ShardSpec((numel,), (start,)), (length,)
    spec = specs.get(pname)
    if spec is None or tuple(saved_shape) != spec.global_shape:
        return None
    return spec, _local_shape(optimizer, pname)


def _local_shape(optimizer, pname: str) -> Tuple[int, ...]:
    return tuple(next(p.shape for p in optimizer.params if p.name == pname))


def _cut(arr: np.ndarray, spec: Optional[ShardSpec], local_shape) -> np.ndarray:
    if spec is None:
        return arr
    box = tuple(slice(o, o + n) for o, n in zip(spec.offsets, local_shape))
    return arr[box]


def optimizer_state_from(optimizer, specs: Dict[str, ShardSpec], loaded: Dict[str, np.ndarray],
                         where: str) -> dict:
    """Turn loaded optimizer tensors into what ``optimizer.load_state_arrays`` takes."""
    zero = zero_layout(optimizer)
    state = {STEP_KEY: loaded[STEP_KEY]} if STEP_KEY in loaded else {}
    if not state:
        raise CheckpointError(f"{where}: no optimizer step counter ({STEP_KEY})")
    for p in optimizer.params:
        spec = specs.get(p.name)
        global_shape = spec.global_shape if spec else tuple(p.shape)
        for kind in MOMENTS:
            key = f"{p.name}.{kind}"
            if key not in loaded:
                raise CheckpointError(f"{where}: no optimizer state {key!r}")
            arr = loaded[key]
            if zero is None:
                if arr.shape != tuple(p.shape):  # saved flat by ZeRO, or read whole
                    arr = _cut(arr.reshape(global_shape), spec, p.shape)
                state[key] = np.ascontiguousarray(arr)
                continue
            dp, rank, sizes = zero
            numel, shard = sizes[p.name]
            start, length = _zero_slice(rank, numel, shard)
            if arr.shape != (length,):  # saved shaped (without ZeRO) and read whole
                arr = arr.reshape(-1)[start:start + length]
            padded = np.zeros(shard, np.float32)
            padded[:length] = arr
            state[_zero_key(p.name, kind, dp, rank)] = padded
    return state
