"""A small fp32 training run driven through mfcore's compiled step, for the equivalence tests.

usage: train_equivalence.py OUT_DIR '{"data": 2, "tensor": 1, ...}' [STEPS [MODEL [MICRO_BATCH]]]

MODEL is ``llama`` (default) or ``deepseek_v3`` (tiny-deepseek-v3 made smaller: MLA, a dense layer,
MoE layers with replicated routed experts and a shared expert, one MTP module; the routing bias is
updated after every step from the DP-summed expert load, as the trainer does).
Every rank builds the same tiny model from one seed, parallelizes it with ``init_parallel``'s
context, and trains on the same synthetic global batches (each DP rank takes its slice of every
batch, in the order the single process would). Rank r writes OUT_DIR/rank<r>.json (per-step global
mean loss and gradient norm, its parallel coordinates and shard axes) and OUT_DIR/rank<r>.npz (its
parameters after the run: shards under TP).
"""
import json
import os
import sys

import mindspore as ms
import numpy as np
from mindspore import nn

from mfcore.models import apply_overrides, build_model, dropped_tokens, expert_load, update_expert_bias
from mfcore.parallel import init_parallel
from mfcore.parallel.param_layout import ep_split_names, param_layouts, tp_split_axes
from mfcore.train.optim import build_optimizer
from mfcore.config.schema import OptimizerSection

OPTIMIZER = OptimizerSection(beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)
from mfcore.train.step import TrainStep, apply_update, forward_backward, loss_tokens

MODEL = {"model_type": "llama", "vocab_size": 128, "hidden_size": 64, "intermediate_size": 128,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "max_position_embeddings": 64, "attention_bias": True, "mlp_bias": True, "qk_norm": True}
DEEPSEEK = apply_overrides("tiny-deepseek-v3", {
    "vocab_size": 128, "hidden_size": 64, "intermediate_size": 96, "moe_intermediate_size": 32,
    "num_hidden_layers": 2, "kv_lora_rank": 16, "q_lora_rank": 32, "qk_rope_head_dim": 8,
    "qk_nope_head_dim": 16, "v_head_dim": 16, "attention_bias": True, "aux_loss_alpha": 0.01})
# capacity mode: each expert takes at most ceil(CAPACITY_FACTOR * T * k / E) pairs of a micro batch
CAPACITY_FACTOR = 1.0
DEEPSEEK_CAPACITY = apply_overrides(DEEPSEEK, {"moe_dispatch": "capacity", "capacity_factor": CAPACITY_FACTOR})
MODELS = {"llama": MODEL, "deepseek_v3": DEEPSEEK, "deepseek_v3_capacity": DEEPSEEK_CAPACITY}
VOCAB = 128  # both models
SEQ, GLOBAL_BATCH, MICRO_BATCH, LR = 16, 8, 4, 3e-3
KEYS = ("tokens", "labels", "loss_mask")


def global_batch(step):
    """The step's samples in global order (identical on every rank and in the single process)."""
    rng = np.random.default_rng(1000 + step)
    # A learnable pattern (next token = token + 1 mod vocab, with noise) so the loss moves.
    start = rng.integers(0, VOCAB, (GLOBAL_BATCH, 1))
    seq = (start + np.arange(SEQ + 1)) % VOCAB
    noise = rng.random(seq.shape) < 0.2
    seq = np.where(noise, rng.integers(0, VOCAB, seq.shape), seq).astype(np.int32)
    mask = (rng.random((GLOBAL_BATCH, SEQ)) > 0.1).astype(np.float32)
    return {"tokens": seq[:, :-1], "labels": seq[:, 1:], "loss_mask": mask}


def my_micro_batches(step, ctx):
    batch = global_batch(step)
    per_rank = GLOBAL_BATCH // ctx.dp_size
    mine = {k: v[ctx.dp_rank * per_rank:(ctx.dp_rank + 1) * per_rank] for k, v in batch.items()}
    return [{k: np.ascontiguousarray(v[i:i + MICRO_BATCH]) for k, v in mine.items()}
            for i in range(0, per_rank, MICRO_BATCH)]


class GradNorm(nn.Cell):
    """The parallel-aware norm of the step's (already reduced) gradient buffers."""

    def __init__(self, grads, norm_fn):
        super().__init__(auto_prefix=False)
        self.grads, self.norm_fn = grads, norm_fn

    def construct(self):
        return self.norm_fn(self.grads)


def build(ctx, model_name="llama"):
    ms.set_seed(1234)
    model = ctx.parallelize_model(build_model(MODELS[model_name]))
    params = list(model.trainable_params())
    optimizer = build_optimizer(OPTIMIZER, params, ctx, param_layouts(model, ctx))
    step = TrainStep(model, optimizer, grad_reducer=ctx.gradient_reducer(params, model))
    return model, params, optimizer, step


def train(ctx, steps, model_name="llama"):
    model, params, optimizer, step = build(ctx, model_name)
    norm_fn = GradNorm(step.grads, ctx.grad_norm(params, model))
    losses, norms, dropped = [], [], []
    for i in range(steps):
        mbs = my_micro_batches(i, ctx)
        tokens = int(ctx.dp_sum(np.int64(loss_tokens(mbs))))
        out = forward_backward(step, mbs, KEYS, tokens, 1.0)
        # The step's own norm is TP-unaware; the parallel one counts shards over the TP group.
        norms.append(float(norm_fn().asnumpy()))
        losses.append(float(ctx.dp_sum(np.float32(out.loss_sum))) / tokens)
        apply_update(step, LR, norms[-1], 1.0, 1.0)
        if model_name.startswith("deepseek_v3"):
            drops = dropped_tokens(model)   # capacity mode: per MoE layer, read before the reset
            if drops is not None:
                dropped.append([int(v) for v in ctx.dp_sum(drops)])
            update_expert_bias(model, load=ctx.dp_sum(expert_load(model)))
    return model, optimizer, losses, norms, dropped


def main(out_dir, parallel, steps, model_name="llama"):
    ms.set_context(mode=ms.GRAPH_MODE)
    run(out_dir, init_parallel(parallel), steps, model_name)


def run(out_dir, ctx, steps, model_name="llama"):
    """Train under ``ctx`` and write this rank's results (also called by tp_checks.py)."""
    model, optimizer, losses, norms, dropped = train(ctx, steps, model_name)
    os.makedirs(out_dir, exist_ok=True)
    state_bytes = optimizer.state_nbytes() if hasattr(optimizer, "state_nbytes") else \
        sum(int(np.prod(p.shape)) * 4 for p in list(optimizer.exp_avg) + list(optimizer.exp_avg_sq))
    info = {"rank": ctx.rank, "dp_rank": ctx.dp_rank, "tp_rank": ctx.tp_rank, "dp": ctx.dp_size,
            "tp": ctx.tp_size, "losses": losses, "grad_norms": norms, "optimizer_state_bytes": state_bytes,
            "shard_axes": tp_split_axes(model), "expert_bias": _expert_biases(model),
            "ep": ctx.ep_size, "ep_rank": ctx.ep_rank, "expert_rows": list(ep_split_names(model)),
            "dropped": dropped}
    with open(os.path.join(out_dir, f"rank{ctx.rank}.json"), "w") as f:
        json.dump(info, f, indent=1)
    np.savez(os.path.join(out_dir, f"rank{ctx.rank}.npz"), **{p.name: p.asnumpy() for p in model.trainable_params()})
    if ctx.is_main:
        print("losses", " ".join(f"{x:.6f}" for x in losses), flush=True)


def _expert_biases(model):
    """The routing biases (non-trainable, moved by update_expert_bias), by parameter name."""
    return {p.name: p.asnumpy().tolist() for p in model.get_parameters() if p.name.endswith("e_score_correction_bias")}


if __name__ == "__main__":
    if len(sys.argv) > 5:   # the sequence aux loss is a mean per micro batch: runs compared need one size
        MICRO_BATCH = int(sys.argv[5])
    main(sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 20,
         sys.argv[4] if len(sys.argv) > 4 else "llama")
