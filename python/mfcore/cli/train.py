"""`mf-train`: Train a model from one YAML config (shipped name or path) with key=value overrides.

    mf-train --config NAME|PATH [section.key=value ...]   train (overrides and flags in any order)
    mf-train --config NAME --resume auto|PATH              continue from the newest valid / a checkpoint
    mf-train --config NAME --print-config [overrides]      show the resolved config
    mf-train --config NAME --dry-run [overrides]           validate, build data and model, report
    mf-train --list-configs                                shipped configs
    mf-train plot OUTPUT_DIR [--out PNG]                   loss/lr/grad-norm/throughput curves
    mf-train plan --model NAME --devices N [--device-memory 64GiB ...]   layouts that fit, fastest first
    mf-train plan --config NAME|PATH [overrides]           plan a run config's layout (docs/planning.md)
"""
import argparse
import sys
from typing import Optional, Sequence

from mfcore.cli.common import run_main
from mfcore.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mf-train", description="Train a model from one YAML config (shipped name or path) with "
        "key=value overrides. `mf-train plot OUTPUT_DIR` renders a run's curves; `mf-train plan` "
        "plans parallel layouts (mf-train plan --help).")
    p.add_argument("--config", "-c", help="shipped config name (see --list-configs) or YAML path")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    p.add_argument("--resume", metavar="auto|none|PATH", help="resume from the newest valid checkpoint "
                   "(auto), not at all (none), or a checkpoint directory; same as checkpoint.resume=")
    p.add_argument("--overwrite", action="store_true", help="with --resume none: move another run's "
                   "checkpoints in the checkpoint dir aside instead of refusing; same as "
                   "checkpoint.overwrite=true")
    p.add_argument("--list-configs", action="store_true", help="list the shipped configs and exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--dry-run", action="store_true", help="validate, build data indices and model, "
                   "report parameters, memory and tokens per step, and exit")
    return p


def build_plot_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mf-train plot", description="Render loss, lr, grad norm and "
                                "throughput curves of a run to a PNG.")
    p.add_argument("output_dir", help="the run's output directory (holds metrics.jsonl)")
    p.add_argument("--out", help="PNG path (default OUTPUT_DIR/metrics.png)")
    return p


def build_plan_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mf-train plan", description="Per-device memory and estimated step time of parallel "
        "layouts (TP, PP, EP, DP, micro batches, recompute); nothing is built. See docs/planning.md.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="shipped model name or model config path: search its layouts")
    what.add_argument("--config", "-c", help="run config (shipped name or YAML path): plan its layout")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides (--config)")
    p.add_argument("--devices", type=int, help="number of devices (--model)")
    p.add_argument("--device-memory", help="memory of one device, e.g. 64GiB (--model; a config uses "
                   "plan.device_memory_gib)")
    p.add_argument("--seq-length", type=int, default=4096)
    p.add_argument("--global-batch-size", type=int, default=1024)
    p.add_argument("--compute-dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    p.add_argument("--device-target", default="Ascend", choices=("Ascend", "GPU", "CPU"))
    p.add_argument("--peak-flops", type=float, help="peak FLOP/s of one device (default: Ascend 910B)")
    p.add_argument("--efficiency", type=float, help="achieved share of the peak (default 0.5)")
    p.add_argument("--intra-node-bandwidth", type=float, metavar="GB/S")
    p.add_argument("--inter-node-bandwidth", type=float, metavar="GB/S")
    p.add_argument("--devices-per-node", type=int)
    p.add_argument("--moe-dispatch", default="dropless", choices=("dropless", "capacity", "dense"))
    p.add_argument("--capacity-factor", type=float, default=1.0)
    p.add_argument("--top", type=int, default=5, help="layouts to print")
    p.add_argument("--runnable-only", action="store_true", help="only layouts today's trainer runs")
    return p


def _plan(argv: Sequence[str]) -> int:
    from mfcore import plan as P
    from mfcore.plan.commands import plan_config, plan_model
    args = build_plan_parser().parse_args(argv)
    if args.config:
        from mfcore.config.loader import load_config
        print(plan_config(load_config(args.config, args.overrides, validate=False), args.top,
                          args.runnable_only))
        return 0
    if args.overrides or args.devices is None:
        raise ConfigError("mf-train plan --model needs --devices N (and takes no key=value overrides)")
    bw = {k: None if v is None else v * 1e9 for k, v in
          (("intra_node_bw", args.intra_node_bandwidth), ("inter_node_bw", args.inter_node_bandwidth))}
    device = P.device_for(args.device_target, peak_flops=args.peak_flops, efficiency=args.efficiency,
                          devices_per_node=args.devices_per_node, **bw,
                          memory=None if args.device_memory is None else P.parse_memory(args.device_memory))
    work = P.Workload(args.seq_length, args.global_batch_size, P.run.COMPUTE_BYTES[args.compute_dtype],
                      args.moe_dispatch, args.capacity_factor)
    print(plan_model(args.model, args.devices, work, device, args.top, args.runnable_only))
    return 0


def _list_configs() -> int:
    from mfcore.config.loader import load_config, shipped_configs
    for name, path in shipped_configs().items():
        cfg = load_config(path, validate=False)
        print(f"{name:20s} model {cfg.model.name:18s} {cfg.run.device_target:7s} {path.name}")
    return 0


def _plot(argv: Sequence[str]) -> int:
    from mfcore.train.plot import plot_run
    args = build_plot_parser().parse_args(argv)
    print(f"wrote {plot_run(args.output_dir, args.out)}")
    return 0


def _main(argv: Optional[Sequence[str]]) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["plot"]:
        return _plot(argv[1:])
    if argv[:1] == ["plan"]:
        return _plan(argv[1:])
    # intermixed: overrides and flags come in any order, as users type them
    args = build_parser().parse_intermixed_args(argv)
    if args.list_configs:
        return _list_configs()
    if not args.config:
        raise ConfigError("give --config NAME|PATH (shipped names: mf-train --list-configs)")
    from mfcore.config.loader import dump_config, load_config
    overrides = list(args.overrides) + ([f"checkpoint.resume={args.resume}"] if args.resume else []) + \
        (["checkpoint.overwrite=true"] if args.overwrite else [])
    cfg = load_config(args.config, overrides)
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    if args.dry_run:
        from mfcore.train.dryrun import dry_run
        print(dry_run(cfg))
        return 0
    from mfcore.launch.restarts import EXIT_PREEMPTED
    from mfcore.train.trainer import train
    result = train(cfg)
    if result.stopped_by:
        print(f"stopped by {result.stopped_by} after step {result.state.step}; final checkpoint saved, "
              f"continue with --resume auto", file=sys.stderr)
        return EXIT_PREEMPTED
    print(f"done: {result.state.step} steps, {result.state.consumed_tokens:,} tokens, "
          f"final loss {result.losses[-1]:.4f}" if result.losses else "done: nothing to train")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
