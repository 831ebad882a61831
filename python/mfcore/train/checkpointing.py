"""What a training run saves in a checkpoint and how it resumes from one.

The checkpoint package knows layouts, not the loop; this module is the bridge. A checkpoint holds
``model/<param>`` and ``optimizer/<state>`` tensors and a trainer state with everything else the
loop needs to continue *exactly*: the step and consumed samples/tokens (the loader restarts at that
sample of the global order, whatever the DP size), the loss scaler and fault-policy state, the RNG
states, the lr schedule position, the resolved config, the model config and the dataset
fingerprint (both checked on resume).

Sharding (tensor-parallel slices, ZeRO-1 flat shards) is described by :mod:`mfcore.train.shard_layout`:
every rank writes its slices, replicated tensors come from data-parallel rank 0, and on resume each
rank reads its own block of the current layout, whatever the layout at save time.
"""
import os
import random
from dataclasses import asdict, fields
from typing import Dict, Optional

import numpy as np

from mfcore.checkpoint import CheckpointManager, LoadedCheckpoint
from mfcore.checkpoint.model_state import MODEL_PREFIX, OPTIMIZER_PREFIX, strip_prefix
from mfcore.errors import CheckpointError
from mfcore.train import shard_layout as SL


def checkpoint_dir(cfg) -> str:
    return cfg.checkpoint.dir or os.path.join(cfg.run.output_dir, "checkpoints")


class RunCheckpoints(CheckpointManager):
    """The run's checkpoint manager, which also remembers the parallel context it works for."""

    def __init__(self, cfg, ctx):
        super().__init__(checkpoint_dir(cfg), keep_last_n=cfg.checkpoint.keep_last_n,
                         async_save=cfg.checkpoint.async_save, rank=ctx.rank,
                         world_size=ctx.world_size, barrier=getattr(ctx, "barrier", None))
        self.ctx = ctx


def build_manager(cfg, ctx) -> RunCheckpoints:
    return RunCheckpoints(cfg, ctx)


# ----------------------------------------------------------------------------- what is saved
def collect_tensors(model, optimizer, ctx) -> Dict[str, object]:
    """This rank's share of model parameters and optimizer state, with shard specs where split."""
    specs = SL.tp_specs(model, ctx)
    first_dp = getattr(ctx, "dp_rank", 0) == 0
    out: Dict[str, object] = {}
    if first_dp:  # TP slices come from each TP rank of DP rank 0; replicas from rank 0 only
        for p in model.get_parameters():
            spec = specs.get(p.name)
            out[MODEL_PREFIX + p.name] = (p.asnumpy(), spec) if spec else p.asnumpy()
    for name, value in SL.optimizer_blocks(optimizer, specs, first_dp).items():
        out[OPTIMIZER_PREFIX + name] = value
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
    from mfcore.config import loader as C
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
    if getattr(model, "tp_shard_axes", None):
        raise CheckpointError("checkpoint.format safetensors+ckpt: the model is tensor-parallel; "
                              "export with `mf-ckpt export-ms` from the sharded checkpoint instead")
    out = os.path.join(root, "ms_ckpt", step_dir_name(step) + ".ckpt")
    return save_ms_ckpt({p.name: p.asnumpy() for p in params}, out)


def healthy(run) -> bool:
    """Whether the parameters are all finite (a state worth saving after an error)."""
    return all(np.all(np.isfinite(p.asnumpy())) for p in run.model.get_parameters())


# ----------------------------------------------------------------------------- resuming
def load_for_resume(cfg, mgr: CheckpointManager, model, optimizer, ctx,
                    expect: dict) -> Optional[LoadedCheckpoint]:
    """The checkpoint to resume from per ``checkpoint.resume`` (auto | none | path), or None;
    its tensors are this rank's blocks of the current parallel layout."""
    where = cfg.checkpoint.resume
    if where in (None, "", "none"):
        return None
    specs = SL.tp_specs(model, ctx)
    params = {MODEL_PREFIX + p.name: p for p in model.get_parameters()}

    def plan(name: str, saved_shape):
        if name in params:
            spec = specs.get(params[name].name)
            return (spec, tuple(params[name].shape)) if spec else None
        return SL.plan_optimizer_block(optimizer, specs, name[len(OPTIMIZER_PREFIX):], saved_shape)

    def wanted(name: str) -> bool:  # every parameter; the optimizer part may be absent (weights-only)
        return name in params or name.startswith(OPTIMIZER_PREFIX)
    loaded = mgr.load(where, names=wanted, shards=plan, expect=expect,
                      allow_mismatch=getattr(cfg.checkpoint, "allow_mismatch", False))
    if loaded is None and where != "auto":
        raise CheckpointError(f"{where}: no checkpoint to resume from")
    return loaded


def resume_counters(cfg, mgr: CheckpointManager, model, step_fn, state, data, model_cfg):
    """Load the checkpoint to resume from (or None) and set the step/sample counters in ``state``
    right away, so the data loader is built at the right sample; :func:`restore` does the rest."""
    expect = {"dataset_fingerprint": getattr(data, "fingerprint", None) or None,
              "model_config": model_config_dict(model_cfg)}
    loaded = load_for_resume(cfg, mgr, model, step_fn.optimizer, mgr.ctx, expect)
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
    optimizer = run.step_fn.optimizer
    specs = SL.tp_specs(run.model, run.ctx)
    optimizer.load_state_arrays(SL.optimizer_state_from(optimizer, specs, optimizer_state, loaded.path))
    run.scaler.load_state_dict(st["loss_scaler"])
    run.faults.load_state_dict(st["faults"])
    set_rng_state(st["rng"])
