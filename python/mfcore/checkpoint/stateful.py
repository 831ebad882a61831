"""Stateful components and the one-pass save/load of a mapping of them (torchtitan's pattern).

A component (model, optimizer, schedule, loss scaler, data loader, ...) exposes ``state_dict()``
and ``load_state_dict(state)``. Its state dict is flat: each value is either a :class:`Block`
(this rank's block of a global tensor, already described in the global layout, and whether this
rank writes it) or a JSON-able value. The checkpoint stores a block under ``<component>/<key>``
and the JSON values in the trainer state under ``<component>`` (the ``trainer`` component's at the
top level). This module never needs to know which parallelism produced a block.

Loading is one pass: every component's current ``state_dict()`` says which blocks this rank wants
(the global layout of *this* run), the checkpoint is read into exactly those blocks whatever layout
wrote it, and each component gets them back through ``load_state_dict``.
"""
from math import prod
from typing import Dict, Mapping, NamedTuple, Tuple

import numpy as np

from mfcore.checkpoint.layout import ShardSpec
from mfcore.errors import CheckpointError

TOP_LEVEL = "trainer"   # this component's JSON state sits at the top of trainer_state.json


class Block(NamedTuple):
    """This rank's block of a global tensor; ``write``: whether this rank saves it (one replica)."""
    data: np.ndarray
    spec: ShardSpec
    write: bool = True


def current_states(statefuls: Mapping[str, object]) -> Dict[str, dict]:
    """Every component's ``state_dict()``, taken once."""
    return {comp: obj.state_dict() for comp, obj in statefuls.items()}


def split_states(states: Mapping[str, dict]) -> Tuple[Dict[str, Block], dict]:
    """``({"<component>/<key>": Block}, trainer-state JSON)`` of the components' state dicts."""
    blocks, json_state = {}, {}
    for comp, state in states.items():
        plain = {}
        for key, value in state.items():
            if isinstance(value, Block):
                blocks[f"{comp}/{key}"] = value
            else:
                plain[key] = value
        if comp == TOP_LEVEL:
            json_state.update(plain)
        elif plain:
            json_state[comp] = plain
    return blocks, json_state


def tensors_to_save(blocks: Mapping[str, Block]) -> Dict[str, tuple]:
    """What this rank writes: ``{name: (array, ShardSpec)}`` of the blocks it owns."""
    return {name: (b.data, b.spec) for name, b in blocks.items() if b.write}


def block_plan(wanted: Mapping[str, Block]):
    """The checkpoint planner: ``(name, saved global shape) -> (ShardSpec, block shape) | None``.
    A tensor saved under another shape of the same size (an older checkpoint's flat ZeRO moments)
    is read whole and cut by :func:`fit_block`."""
    def plan(name: str, saved_shape):
        b = wanted[name]
        if tuple(saved_shape) != b.spec.global_shape and prod(saved_shape) == prod(b.spec.global_shape):
            return None
        return b.spec, tuple(b.data.shape)
    return plan


def fit_block(arr: np.ndarray, b: Block) -> np.ndarray:
    """``arr`` as read for block ``b``: already the block, or the whole tensor to cut it from."""
    if arr.shape == b.data.shape:
        return arr
    whole = arr.reshape(b.spec.global_shape)
    box = tuple(slice(o, o + n) for o, n in zip(b.spec.offsets, b.data.shape))
    return np.array(whole[box])  # a contiguous copy (ascontiguousarray would make scalars 1-d)


def restore_states(statefuls: Mapping[str, object], states: Mapping[str, dict],
                   tensors: Mapping[str, np.ndarray], trainer_state: dict, where: str,
                   weights_only: bool = False) -> None:
    """Hand each component its part of a loaded checkpoint (``states``: the components' state
    dicts taken before loading, i.e. the wanted layout). A component the checkpoint lacks (part of)
    is left as built in a weights-only checkpoint, and is an error in any other."""
    for comp, obj in statefuls.items():
        current = states[comp]
        saved_json = trainer_state if comp == TOP_LEVEL else trainer_state.get(comp, {})
        state, missing = {}, []
        for key, value in current.items():
            name = f"{comp}/{key}"
            if isinstance(value, Block):
                if name in tensors:
                    state[key] = fit_block(tensors[name], value)
                else:
                    missing.append(name)
            elif key in saved_json:
                state[key] = saved_json[key]
            else:
                missing.append(f"{comp}.{key}" if comp != TOP_LEVEL else key)
        if missing and weights_only:  # e.g. imported Hugging Face weights: the rest starts fresh
            continue
        if missing:
            raise CheckpointError(f"{where}: no saved state for {', '.join(missing[:5])}"
                                  f"{' and more' if len(missing) > 5 else ''}")
        obj.load_state_dict(state)


__all__ = ["Block", "TOP_LEVEL", "block_plan", "current_states", "fit_block", "restore_states",
           "split_states", "tensors_to_save"]
