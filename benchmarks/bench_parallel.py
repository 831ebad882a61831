"""Distributed figures on 2 ranks (msrun on loopback), each beside its baseline, in one run:

1. optimizer-state memory per rank: ZeRO-1 (sharded AdamW moments) vs plain AdamW;
2. gradient AllReduce over DP: buckets of 25, 4 and 1 MB vs one AllReduce per tensor;
3. training-step time of tiny-llama3: DP=2 vs the same global batch on one process.

usage: python benchmarks/bench_parallel.py [--model tiny-llama3] [--port 29650]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

GLOBAL_BATCH, MICRO_BATCH, SEQ, STEPS, WARMUP = 8, 4, 128, 6, 2
BUCKETS = (("bucket_25mb", 25.0), ("bucket_4mb", 4.0), ("bucket_1mb", 1.0), ("per_tensor", 1e-9))


def _worker(out_path: str, model_name: str) -> None:
    import mindspore as ms
    from mindspore import Parameter, Tensor, nn

    from mfcore.models import build_model, load_model_config
    from mfcore.parallel import init_parallel
    from mfcore.parallel.grad_reduce import BucketedAllReduce
    from mfcore.train.optim import build_optimizer
    from mfcore.config.schema import OptimizerSection
    from mfcore.train.step import TrainStep, apply_update, forward_backward

    ms.set_context(mode=ms.GRAPH_MODE)
    world = int(os.environ.get("MS_WORKER_NUM", "1"))
    ctx = init_parallel({"data": world, "optimizer_sharding": world > 1})
    ms.set_seed(0)
    cfg = load_model_config(model_name)
    model = build_model(cfg)
    params = list(model.trainable_params())
    result = {"params": int(sum(np.prod(p.shape) for p in params)), "world": world,
              "dense_state_bytes": int(sum(np.prod(p.shape) for p in params)) * 8}
    optimizer = build_optimizer(OptimizerSection(), params, ctx)  # ZeRO-1 when world > 1
    if world > 1:
        result["zero_state_bytes"] = optimizer.state_nbytes()
        result.update(_time_all_reduce(ctx, params, BucketedAllReduce, Parameter, Tensor, nn, ms))
    step = TrainStep(model, optimizer, grad_reducer=ctx.gradient_reducer(params, model))
    rng = np.random.default_rng(0)
    per_rank = GLOBAL_BATCH // world
    times = []
    for i in range(WARMUP + STEPS):
        mbs = [{"tokens": rng.integers(0, cfg.vocab_size, (MICRO_BATCH, SEQ)).astype(np.int32),
                "labels": rng.integers(0, cfg.vocab_size, (MICRO_BATCH, SEQ)).astype(np.int32),
                "loss_mask": np.ones((MICRO_BATCH, SEQ), np.float32)} for _ in range(per_rank // MICRO_BATCH)]
        start = time.perf_counter()
        out = forward_backward(step, mbs, ("tokens", "labels", "loss_mask"), GLOBAL_BATCH * SEQ, 1.0)
        apply_update(step, 1e-4, out.grad_norm, 1.0, 1.0)
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
    result["step_s"] = float(np.median(times))
    if ctx.is_main:
        with open(out_path, "w") as f:
            json.dump(result, f)


def _time_all_reduce(ctx, params, BucketedAllReduce, Parameter, Tensor, nn, ms):
    grads = ms.ParameterTuple([Parameter(Tensor(np.ones(p.shape, np.float32)), name=f"g.{p.name}",
                                         requires_grad=False) for p in params])
    shapes = [p.shape for p in params]
    idx = list(range(len(params)))

    class Reduce(nn.Cell):
        def __init__(self, bucket_mb):
            super().__init__(auto_prefix=False)
            self.grads = grads
            self.reduce = BucketedAllReduce(shapes, idx, ctx.dp_group, bucket_mb)

        def construct(self):
            return self.reduce(self.grads)[0]

    out = {}
    for label, mb in BUCKETS:
        cell = Reduce(mb)
        out[f"{label}_buckets"] = len(cell.reduce.buckets)
        cell().asnumpy()
        start = time.perf_counter()
        for _ in range(10):
            cell().asnumpy()
        out[f"{label}_allreduce_ms"] = (time.perf_counter() - start) / 10 * 1e3
    return out


def _run(args, workdir, nproc):
    out = os.path.join(workdir, f"result_{nproc}.json")
    script = os.path.abspath(__file__)
    env = {**os.environ, "GLOG_v": "3"}
    if nproc == 1:
        cmd = [sys.executable, script, "--worker", out, "--model", args.model]
    else:
        cmd = [sys.executable, "-m", "mfcore.cli.launch", "--nproc-per-node", str(nproc), "--master-port",
               str(args.port), "--log-dir", os.path.join(workdir, "logs"), "--script", script, "--",
               "--worker", out, "--model", args.model]
    subprocess.run(cmd, cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny-llama3")
    p.add_argument("--port", type=int, default=29650)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return _worker(args.worker, args.model)
    with tempfile.TemporaryDirectory() as workdir:
        one, two = _run(args, workdir, 1), _run(args, workdir, 2)
    mb = 2 ** 20
    print(f"model {args.model}: {two['params'] / 1e6:.2f}M parameters, global batch {GLOBAL_BATCH} x {SEQ} tokens")
    print(f"{'figure':44s} {'mfcore':>14s} {'baseline':>14s}")
    print(f"{'optimizer state per rank, ZeRO-1 vs AdamW':44s} {two['zero_state_bytes'] / mb:11.2f} MB "
          f"{two['dense_state_bytes'] / mb:11.2f} MB   ratio {two['zero_state_bytes'] / two['dense_state_bytes']:.3f}")
    base = two["per_tensor_allreduce_ms"]
    for label, mb in BUCKETS[:-1]:
        print(f"{'grad AllReduce, ' + f'{mb:g} MB buckets vs per tensor':44s} "
              f"{two[label + '_allreduce_ms']:11.1f} ms {base:11.1f} ms   "
              f"({two[label + '_buckets']} vs {two['per_tensor_buckets']} messages)")
    print(f"{'step time, DP=2 (ZeRO-1) vs 1 process':44s} {two['step_s'] * 1e3:11.0f} ms "
          f"{one['step_s'] * 1e3:11.0f} ms   (2 ranks share this machine's {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
