"""Checkpoint save stall: how long training waits for a synchronous vs an asynchronous save.

The tensor set has the shapes of a Llama model's parameters plus AdamW's two moments (3 copies
of each, all float32), 1.7 GiB by default. The async manager reuses its host buffers from the
previous save, so the first async save (fresh memory) stalls longer than the later ones; both are
printed. A sync save blocks for the whole write (serialise,
fsync, hash, commit); an async save blocks only for the copy to host memory. Goal: async stall
<= 10% of sync.

    .venv/bin/python benchmarks/bench_checkpoint.py [--hidden 1024 --layers 8 --vocab 32000 --repeats 3]
"""
import argparse
import os
import statistics
import sys
import tempfile

import numpy as np

from mfcore.checkpoint import CheckpointManager


def llama_like_tensors(hidden: int, layers: int, vocab: int, seed: int = 0) -> dict:
    """Parameters (and AdamW moments) with a Llama's shapes; values random so nothing compresses."""
    rng = np.random.default_rng(seed)
    ffn = int(hidden * 8 / 3) // 64 * 64
    shapes = {"embed_tokens.weight": (vocab, hidden), "lm_head.weight": (hidden, vocab), "norm.weight": (hidden,)}
    for i in range(layers):
        p = f"layers.{i}."
        shapes.update({p + "q_proj.weight": (hidden, hidden), p + "k_proj.weight": (hidden, hidden // 4),
                       p + "v_proj.weight": (hidden, hidden // 4), p + "o_proj.weight": (hidden, hidden),
                       p + "gate_proj.weight": (hidden, ffn), p + "up_proj.weight": (hidden, ffn),
                       p + "down_proj.weight": (ffn, hidden), p + "input_layernorm.weight": (hidden,),
                       p + "post_attention_layernorm.weight": (hidden,)})
    out = {}
    for name, shape in shapes.items():
        base = rng.standard_normal(shape, dtype=np.float32)
        out["model/" + name] = base
        out["optimizer/" + name + ".exp_avg"] = base * 0.1
        out["optimizer/" + name + ".exp_avg_sq"] = base * base
    return out


def measure(root: str, tensors: dict, async_save: bool, repeats: int):
    """(first stall, median stall, median full write time) over ``repeats`` saves."""
    mgr = CheckpointManager(root, keep_last_n=1, async_save=async_save)
    stalls, writes = [], []
    for step in range(1, repeats + 1):
        report = mgr.save(step, tensors, {"consumed_samples": step})
        stalls.append(report.stall_s)
        mgr.wait()  # not counted: training would keep computing while the write finishes
        writes.append(report.write_s)
    return stalls[0], statistics.median(stalls), statistics.median(writes)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary directory)")
    args = ap.parse_args(argv)
    tensors = llama_like_tensors(args.hidden, args.layers, args.vocab)
    gib = sum(a.nbytes for a in tensors.values()) / 2**30
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        sync_first, sync_stall, sync_write = measure(os.path.join(tmp, "sync"), tensors, False, args.repeats)
        async_first, async_stall, async_write = measure(os.path.join(tmp, "async"), tensors, True, args.repeats)
    ratio = async_stall / sync_stall
    print(f"checkpoint of {len(tensors)} tensors, {gib:.2f} GiB (median of {args.repeats} saves)")
    print(f"{'mode':<8}{'training stall':>16}{'first save':>12}{'write done after':>18}{'stall MB/s':>12}")
    rows = (("sync", sync_stall, sync_first, sync_write), ("async", async_stall, async_first, async_write))
    for mode, stall, first, write in rows:
        print(f"{mode:<8}{stall:>14.3f} s{first:>10.3f} s{write:>16.3f} s{gib * 1024 / stall:>12.0f}")
    print(f"async stall = {100 * ratio:.1f}% of sync stall (goal <= 10%): {'met' if ratio <= 0.10 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
