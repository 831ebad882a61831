"""Measure the memory a short real training run adds on top of the runtime, to check mfcore.plan.

    python tools/measure_train_memory.py --config tiny-llama3 [section.key=value ...] [--steps 4]

Prints one JSON line: ``baseline`` (resident bytes after importing MindSpore, setting up the
runtime and building the data, before the model exists), ``peak`` (the process's resident
high-water mark after ``--steps`` training steps), ``measured = peak - baseline`` and the
planner's ``predicted`` total for the same config (``run.device_target: CPU`` selects the planner's
calibrated CPU device, docs/planning.md). Under msrun (``mf-launch --script``) every rank prints its
own line (``rank`` in it).

The corpus is a synthetic indexed dataset written to the output directory, so the tool needs
nothing but the config.
"""
import argparse
import json
import os
import resource
import sys
from pathlib import Path

import numpy as np


def _rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _write_corpus(prefix: Path, vocab_limit: int) -> str:
    from mfcore.data import IndexedDatasetBuilder
    rng = np.random.default_rng(0)
    builder = IndexedDatasetBuilder(str(prefix), np.uint16)
    for _ in range(300):
        doc = rng.integers(1, min(vocab_limit, 4000), size=int(rng.integers(40, 400)))
        builder.add_document(np.append(doc, 0).astype(np.uint16))
    builder.finalize()
    return str(prefix)


def measure(config: str, overrides, steps: int, out_dir: Path) -> dict:
    from mfcore.config import loader as C
    from mfcore.train.trainer import build_parallel, model_config_of, setup_runtime
    from mfcore.train.data_setup import build_data
    out_dir.mkdir(parents=True, exist_ok=True)
    base = [f"run.output_dir={out_dir}", f"training.train_steps={steps}", "training.eval_interval=0",
            "checkpoint.save_interval=0", "logging.tensorboard=false", "logging.jsonl=false",
            "logging.progress_bar=never", "data.eod_id=0"]
    cfg = C.load_config(config, base + list(overrides))
    planned_cfg = C.load_config(config, base + list(overrides))   # cfg's data paths change below
    setup_runtime(cfg)
    ctx = build_parallel(cfg)
    prefix = out_dir / f"corpus_{ctx.rank}" / "syn_text_document"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    cfg.data.prefixes = [_write_corpus(prefix, 4096)]
    cfg.data.cache_dir = str(out_dir / f"cache_{ctx.rank}")
    model_cfg = model_config_of(cfg)
    data = build_data(cfg, ctx, model_cfg, C.total_train_steps(cfg))
    import gc
    gc.collect()
    baseline = _rss_bytes()
    from mfcore.train.trainer import train
    train(cfg, data=data)
    peak = _peak_bytes()
    from mfcore.plan import plan_run
    predicted = plan_run(planned_cfg, model_cfg).memory
    return {"config": config, "overrides": list(overrides), "rank": ctx.rank,
            "baseline": baseline, "peak": peak, "measured": peak - baseline,
            "predicted": predicted.total, "breakdown": predicted.as_dict()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--out", default="measure_output")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    os.environ.setdefault("GLOG_v", "3")
    result = measure(args.config, args.overrides, args.steps, Path(args.out))
    print("MEASURED " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
