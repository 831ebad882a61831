"""Decode speed of the tiny models with the KV cache vs without it, side by side.

With the cache (``mfcore.generation.CachedDecoder``) a new token costs one compiled decode step
against a static cache (prompt + new tokens slots). Without it, every new token recomputes the whole
sequence with the training forward (compiled once per length). Compiles and a warm-up pass are not
timed. One sequence is decoded with the cache; each time it reaches one of ``--lengths`` tokens,
the full forward of that sequence is timed right there, so both sides run under the same machine
load, and its logits must equal the cached step's. Wall and process-CPU milliseconds per token are medians
(the cached figure over the ``--reps`` steps just before that length).

    .venv/bin/python benchmarks/bench_generate.py [--models tiny-llama3 tiny-deepseek-v3]
        [--lengths 32 64 128 256 512] [--reps 8]
"""
import argparse
import os
import sys
import time

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

from mfcore.generation import CachedDecoder
from mfcore.models import build_model

PROMPT = 16


class FullForward(nn.Cell):
    def __init__(self, model):
        super().__init__(auto_prefix=False)
        self.model = model

    @ms.jit
    def construct(self, input_ids):
        return self.model(input_ids)


def timed(fn):
    """(result, wall ms, CPU ms) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, 1e3 * (time.perf_counter() - wall), 1e3 * (time.process_time() - cpu)


def recompute(forward, tokens, reps):
    """(last-position logits, wall ms, CPU ms) of the full forward over ``tokens`` (median)."""
    ids = Tensor(np.array([tokens], np.int32))
    logits = forward(ids).asnumpy()[0, -1]   # compiles this length (not timed)
    runs = [timed(lambda: forward(ids).asnumpy())[1:] for _ in range(reps)]
    return logits, float(np.median([r[0] for r in runs])), float(np.median([r[1] for r in runs]))


def bench(name, lengths, reps):
    ms.set_seed(0)
    model = build_model(name)
    model.set_train(False)
    tokens = np.random.default_rng(0).integers(0, model.config.vocab_size, max(lengths) + 1).tolist()
    decoder, forward = CachedDecoder(model), FullForward(model)
    for warm_up in (True, False):     # a first pass compiles the two graphs and warms the allocator
        decoder.prefill([tokens[:PROMPT]], max(lengths) - PROMPT)
        for pos in range(PROMPT, PROMPT + (3 * reps if warm_up else 1)):
            decoder.step([tokens[pos]])
    print(f"\n{name}: decode of one sequence (batch 1, float32), prompt {PROMPT} tokens, "
          f"cache of {decoder.length} slots")
    print(f"{'tokens':>6} | {'cache ms/token wall (CPU)':>25} {'tokens/s':>8} | "
          f"{'no cache ms/token wall (CPU)':>28} {'tokens/s':>8} | speedup wall (CPU)")
    steps = []
    for pos in range(PROMPT + 1, max(lengths)):
        logits, wall, cpu = timed(lambda: decoder.step([tokens[pos]]))
        steps.append((wall, cpu))
        n = pos + 1                   # the sequence now holds n tokens
        if n not in lengths:
            continue
        full, full_wall, full_cpu = recompute(forward, tokens[:n], reps)
        diff = float(np.abs(full - logits[0]).max())
        assert diff < 1e-4, f"{name}: cached and recomputed logits differ by {diff} at {n} tokens"
        c_wall = float(np.median([s[0] for s in steps[-reps:]]))
        c_cpu = float(np.median([s[1] for s in steps[-reps:]]))
        print(f"{n:>6} | {c_wall:>15.2f} ({c_cpu:>7.2f}) {1e3 / c_wall:>8.1f} | {full_wall:>18.2f} "
              f"({full_cpu:>7.2f}) {1e3 / full_wall:>8.1f} | {full_wall / c_wall:.2f}x ({full_cpu / c_cpu:.2f}x)",
              flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["tiny-llama3", "tiny-deepseek-v3"])
    p.add_argument("--lengths", nargs="+", type=int, default=[32, 64, 128, 256, 512])
    p.add_argument("--reps", type=int, default=8)
    args = p.parse_args(argv)
    if min(args.lengths) < PROMPT + 2 + args.reps:
        p.error(f"lengths must be >= {PROMPT + 2 + args.reps}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for name in args.models:
        bench(name, sorted(set(args.lengths)), args.reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
