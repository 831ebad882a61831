"""`mf-eval`: held-out loss and perplexity of a model over the Megatron samples of a split.

    mf-eval -c CHECKPOINT --data PREFIX [--split test|valid] [--samples N] [--json]
    mf-eval --config RUN.yaml [overrides]      the run's own test split, its newest checkpoint

Split, sequence length, seed and sample options come from ``--config``, else from the run config the
checkpoint recorded, else the defaults; ``--data`` replaces the dataset prefixes.
"""
import argparse
import json
import sys
from typing import Optional, Sequence

from mfcore.cli.common import run_main
from mfcore.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mf-eval", description="Held-out loss and perplexity of a model "
                                "(training checkpoint or Hugging Face directory) over a split's samples.")
    p.add_argument("-c", "--checkpoint", help="checkpoint step dir, checkpoint root or HF directory "
                   "(default with --config: the run's checkpoint directory)")
    p.add_argument("--config", help="run config (shipped name or YAML): its data and checkpoint")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    p.add_argument("--data", nargs="+", metavar="PREFIX", help="indexed dataset prefix(es) to evaluate on")
    p.add_argument("--split", default="test", choices=["test", "valid"], help="which split (default test)")
    p.add_argument("--samples", type=int, help="samples to evaluate (default: one epoch of the split)")
    p.add_argument("--seq-length", type=int, help="tokens per sample (default: the run's data.seq_length)")
    p.add_argument("--micro-batch-size", type=int, default=4, help="samples per forward (default 4)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a line")
    return p


def run_config(args):
    """The run config whose data section describes the samples (see the module doc)."""
    from mfcore.config.loader import load_config
    from mfcore.train.heldout import saved_run_config
    cfg = saved_run_config(args.checkpoint) if args.checkpoint and not args.config else None
    if cfg is None or args.overrides:
        base = args.config if args.config else None
        if cfg is not None:  # the saved config, with the overrides on top
            from mfcore.config.loader import config_from_dict, config_to_dict, deep_merge, parse_overrides
            cfg = config_from_dict(deep_merge(config_to_dict(cfg), parse_overrides(args.overrides)),
                                   validate=False)
        else:
            cfg = load_config(base, args.overrides, validate=False)
    if args.data:
        cfg.data.prefixes, cfg.data.weights = list(args.data), None
    if args.seq_length:
        cfg.data.seq_length = args.seq_length
    return cfg


def _main(argv: Optional[Sequence[str]]) -> int:
    args = build_parser().parse_args(argv)
    if not args.checkpoint and not args.config:
        raise ConfigError("give -c CHECKPOINT (with --data PREFIX) or --config RUN")
    if args.micro_batch_size < 1:
        raise ConfigError(f"--micro-batch-size must be >= 1, got {args.micro_batch_size}")
    cfg = run_config(args)
    if not args.checkpoint:
        from mfcore.train.checkpointing import checkpoint_dir
        args.checkpoint = checkpoint_dir(cfg)
    if not cfg.data.prefixes:
        raise ConfigError("no dataset: give --data PREFIX (or a --config with data.prefixes)")
    from mfcore.generation import load_model
    from mfcore.train.heldout import heldout_loss, model_keys, split_dataset
    model = load_model(args.checkpoint)
    dataset = split_dataset(cfg, model.config, args.split, args.samples)
    result = {"checkpoint": args.checkpoint, "data": list(cfg.data.prefixes), "split": args.split,
              "seq_length": cfg.data.seq_length,
              **heldout_loss(model, dataset, model_keys(cfg), args.micro_batch_size, args.samples)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.split} split of {', '.join(result['data'])}: {result['samples']} samples, "
              f"{result['tokens']} tokens | loss {result['loss']:.4f} | perplexity {result['perplexity']:.3f}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
