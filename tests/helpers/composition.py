"""The composition matrix of issue 18: which parallel layouts are trained against one process.

``ROWS`` is the table (tests/dist/test_composition_dist.py runs it, tests/parallel/
test_composition_refusals.py checks that every other layout the schema accepts is refused, and
docs/parallelism.md shows it). Adding a layout is one line here: the ``parallel:`` keys it sets.
Every row is trained for every model in ``MODELS``; the rows of one world size share one msrun job.
``RESUMED`` names the rows whose checkpoint is also resumed in one process.
"""
from pathlib import Path
from typing import Dict, List

import yaml

ROWS: List[Dict] = [
    {"data": 2},
    {"data": 2, "optimizer_sharding": True},
    {"tensor": 2},
    {"tensor": 2, "sequence_parallel": True},
    {"pipeline": 2},
    {"tensor": 2, "data": 2},
    {"tensor": 2, "data": 2, "optimizer_sharding": True},
    {"tensor": 2, "data": 2, "sequence_parallel": True},
    {"tensor": 2, "data": 2, "sequence_parallel": True, "optimizer_sharding": True},
    {"pipeline": 2, "data": 2},
    {"pipeline": 2, "data": 2, "optimizer_sharding": True},
    {"tensor": 2, "pipeline": 2},
    {"tensor": 2, "pipeline": 2, "sequence_parallel": True},
    {"expert": 2, "data": 2},
    {"expert": 2, "data": 2, "optimizer_sharding": True},
    {"pipeline": 2, "expert": 2, "data": 2},
    {"pipeline": 2, "expert": 2, "data": 2, "optimizer_sharding": True},
    {"tensor": 2, "expert": 2, "sequence_parallel": True},
    {"tensor": 2, "expert": 2, "data": 2, "sequence_parallel": True},
    {"tensor": 2, "expert": 2, "data": 2, "sequence_parallel": True, "optimizer_sharding": True},
    {"tensor": 2, "pipeline": 2, "expert": 2, "sequence_parallel": True},
    {"tensor": 2, "expert": 4, "data": 2, "sequence_parallel": True},
]

# The rows whose step-2 checkpoint is also resumed in one process (every row's step-2 checkpoint is
# compared tensor by tensor with the one-process run's, which costs no compile): the 4-rank rows that
# cut the state every way the matrix does -- TP shards with ZeRO-1 moments over DP, pipeline stages
# with ZeRO-1 inside a stage, TP inside stages, routed experts over EP inside stages, over TP x DP
# ranks and over 4 ranks. A 2-rank row's checkpoint cuts its state in one of these ways (fewer of
# them at once); a resume costs a one-process graph compile (~6 s for Llama, ~15 s for DeepSeek).
RESUMED = [
    {"tensor": 2, "data": 2, "sequence_parallel": True, "optimizer_sharding": True},
    {"pipeline": 2, "data": 2, "optimizer_sharding": True},
    {"tensor": 2, "pipeline": 2, "sequence_parallel": True},
    {"pipeline": 2, "expert": 2, "data": 2, "optimizer_sharding": True},
    {"tensor": 2, "pipeline": 2, "expert": 2, "sequence_parallel": True},
    {"tensor": 2, "expert": 4, "data": 2, "sequence_parallel": True},
]

# Both small enough to compile quickly on CPU; two decoder layers each so PP=2 has a layer per
# stage. The DeepSeek-V3 one keeps MLA with a q LoRA, a dense and a MoE layer (routed experts, a
# shared expert, the sequence aux loss, the routing-bias update) and an MTP module.
MODELS = {
    "llama3": ("tiny-llama3", {"vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
                               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}),
    "deepseek_v3": ("tiny-deepseek-v3", {"vocab_size": 256, "num_hidden_layers": 2, "hidden_size": 64,
                                         "intermediate_size": 128, "moe_intermediate_size": 32,
                                         "aux_loss_alpha": 0.01}),
}
# models with routed experts: the only ones expert-parallel rows apply to (validation refuses
# parallel.expert > 1 for the others, naming the key)
MOE_MODELS = ("deepseek_v3",)
STEPS, RESUME_STEP = 4, 2
# ``parallel:`` keys in the order a layout's name lists them, with their short names.
_SIZES = (("tensor", "TP"), ("pipeline", "PP"), ("expert", "EP"), ("expert_tensor", "ETP"), ("data", "DP"))
_FLAGS = (("sequence_parallel", "SP"), ("optimizer_sharding", "ZeRO"))


def rows_for(model: str) -> List[Dict]:
    """The rows ``model`` trains: every row, except expert-parallel ones for a model without experts."""
    return [row for row in ROWS if row.get("expert", 1) == 1 or model in MOE_MODELS]


def row_name(parallel: Dict) -> str:
    """``TP2xDP2+SP+ZeRO``: the sizes above 1, then the flags that are on."""
    sizes = [f"{short}{parallel[key]}" for key, short in _SIZES if parallel.get(key, 1) > 1]
    flags = [short for key, short in _FLAGS if parallel.get(key)]
    return "+".join(["x".join(sizes) or "1"] + flags)


def ranks(parallel: Dict) -> int:
    return parallel.get("data", 1) * parallel.get("tensor", 1) * parallel.get("pipeline", 1)


def overrides(parallel: Dict) -> List[str]:
    """The row as mf-train overrides (every key given, so nothing comes from the base config)."""
    full = {"data": 1, "tensor": 1, "pipeline": 1, "expert": 1, "expert_tensor": 1, "sequence_parallel": False,
            "optimizer_sharding": False, **parallel}
    return [f"parallel.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in full.items()]


def write_run_config(path: Path, model: str, corpus_prefix: str, cache_dir: str) -> Path:
    """One model's fp32 run: 4 steps of 16 sequences of 32 tokens in micro batches of 4 (so DP=2
    and PP=2 x DP=2 still accumulate 2 micro batches), a checkpoint every 2 steps, gradients clipped to norm 1."""
    name, model_overrides = MODELS[model]
    run = {"run": {"name": f"matrix-{model}", "seed": 7, "deterministic": True},
           "model": {"name": name, "overrides": model_overrides},
           "data": {"prefixes": [corpus_prefix], "seq_length": 32, "eod_id": 0, "cache_dir": cache_dir, "num_workers": 1},
           "training": {"global_batch_size": 16, "micro_batch_size": 4, "train_steps": STEPS,
                        "eval_interval": 0},
           "optimizer": {"lr": 3e-3, "clip_grad": 1.0}, "schedule": {"warmup_steps": 1},
           "precision": {"compute_dtype": "float32"},
           "checkpoint": {"save_interval": RESUME_STEP, "keep_last_n": STEPS, "resume": "none"},
           "logging": {"log_interval": 1, "tensorboard": False, "progress_bar": "never"}}
    path.write_text(yaml.safe_dump(run))
    return path
