"""What a training run saves in a checkpoint and how it resumes from one.

The checkpoint package knows layouts, not the loop; this module is the bridge. A checkpoint holds
``model/<param>`` and ``optimizer/<state>`` tensors and a trainer state with everything else the
loop needs to continue *exactly*: the step and consumed samples/tokens (the loader restarts at that
sample of the global order, whatever the DP size), the loss scaler and fault-policy state, the RNG
states, the lr schedule position, the resolved config, the model config and the dataset
fingerprint (both checked on resume).

Sharding: a parameter split by tensor parallelism carries ``param.shard_spec`` (a
:class:`~mfcore.checkpoint.ShardSpec`); a sharded (ZeRO) optimizer offers ``state_specs()``. Such
tensors are written by every rank that holds a slice and re-sliced on load to the current layout;
replicated ones are written by data-parallel rank 0 only.
"""
import os
import random
from dataclasses import asdict, fields
from typing import Dict, Optional

import numpy as np

from mfcore.checkpoint import CheckpointManager, LoadedCheckpoint, ShardSpec
from mfcore.checkpoint.model_state import MODEL_PREFIX, OPTIMIZER_PREFIX, strip_prefix
from mfcore.errors import CheckpointError


def checkpoint_dir(cfg) -> str:
    return cfg.checkpoint.dir or os.path.join(cfg.run.output_dir, "checkpoints")


def build_manager(cfg, ctx) -> CheckpointManager:
    return CheckpointManager(checkpoint_dir(cfg), keep_last_n=cfg.checkpoint.keep_last_n,
                             async_save=cfg.checkpoint.async_save, rank=ctx.rank,
                             world_size=ctx.world_size, barrier=getattr(ctx, "barrier", None))


# ----------------------------------------------------------------------------- what is saved
def _param_spec(p) -> Optional[ShardSpec]:
    return getattr(p, "shard_spec", None)


def collect_tensors(model, optimizer, ctx) -> Dict[str, object]:
    """This rank's share of model parameters and optimizer state, with shard specs where split."""
    out: Dict[str, object] = {}
    first_dp = getattr(ctx, "dp_rank", 0) == 0
    for p in model.get_parameters():
        spec = _param_spec(p)
        if first_dp:  # TP slices come from each TP rank of DP rank 0; replicas from rank 0 only
            out[MODEL_PREFIX + p.name] = (p.asnumpy(), spec) if spec else p.asnumpy()
    state = optimizer.state_arrays()
    specs = getattr(optimizer, "state_specs", lambda: {})()
    for name, arr in state.items():
        spec = specs.get(name)
        if spec is not None or first_dp:  # ZeRO shards: every DP rank writes its own
            out[OPTIMIZER_PREFIX + name] = (arr, spec) if spec is not None else arr
    return out


def rng_state() -> dict:
    import mindspore as ms
    np_state = np.random.get_state()
    return {"numpy": [np_state[0], np_state[1], int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": random.getstate(), "mindspore_seed": ms.get_seed()}


def set_rng_state(state: dict) -> None:
    import mindspore as ms
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if state.get("mindspore_seed") is not None:
        ms.set_seed(int(state["mindspore_seed"]))


def trainer_state(run) -> dict:
    """The JSON part of a checkpoint, from the loop's objects (duck-typed ``_Run``)."""
    from mfcore.train import config as C
    step = run.state.step
    return {**asdict(run.state),
            "lr_schedule": {"step": step, "next_lr": run.schedule.lr_at(step)},
            "loss_scaler": run.scaler.state_dict(), "faults": run.faults.state_dict(),
            "rng": rng_state(), "data": {"consumed_samples": run.state.consumed_samples},
            "dataset_fingerprint": run.data.fingerprint or None,
            "model_config": model_config_dict(getattr(run, "model_cfg", None)),
            "config": C.dump_config(run.cfg)}


def model_config_dict(model_cfg) -> Optional[dict]:
    if model_cfg is None:
        return None
    from mfcore.models import config_to_dict
    return config_to_dict(model_cfg)


def save(run, mgr: CheckpointManager):
    """Save the run at its current step; returns the manager's report (stall time, path).

    With ``checkpoint.format: safetensors+ckpt`` the model is also written as a MindSpore
    ``.ckpt`` (``<dir>/ms_ckpt/step_XXXXXXXX.ckpt``, by rank 0, whole parameters only)."""
    tensors = collect_tensors(run.model, run.step_fn.optimizer, run.ctx)
    report = mgr.save(run.state.step, tensors, trainer_state(run))
    if run.cfg.checkpoint.format == "safetensors+ckpt" and run.ctx.is_main:
        save_model_ms_ckpt(run.model, mgr.directory, run.state.step)
    return report


def save_model_ms_ckpt(model, root: str, step: int) -> str:
    from mfcore.checkpoint.layout import step_dir_name
    from mfcore.checkpoint.ms_ckpt import save_ms_ckpt
    params = list(model.get_parameters())
    if any(_param_spec(p) is not None for p in params):
        raise CheckpointError("checkpoint.format safetensors+ckpt: the model is tensor-parallel; "
                              "export with `mf-ckpt export-ms` from the sharded checkpoint instead")
    out = os.path.join(root, "ms_ckpt", step_dir_name(step) + ".ckpt")
    return save_ms_ckpt({p.name: p.asnumpy() for p in params}, out)


def healthy(run) -> bool:
    """Whether the parameters are all finite (a state worth saving after an error)."""
    return all(np.all(np.isfinite(p.asnumpy())) for p in run.model.get_parameters())


# ----------------------------------------------------------------------------- resuming
def _wanted(model, optimizer):
    """Names to load and, for sharded ones, this rank's block (spec + local shape)."""
    shards, shapes = {}, {}
    for p in model.get_parameters():
        spec = _param_spec(p)
        if spec is not None:
            shards[MODEL_PREFIX + p.name], shapes[MODEL_PREFIX + p.name] = spec, tuple(p.shape)
    state = optimizer.state_arrays()
    for name, spec in getattr(optimizer, "state_specs", lambda: {})().items():
        shards[OPTIMIZER_PREFIX + name], shapes[OPTIMIZER_PREFIX + name] = spec, state[name].shape
    names = [MODEL_PREFIX + p.name for p in model.get_parameters()]
    return names, [OPTIMIZER_PREFIX + n for n in state], shards, shapes


def load_for_resume(cfg, mgr: CheckpointManager, model, optimizer, expect: dict) -> Optional[LoadedCheckpoint]:
    """The checkpoint to resume from per ``checkpoint.resume`` (auto | none | path), or None."""
    where = cfg.checkpoint.resume
    if where in (None, "", "none"):
        return None
    model_names, opt_names, shards, shapes = _wanted(model, optimizer)

    def wanted(name: str) -> bool:  # the optimizer part may be absent (weights-only imports)
        return name in model_names or name in opt_names
    loaded = mgr.load(where, names=wanted, shards=shards, block_shapes=shapes, expect=expect,
                      allow_mismatch=getattr(cfg.checkpoint, "allow_mismatch", False))
    if loaded is None and where != "auto":
        raise CheckpointError(f"{where}: no checkpoint to resume from")
    return loaded


def resume_counters(cfg, mgr: CheckpointManager, model, step_fn, state, data, model_cfg):
    """Load the checkpoint to resume from (or None) and set the step/sample counters in ``state``
    right away, so the data loader is built at the right sample; :func:`restore` does the rest."""
    expect = {"dataset_fingerprint": getattr(data, "fingerprint", None) or None,
              "model_config": model_config_dict(model_cfg)}
    loaded = load_for_resume(cfg, mgr, model, step_fn.optimizer, expect)
    if loaded is not None and not loaded.trainer_state.get("weights_only"):
        for f in fields(state):
            if f.name in loaded.trainer_state:
                setattr(state, f.name, type(getattr(state, f.name))(loaded.trainer_state[f.name]))
    return loaded


def restore(run, loaded: LoadedCheckpoint) -> None:
    """Put a loaded checkpoint into the run: weights, then (unless weights-only) optimizer state,
    loss scaler, fault policy and RNG states (the counters were set by :func:`resume_counters`)."""
    from mfcore.checkpoint.model_state import assign_model_arrays
    assign_model_arrays(run.model, loaded.tensors, loaded.path)
    st = loaded.trainer_state
    if st.get("weights_only"):
        return
    optimizer_state = strip_prefix(OPTIMIZER_PREFIX, loaded.tensors)
    if not optimizer_state:
        raise CheckpointError(f"{loaded.path}: no optimizer state (only a weights-only checkpoint "
                              "may lack it)")
    run.step_fn.optimizer.load_state_arrays(optimizer_state)
    run.scaler.load_state_dict(st["loss_scaler"])
    run.faults.load_state_dict(st["faults"])
    set_rng_state(st["rng"])
