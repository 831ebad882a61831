"""``--dry-run``'s checkpoint round trip: the save and reload path of a config's parallel layout,
proven in one process before a real run reaches its first save.

The ranks of the layout (TP, DP, expert parallelism, sequence parallelism, ZeRO-1 as configured;
DP capped at :data:`MAX_SIMULATED_DP`, or at two expert-DP replicas of each EP group, and an EP
group wider than two TP groups halved down to that, which exercises the same code as any DP and
EP) are simulated one after the
other on a tiny model of the config's family, made divisible by the TP size. Every rank's model and
optimizer are filled with known global tensors, saved through the trainer's checkpoint bridge as
that rank's shard of one checkpoint, then reloaded through the bridge in the same layout (each rank
must get its blocks back) and in one process without parallelism (every tensor resharded; it must
equal the global tensors).
"""
import math
import tempfile
from types import SimpleNamespace
from typing import Dict, List

import numpy as np

from mfcore.checkpoint import CheckpointManager
from mfcore.checkpoint.stateful import Block
from mfcore.errors import CheckpointError

MAX_SIMULATED_DP = 3
TINY_PARAMS = 20_000_000      # models up to this size are round-tripped as they are


def tiny_model_config(model_cfg, tp: int, ep: int = 1):
    """``model_cfg`` itself when small, else a one-layer model of its family whose split
    dimensions divide by ``tp`` (and routed experts by ``ep``)."""
    from mfcore.models import config_from_dict, config_to_dict, count_parameters
    if count_parameters(model_cfg) <= TINY_PARAMS:
        return model_cfg
    data = config_to_dict(model_cfg)
    data.update({"num_hidden_layers": 1, "vocab_size": 32 * tp})
    if data.get("model_type", "llama") == "llama":
        data.update({"hidden_size": 16 * tp, "num_attention_heads": 2 * tp, "num_key_value_heads": tp,
                     "intermediate_size": 16 * tp, "head_dim": 8})
    else:  # DeepSeek-V3: its shipped tiny variant's sizes
        from mfcore.models import load_model_config
        tiny = config_to_dict(load_model_config("tiny-deepseek-v3"))
        heads = tiny["num_attention_heads"] * tp // math.gcd(tiny["num_attention_heads"], tp)
        experts = tiny["n_routed_experts"] * ep // math.gcd(tiny["n_routed_experts"], ep)
        data = {**tiny, "vocab_size": data["vocab_size"], "num_attention_heads": heads,
                "num_key_value_heads": heads, "n_routed_experts": experts,
                "tie_word_embeddings": data.get("tie_word_embeddings", False)}
    return config_from_dict(data, strict=True, source=f"{getattr(model_cfg, 'model_type', 'model')} (tiny-scaled)")


def simulated_contexts(parallel, max_dp: int = MAX_SIMULATED_DP) -> List[object]:
    """A one-process stand-in context for every rank of ``parallel``'s layout (DP capped)."""
    from mfcore.parallel.context import ParallelContext, ParallelSection
    from mfcore.parallel.groups import RankGrid
    tp, ep = parallel.tensor, simulated_expert_size(parallel)
    if ep == 1:
        dp = min(parallel.data, max_dp)
    else:   # EP groups of a stage's tp x dp ranks, at most two expert-DP replicas of each
        replicas = min(tp * parallel.data // parallel.expert, 2)
        stage = ep * replicas * tp // math.gcd(ep * replicas, tp)
        dp = stage // tp
    section = ParallelSection(data=dp, tensor=tp, sequence_parallel=parallel.sequence_parallel,
                              optimizer_sharding=parallel.optimizer_sharding, expert=ep)
    grid = RankGrid(tp=tp, dp=dp, ep=ep)
    return [ParallelContext(config=section, rank=r, world_size=grid.world_size, grid=grid)
            for r in range(grid.world_size)]


def simulated_expert_size(parallel) -> int:
    """``parallel.expert``, halved while wider than two TP groups (the same code as any width)."""
    ep = parallel.expert
    while ep > 2 * parallel.tensor and ep % 2 == 0:
        ep //= 2
    return ep


def rank_components(cfg, tiny_cfg, ctx) -> Dict[str, object]:
    """The model and optimizer components of one rank, as the trainer builds them."""
    from mfcore.checkpoint.model_state import ModelState
    from mfcore.models import build_model
    from mfcore.parallel.param_layout import coords_of, param_layouts
    from mfcore.train.optim import build_optimizer
    model = ctx.parallelize_model(build_model(tiny_cfg))
    layouts = param_layouts(model, ctx)
    optimizer = build_optimizer(cfg.optimizer, list(model.trainable_params()), ctx, layouts)
    return {"model": ModelState(model, layouts, coords_of(ctx)), "optimizer": optimizer}


def global_value(name: str, shape) -> np.ndarray:
    """A distinct, reproducible global tensor per name (what every rank's block is cut from)."""
    seed = int.from_bytes(name.encode()[-8:].rjust(8, b"\0"), "little") % 2 ** 32
    arr = np.random.default_rng(seed).standard_normal(tuple(shape))
    return np.asarray(arr, np.float32) if np.ndim(arr) else np.int32(5)


def _cut(block: Block, name: str) -> np.ndarray:
    whole = global_value(name, block.spec.global_shape)
    box = tuple(slice(o, o + n) for o, n in zip(block.spec.offsets, block.data.shape))
    return np.array(whole[box], dtype=block.data.dtype)  # a copy; keeps 0-d scalars 0-d


def fill_from_globals(components) -> None:
    for comp, obj in components.items():
        obj.load_state_dict({k: _cut(b, f"{comp}/{k}") for k, b in obj.state_dict().items()})


def check_matches_globals(components, where: str) -> None:
    for comp, obj in components.items():
        for key, block in obj.state_dict().items():
            if not np.array_equal(block.data, _cut(block, f"{comp}/{key}")):
                raise CheckpointError(f"checkpoint round trip ({where}): {comp}/{key} differs after reload")


def save_simulated(cfg, tiny_cfg, contexts, root: str) -> None:
    """Every simulated rank saves its blocks of the known global tensors as one checkpoint."""
    from mfcore.train import checkpointing as CK
    # managers first, rank 0 first (it clears leftovers when created), as the trainer does;
    # rank 0 saves last: it commits once every shard is written
    managers = [CheckpointManager(root, rank=c.rank, world_size=c.world_size) for c in contexts]
    for ctx in reversed(contexts):
        comps = rank_components(cfg, tiny_cfg, ctx)
        fill_from_globals(comps)
        CK.save(managers[ctx.rank], 1, comps, {})


def reload_simulated(cfg, tiny_cfg, contexts, root: str) -> None:
    """Every simulated rank resumes from ``root`` and must hold its blocks of the global tensors."""
    from mfcore.train import checkpointing as CK
    resume = SimpleNamespace(checkpoint=SimpleNamespace(resume=root, allow_mismatch=False))
    for ctx in contexts:
        comps = rank_components(cfg, tiny_cfg, ctx)
        if CK.resume(resume, CheckpointManager(root, rank=ctx.rank), comps, {}) is None:
            raise CheckpointError(f"checkpoint round trip: {root} holds no checkpoint")
        check_matches_globals(comps, f"rank {ctx.rank} of {ctx.world_size}")


def checkpoint_round_trip(cfg, model_cfg) -> str:
    """Save the config's layout as simulated ranks and reload it; a line for the dry-run report."""
    from mfcore.parallel.context import ParallelContext
    tiny = tiny_model_config(model_cfg, cfg.parallel.tensor, simulated_expert_size(cfg.parallel))
    contexts = simulated_contexts(cfg.parallel)
    with tempfile.TemporaryDirectory(prefix="mfcore-dry-run-") as root:
        save_simulated(cfg, tiny, contexts, root)
        reload_simulated(cfg, tiny, contexts + [ParallelContext()], root)
    c = contexts[0]
    ep = f"EP={c.ep_size}, " if c.ep_size > 1 else ""
    return (f"checkpoint round trip: {len(contexts)} simulated ranks (TP={c.tp_size}, DP={c.dp_size}, {ep}"
            f"sequence_parallel={c.sequence_parallel}, ZeRO-1={c.optimizer_sharding}) saved, reloaded "
            f"in that layout and in one process: identical")
