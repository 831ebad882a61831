"""`mf-train`: Train a model from one YAML config (shipped name or path) with key=value overrides.

    mf-train --config NAME|PATH [section.key=value ...]   train
    mf-train --config NAME --resume auto|PATH              continue from the newest valid / a checkpoint
    mf-train --config NAME --print-config [overrides]      show the resolved config
    mf-train --config NAME --dry-run [overrides]           validate, build data and model, report
    mf-train --list-configs                                shipped configs
    mf-train plot OUTPUT_DIR [--out PNG]                   loss/lr/grad-norm/throughput curves
    mf-train import-config THEIR.yaml -o OURS.yaml         MindSpore Transformers YAML → mfcore YAML

A MindSpore Transformers YAML is also accepted by --config directly (translated on the fly), with
run_mindformer.py's flags --train_dataset_dir, --use_parallel, --run_mode, --load_checkpoint and
--resume_training.
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
    add_mindformers_flags(p)
    return p


def add_mindformers_flags(p: argparse.ArgumentParser) -> None:
    """run_mindformer.py's flags, applied to a MindSpore Transformers config before translation."""
    g = p.add_argument_group("MindSpore Transformers configs (run_mindformer.py flags)")
    g.add_argument("--train_dataset_dir", help="the train dataset (MindRecord file/directory, or Megatron prefix)")
    g.add_argument("--use_parallel", help="True/False: False trains on one device")
    g.add_argument("--run_mode", help="train or finetune (mf-train trains)")
    g.add_argument("--load_checkpoint", help="initial weights (an mfcore checkpoint; convert theirs with "
                   "mf-ckpt import-ms first)")
    g.add_argument("--resume_training", help="True/False: resume from the newest checkpoint")


def mindformers_flags(args) -> dict:
    from mfcore.migrate.mindformers_config import FLAGS
    return {name: getattr(args, name) for name in FLAGS if getattr(args, name) is not None}


def build_import_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mf-train import-config", description="Translate a MindSpore "
                                "Transformers run YAML into the equivalent mfcore config (a comment per key; "
                                "what has no equivalent is listed on top and printed).")
    p.add_argument("config", help="the MindSpore Transformers YAML (e.g. pretrain_llama2_7b.yaml)")
    p.add_argument("-o", "--output", required=True, help="the mfcore YAML to write")
    add_mindformers_flags(p)
    return p


def _import_config(argv: Sequence[str]) -> int:
    from mfcore.migrate.mindformers_config import write_translation
    args = build_import_parser().parse_args(argv)
    translation = write_translation(args.config, args.output, mindformers_flags(args))
    print(translation.message(), file=sys.stderr)
    print(f"wrote {args.output}; train with: mf-train --config {args.output}")
    return 0


def build_plot_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mf-train plot", description="Render loss, lr, grad norm and "
                                "throughput curves of a run to a PNG.")
    p.add_argument("output_dir", help="the run's output directory (holds metrics.jsonl)")
    p.add_argument("--out", help="PNG path (default OUTPUT_DIR/metrics.png)")
    return p


def _list_configs() -> int:
    from mfcore.train.config import load_config, shipped_configs
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
    if argv[:1] == ["import-config"]:
        return _import_config(argv[1:])
    args = build_parser().parse_args(argv)
    if args.list_configs:
        return _list_configs()
    if not args.config:
        raise ConfigError("give --config NAME|PATH (shipped names: mf-train --list-configs)")
    from mfcore.train.config import dump_config, load_config
    overrides = list(args.overrides) + ([f"checkpoint.resume={args.resume}"] if args.resume else [])
    cfg = load_config(args.config, overrides, mindformers_flags=mindformers_flags(args))
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    if args.dry_run:
        from mfcore.train.dryrun import dry_run
        print(dry_run(cfg))
        return 0
    from mfcore.train.resilience import EXIT_PREEMPTED
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
