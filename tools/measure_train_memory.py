"""Measure the memory a short real training run adds on top of the runtime, to check mfcore.plan.

    python tools/measure_train_memory.py --config tiny-llama3 [section.key=value ...] [--steps 4]

Prints one JSON line: ``baseline`` (resident bytes after importing MindSpore, setting up the
runtime and building the data, before the model exists), ``peak`` (the highest resident size
*since the baseline*, through ``--steps`` training steps and the final checkpoint),
``measured = peak - baseline`` and the planner's ``predicted`` total for the same config and this
rank's pipeline stage (``stage``; ``run.device_target: CPU`` selects the planner's calibrated CPU
device, docs/planning.md). Under msrun (``mf-launch --script``) every rank prints its own line
(``rank`` in it).

The corpus is a synthetic indexed dataset written to the output directory, so the tool needs
nothing but the config.

Why the figure is reproducible (docs/planning.md, "Checked against measurement"):

- The peak is the kernel's ``VmHWM``, reset at the baseline (``/proc/self/clear_refs``, "5"), not
  ``getrusage().ru_maxrss``: Linux carries the high-water mark of the process that *started* this
  one over ``exec`` into ``ru_maxrss``, so under a pytest session that had already grown to 1 GiB the
  old figure was that session's peak minus our baseline (578 MiB for a 385 MiB run), and any peak
  before the baseline counted too.
- Before the baseline, collected garbage and malloc's free lists are handed back (``gc.collect``,
  ``malloc_trim(0)``), so memory the data set-up freed but kept is not in the baseline, where the
  model's tensors would re-use it and shrink the difference.
- The process runs under a pinned allocator and thread pool (``PINNED_ENV``, re-executing itself
  if needed, and ``CPU_OP_THREADS`` kernel threads): glibc makes up to 8 malloc arenas per core and
  MindSpore sizes its kernel pool by the cores it sees, so without pinning the per-thread caches,
  and the figure, depend on the machine and on which threads happen to allocate first.
- The first step's graph compilation is *inside* the measurement on purpose: the compiled graphs
  and kernels stay resident for the whole run (they are part of the planner's runtime reserve), and
  the resident size after step 1 is already the run's high-water mark (no compile-only spike).
- MindSpore's own memory statistics (``mindspore.runtime.max_memory_allocated``) report 0 on CPU,
  so the resident size is the only measure there.
"""
import argparse
import ctypes
import gc
import json
import os
import sys
from pathlib import Path

import numpy as np


PINNED_ENV = {"MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "2"}
CPU_OP_THREADS = 2


def _status_bytes(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _start_baseline() -> int:
    """Resident bytes now, after handing freed memory back; the high-water mark restarts here."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")   # resets VmHWM to the current resident size (Linux >= 4.0)
    except OSError as e:
        raise SystemExit(f"measure_train_memory: cannot reset the peak in /proc/self/clear_refs ({e}); "
                         f"the tool needs Linux's per-process high-water reset") from None
    return _status_bytes("VmRSS")


def _pin_environment(argv) -> None:
    """Re-run this script under ``PINNED_ENV`` (glibc reads MALLOC_ARENA_MAX only at start-up)."""
    if all(os.environ.get(k) == v for k, v in PINNED_ENV.items()):
        return
    env = {**os.environ, **PINNED_ENV}
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *argv], env)


def _pin_kernel_threads() -> None:
    import mindspore as ms
    ms.device_context.cpu.op_tuning.threads_num(CPU_OP_THREADS)


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
    if cfg.run.device_target == "CPU":
        _pin_kernel_threads()
    setup_runtime(cfg)
    ctx = build_parallel(cfg)
    prefix = out_dir / f"corpus_{ctx.rank}" / "syn_text_document"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    cfg.data.prefixes = [_write_corpus(prefix, 4096)]
    cfg.data.cache_dir = str(out_dir / f"cache_{ctx.rank}")
    model_cfg = model_config_of(cfg)
    data = build_data(cfg, ctx, model_cfg, C.total_train_steps(cfg))
    baseline = _start_baseline()
    from mfcore.train.trainer import train
    train(cfg, data=data)
    peak = _status_bytes("VmHWM")
    predicted = _planned_stage(planned_cfg, model_cfg, getattr(ctx, "pp_rank", 0))
    return {"config": config, "overrides": list(overrides), "rank": ctx.rank, "stage": predicted.stage,
            "baseline": baseline, "peak": peak, "measured": peak - baseline,
            "predicted": predicted.total, "breakdown": predicted.as_dict()}


def _planned_stage(cfg, model_cfg, stage: int):
    """The planner's memory of pipeline stage ``stage`` (each rank holds its own stage's layers)."""
    from mfcore.plan.memory import stage_memory
    from mfcore.plan.run import device_of, layout_of, workload_of
    from mfcore.plan.shapes import model_shape
    return stage_memory(model_shape(model_cfg), layout_of(cfg), workload_of(cfg, model_cfg), device_of(cfg), stage)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--out", default="measure_output")
    p.add_argument("overrides", nargs="*")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    os.environ.setdefault("GLOG_v", "3")
    _pin_environment(argv)
    result = measure(args.config, args.overrides, args.steps, Path(args.out))
    print("MEASURED " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
