"""What a training run saves in a checkpoint and how it resumes from one: the bridge between the
run's stateful components and :mod:`mfcore.checkpoint`.

The run hands over a mapping ``{name: stateful}`` (:func:`run_components`): the model, the
optimizer (dense or ZeRO-1), the lr schedule, the loss scaler, the fault policy, the data loader
(consumed samples), the RNGs and the loop counters (``trainer``). Each exposes ``state_dict()`` /
``load_state_dict()``; the model and the optimizer describe their tensors as blocks of the global
tensors (:class:`~mfcore.checkpoint.stateful.Block`), whatever parallelism produced them, so this
module knows no layout. Resume is one pass: the components are built first, the checkpoint is read
into the blocks their current state dicts ask for (so any saved layout reshards to this run's),
and each component loads its part. The run's metadata (model config, dataset fingerprint, resolved
config) is saved beside them and checked on resume.
"""
import os
import random
from typing import Dict, Mapping, Optional

import numpy as np

from mfcore.checkpoint import CheckpointManager, LoadedCheckpoint
from mfcore.checkpoint import stateful as ST
from mfcore.checkpoint.model_state import ModelState
from mfcore.errors import CheckpointError


def checkpoint_dir(cfg) -> str:
    return cfg.checkpoint.dir or os.path.join(cfg.run.output_dir, "checkpoints")


def build_manager(cfg, ctx) -> CheckpointManager:
    """The run's checkpoint manager: this rank's shard file, rank 0 commits, the job's barrier."""
    return CheckpointManager(checkpoint_dir(cfg), keep_last_n=cfg.checkpoint.keep_last_n,
                             async_save=cfg.checkpoint.async_save, rank=ctx.rank,
                             world_size=ctx.world_size, barrier=getattr(ctx, "barrier", None))


# ----------------------------------------------------------------------------- components
class RNGState:
    """Python's, numpy's and MindSpore's random generators as a stateful component."""

    def state_dict(self) -> dict:
        import mindspore as ms
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {"numpy": [kind, keys, int(pos), int(has_gauss), float(gauss)],
                "python": random.getstate(), "mindspore_seed": ms.get_seed()}

    def load_state_dict(self, state: dict) -> None:
        import mindspore as ms
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
        if state.get("mindspore_seed") is not None:
            ms.set_seed(int(state["mindspore_seed"]))


def claim_checkpoint_dir(cfg, ctx) -> Optional[str]:
    """A fresh run (``resume: none``) refuses a checkpoint dir holding another run's checkpoints,
    or with ``checkpoint.overwrite`` moves them aside (rank 0); returns where they went."""
    from mfcore.checkpoint.ownership import claim_for_new_run
    if cfg.checkpoint.resume not in (None, "", "none"):
        return None
    return claim_for_new_run(checkpoint_dir(cfg), cfg.checkpoint.overwrite, move=ctx.is_main)


def run_components(model, optimizer, layouts, coords, schedule, scaler, faults, loader,
                   counters) -> Dict[str, object]:
    """The run's stateful components under their checkpoint names (``model/<param>`` and
    ``optimizer/<param>.exp_avg|exp_avg_sq``, ``optimizer/adam_step`` for tensors)."""
    return {"trainer": counters, "model": ModelState(model, layouts, coords), "optimizer": optimizer,
            "lr_schedule": schedule, "loss_scaler": scaler, "faults": faults, "data": loader,
            "rng": RNGState()}


def run_metadata(cfg, data, model_cfg) -> dict:
    """Saved with every checkpoint; ``model_config`` and ``dataset_fingerprint`` checked on resume."""
    from mfcore.config import loader as C
    return {**expected_on_resume(data, model_cfg), "config": C.dump_config(cfg)}


def expected_on_resume(data, model_cfg) -> dict:
    return {"dataset_fingerprint": getattr(data, "fingerprint", None) or None,
            "model_config": model_config_dict(model_cfg)}


def model_config_dict(model_cfg) -> Optional[dict]:
    if model_cfg is None:
        return None
    from mfcore.models import config_to_dict
    return config_to_dict(model_cfg)


# ----------------------------------------------------------------------------- saving
def save(mgr: CheckpointManager, step: int, components: Mapping[str, object], metadata: dict):
    """Save every component at ``step``; returns the manager's report (stall time, path)."""
    blocks, json_state = ST.split_states(ST.current_states(components))
    return mgr.save(step, ST.tensors_to_save(blocks), {**metadata, **json_state})


def save_model_ms_ckpt(model, root: str, step: int) -> str:
    """``checkpoint.format: safetensors+ckpt``: the model as a MindSpore ``.ckpt`` beside the
    checkpoint (by rank 0, whole parameters only)."""
    from mfcore.checkpoint.layout import step_dir_name
    from mfcore.checkpoint.ms_ckpt import save_ms_ckpt
    params = list(model.get_parameters())
    out = os.path.join(root, "ms_ckpt", step_dir_name(step) + ".ckpt")
    return save_ms_ckpt({p.name: p.asnumpy() for p in params}, out)


def check_ms_ckpt_possible(components: Mapping[str, object]) -> None:
    """A MindSpore .ckpt holds whole parameters: refuse a model split over ranks up front."""
    for name, block in components["model"].state_dict().items():
        if block.spec.global_shape != tuple(block.data.shape):
            raise CheckpointError("checkpoint.format safetensors+ckpt: the model is split over ranks "
                                  f"({name!r}); export with `mf-ckpt export-ms` from the sharded "
                                  "checkpoint instead")


def healthy(model) -> bool:
    """Whether the parameters are all finite (a state worth saving after an error)."""
    return all(np.all(np.isfinite(p.asnumpy())) for p in model.get_parameters())


# ----------------------------------------------------------------------------- resuming
def resume(cfg, mgr: CheckpointManager, components: Mapping[str, object],
           expect: dict) -> Optional[LoadedCheckpoint]:
    """Load the checkpoint to resume from per ``checkpoint.resume`` (auto | none | path) into the
    components, in one pass; returns it, or None when there is nothing to resume from."""
    where = cfg.checkpoint.resume
    if where in (None, "", "none"):
        return None
    states = ST.current_states(components)
    wanted, _ = ST.split_states(states)
    loaded = mgr.load(where, names=lambda n: n in wanted, shards=ST.block_plan(wanted), expect=expect,
                      allow_mismatch=getattr(cfg.checkpoint, "allow_mismatch", False))
    if loaded is None:
        if where != "auto":
            raise CheckpointError(f"{where}: no checkpoint to resume from")
        return None
    try:
        ST.restore_states(components, states, loaded.tensors, loaded.trainer_state, loaded.path,
                          weights_only=bool(loaded.trainer_state.get("weights_only")))
    except CheckpointError as e:
        msg = str(e)
        raise CheckpointError(msg if msg.startswith(loaded.path) else f"{loaded.path}: {msg}") from None
    return loaded
