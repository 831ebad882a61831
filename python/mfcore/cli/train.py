"""`mf-train`: Train a model from one YAML config (shipped name or path) with key=value overrides.

    mf-train --config NAME|PATH [section.key=value ...]   train (overrides and flags in any order)
    mf-train --config NAME --resume auto|PATH              continue from the newest valid / a checkpoint
    mf-train --config NAME --print-config [overrides]      show the resolved config
    mf-train --config NAME --dry-run [overrides]           validate, build data and model, report
    mf-train --list-configs                                shipped configs
    mf-train plot OUTPUT_DIR [--out PNG]                   loss/lr/grad-norm/throughput curves
"""
import argparse
import sys
from typing import Optional, Sequence

from mfcore.cli.common import run_main
from mfcore.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mf-train", description="Train a model from one YAML config (shipped name or path) with "
        "key=value overrides. `mf-train plot OUTPUT_DIR` renders a run's curves.")
    p.add_argument("--config", "-c", help="shipped config name (see --list-configs) or YAML path")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    p.add_argument("--resume", metavar="auto|none|PATH", help="resume from the newest valid checkpoint "
                   "(auto), not at all (none), or a checkpoint directory; same as checkpoint.resume=")
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
    # intermixed: overrides and flags come in any order, as users type them
    args = build_parser().parse_intermixed_args(argv)
    if args.list_configs:
        return _list_configs()
    if not args.config:
        raise ConfigError("give --config NAME|PATH (shipped names: mf-train --list-configs)")
    from mfcore.config.loader import dump_config, load_config
    overrides = list(args.overrides) + ([f"checkpoint.resume={args.resume}"] if args.resume else [])
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
