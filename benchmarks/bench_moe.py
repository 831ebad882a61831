"""Sparse MoE dispatch vs the dense formulation: one MoE layer, and tiny-deepseek-v3 training.

1. **MoE layer, forward + backward** (one compiled ``value_and_grad`` graph, float32, CPU) for 8, 32,
   64 and 128 routed experts at a fixed top-k (default: 8 of them per token, hidden 256, expert
   FFN 128, 1024 tokens, no shared expert), side by side:

   - ``sparse``: mfcore's layer (pairs sorted by expert, C++ grouped matmul, weighted scatter back);
   - ``dense``: the formulation mfcore had before (every expert on every token, ``[E, T, h]``;
     ``tests/models/dense_moe.py``), which grows linearly with the number of experts;
   - ``MLP``: a dense SwiGLU MLP with the same active FLOPs (FFN ``top_k * 128``), the floor a
     grouped product can hope for.

   Before timing, the sparse and dense layers are checked to give the same output.
   Goal (issue 17): at 64 experts top-8, sparse >= 4x faster than dense and within 2x of the MLP.

2. **tiny-deepseek-v3 training** (8 experts, top-2; batch 8 x seq 256 by default): tokens/s of one
   fused ``ms.jit`` step (value_and_grad + AdamW) with the dense MoE (before) and the sparse one
   (after), identical initial weights, checked to give the same first loss.

Rounds interleave the variants (the machine is shared); medians are printed.

    .venv/bin/python benchmarks/bench_moe.py [--experts 8 32 64 128 --top-k 8 --tokens 1024
                                              --rounds 3 --steps 3 --skip-train]
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "models"))
from dense_moe import DenseMoE, make_dense  # noqa: E402  (the reference lives with the tests)

from mfcore.models import build_model, load_model_config  # noqa: E402
from mfcore.models.layers import MLP  # noqa: E402
from mfcore.models.layers.moe import MoE  # noqa: E402
from mfcore.train.trainer import host_blocking_run  # noqa: E402


class FirstOutput(nn.Cell):
    """``sum(layer(x)[0] * w)`` (an MoE returns (out, aux); an MLP returns out)."""

    def __init__(self, layer, is_moe):
        super().__init__()
        self.layer = layer
        self.is_moe = is_moe

    def construct(self, x, w):
        out = self.layer(x)
        if self.is_moe:
            out = out[0]
        return (out * w).sum()


def layer_runner(layer, is_moe, x, w):
    """One compiled forward + backward (gradients of the input and every parameter)."""
    grad_fn = ms.value_and_grad(FirstOutput(layer, is_moe), 0, layer.trainable_params())

    @ms.jit
    def step(x, w):
        return grad_fn(x, w)

    def run():
        value, (dx, _) = step(x, w)
        return float(value.asnumpy()) + float(dx.sum().asnumpy()) * 0.0

    return run


def moe_config(experts, top_k, hidden, ffn):
    base = dict(load_model_config("tiny-deepseek-v3").__dict__, n_routed_experts=experts,
                num_experts_per_tok=top_k, n_group=1, topk_group=1, hidden_size=hidden,
                moe_intermediate_size=ffn, n_shared_experts=0, aux_loss_alpha=0.0)
    return load_model_config(base)


def same_weights(target, source):
    for (_, a), (_, b) in zip(target.parameters_and_names(), source.parameters_and_names()):
        ops.assign(a, b.value())


def timed(run, steps):
    start = time.perf_counter()
    for _ in range(steps):
        run()
    return (time.perf_counter() - start) / steps


def interleaved(runners, rounds, steps):
    """Median seconds per call of every runner, rounds interleaved, after two warm-up calls each."""
    for run in runners.values():
        run(), run()
    times = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            times[name].append(timed(run, steps))
    return {name: statistics.median(t) for name, t in times.items()}


def bench_layers(args):
    rng = np.random.default_rng(0)
    x = Tensor(rng.normal(0, 1, (1, args.tokens, args.hidden)).astype(np.float32))
    w = Tensor(rng.normal(0, 1, (1, args.tokens, args.hidden)).astype(np.float32))
    mlp = layer_runner(MLP(args.hidden, args.top_k * args.ffn), False, x, w)
    print(f"\nMoE layer forward+backward: {args.tokens} tokens, hidden {args.hidden}, expert FFN "
          f"{args.ffn}, top-{args.top_k}, float32 (ms per call, median of {args.rounds} rounds); MLP = a "
          f"dense SwiGLU MLP with the same active FLOPs (FFN {args.top_k * args.ffn}), same rounds")
    print(f"{'experts':>8s} {'sparse':>9s} {'dense':>9s} {'MLP':>9s} {'dense/sparse':>13s} {'sparse/MLP':>11s}")
    for experts in args.experts:
        config = moe_config(experts, args.top_k, args.hidden, args.ffn)
        sparse, dense = MoE(config), DenseMoE(config)
        same_weights(dense, sparse)
        diff = float(np.abs(sparse(x)[0].asnumpy() - dense(x)[0].asnumpy()).max())
        if diff > 1e-4:
            raise SystemExit(f"sparse and dense MoE disagree at {experts} experts: {diff:.2e}")
        t = interleaved({"sparse": layer_runner(sparse, True, x, w), "dense": layer_runner(dense, True, x, w),
                         "mlp": mlp}, args.rounds, args.steps)
        print(f"{experts:8d} {t['sparse'] * 1e3:9.1f} {t['dense'] * 1e3:9.1f} {t['mlp'] * 1e3:9.1f} "
              f"{t['dense'] / t['sparse']:12.2f}x {t['sparse'] / t['mlp']:10.2f}x", flush=True)


def train_runner(model, batch):
    opt = nn.AdamWeightDecay(model.trainable_params(), 1e-4, beta2=0.95, weight_decay=0.1)
    grad_fn = ms.value_and_grad(model, None, opt.parameters)
    inputs = [Tensor(batch[k]) for k in ("tokens", "labels", "loss_mask")]

    @ms.jit
    def step(ids, labels, mask):
        loss, grads = grad_fn(ids, labels, mask)
        opt(grads)
        return loss

    return lambda: float(step(*inputs).asnumpy())


def bench_training(args):
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 4096, (args.batch, args.seq + 1)).astype(np.int32)
    batch = {"tokens": tokens[:, :-1].copy(), "labels": tokens[:, 1:].copy(),
             "loss_mask": np.ones((args.batch, args.seq), np.float32)}
    sparse = build_model("tiny-deepseek-v3")
    dense = make_dense(build_model("tiny-deepseek-v3"))
    same_weights(dense, sparse)
    for model in (sparse, dense):
        model.set_train(True)
    runners = {"dense (before)": train_runner(dense, batch), "sparse (after)": train_runner(sparse, batch)}
    per_step = args.batch * args.seq
    first = {name: run() for name, run in runners.items()}
    if abs(first["dense (before)"] - first["sparse (after)"]) > 1e-4 * abs(first["dense (before)"]):
        raise SystemExit(f"dense and sparse models disagree on the first loss: {first}")
    t = interleaved(runners, args.rounds, args.steps)
    print(f"\ntiny-deepseek-v3 training step (value_and_grad + AdamW, one graph): batch {args.batch} x "
          f"seq {args.seq}, first loss {first['sparse (after)'] / per_step:.5f} per token on both")
    for name, seconds in t.items():
        print(f"{name:16s} {per_step / seconds:9.0f} tokens/s")
    print(f"{'speed-up':16s} {t['dense (before)'] / t['sparse (after)']:9.2f}x")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experts", type=int, nargs="+", default=[8, 32, 64, 128])
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--ffn", type=int, default=128, help="moe_intermediate_size")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="timed calls per variant per round")
    ap.add_argument("--skip-layers", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args(argv)
    host_blocking_run()   # as mf-train does on CPU
    ms.set_context(mode=ms.GRAPH_MODE)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    if not args.skip_layers:
        bench_layers(args)
    if not args.skip_train:
        bench_training(args)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
