"""`mf-ckpt`: inspect, verify, merge and convert mfcore checkpoints.

    mf-ckpt info      [-c CKPT] [--all]           steps, layout, tensors, sizes
    mf-ckpt verify    [-c CKPT]                   marker, index and per-file sha256 of each checkpoint
    mf-ckpt merge     OUT_DIR [-c CKPT]           sharded → one unified safetensors set
    mf-ckpt export-hf OUT_DIR [-c CKPT]           Hugging Face layout (config.json + safetensors set)
    mf-ckpt import-hf IN_DIR  [-c CKPT_ROOT]      HF weights → a step-0 checkpoint to train from
    mf-ckpt export-ms OUT.ckpt [-c CKPT]          MindSpore .ckpt
    mf-ckpt import-ms IN [-c CKPT_ROOT] --config RUN.yaml [overrides]
                                                  MindSpore Transformers weights (.ckpt/safetensors,
                                                  their names) or an export-ms .ckpt → a step-0 checkpoint

``CKPT`` is a step directory or a checkpoint root (default ``output/checkpoints``: its newest
valid checkpoint).
"""
import argparse
import re
import sys
from typing import Optional, Sequence

from mfcore.cli.common import run_main

DEFAULT_ROOT = "output/checkpoints"
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9,
          "T": 10**12, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str) -> int:
    """``"5GB"`` → 5_000_000_000, ``"500MiB"`` → 524_288_000 (the units HF's max_shard_size takes)."""
    m = _SIZE_RE.match(str(text))
    unit = m.group(2).upper() if m else None
    if not m or unit not in _UNITS or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (expected e.g. 5GB, 500MB, 2GiB)")
    return int(float(m.group(1)) * _UNITS[unit])


def _add_ckpt(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("-c", "--checkpoint", default=DEFAULT_ROOT, help=help_text + f" (default: {DEFAULT_ROOT})")


def _add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR even if it is a non-empty "
                   "directory mfcore did not write (its old contents are moved to OUT_DIR.old-<time>)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mf-ckpt", description="Inspect, verify, merge and convert "
                                     "mfcore checkpoints (safetensors, Hugging Face, MindSpore .ckpt).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    src = "checkpoint step directory or root"
    p = sub.add_parser("info", help="steps, layout, tensors and sizes")
    _add_ckpt(p, src)
    p.add_argument("--all", action="store_true", help="list every tensor (default: the first 50)")
    p = sub.add_parser("verify", help="check markers, indexes and per-file checksums")
    _add_ckpt(p, src + "; a root verifies every checkpoint in it")
    p = sub.add_parser("merge", help="write the checkpoint as one unified safetensors set")
    p.add_argument("out_dir", metavar="OUT_DIR")
    _add_ckpt(p, src)
    p.add_argument("--max-shard-size", type=parse_size, default="5GB", help="largest output file (default: 5GB)")
    _add_overwrite(p)
    p = sub.add_parser("export-hf", help="export the model in Hugging Face layout")
    p.add_argument("out_dir", metavar="OUT_DIR")
    _add_ckpt(p, src)
    p.add_argument("--max-shard-size", type=parse_size, default="5GB", help="largest output file (default: 5GB)")
    _add_overwrite(p)
    p = sub.add_parser("import-hf", help="turn Hugging Face weights into a checkpoint to train from")
    p.add_argument("in_dir", metavar="IN_DIR")
    _add_ckpt(p, "checkpoint root to write step_00000000 into")
    p = sub.add_parser("export-ms", help="export to a MindSpore .ckpt file")
    p.add_argument("out_file", metavar="OUT_FILE")
    _add_ckpt(p, src)
    p.add_argument("--prefix", action="append", help="only tensors whose names start with this (repeatable)")
    p = sub.add_parser("import-ms", help="MindSpore Transformers weights (or an export-ms .ckpt) → a "
                       "checkpoint to train from")
    p.add_argument("in_path", metavar="IN", help=".ckpt or .safetensors file, or a directory of them")
    _add_ckpt(p, "checkpoint root to write step_00000000 into")
    p.add_argument("--config", required=True, help="the run config the weights are for: an mfcore config "
                   "or a MindSpore Transformers YAML (its model section decides the model)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    return parser


def _info(args) -> int:
    from mfcore.checkpoint.summary import describe
    print("\n".join(describe(args.checkpoint, None if args.all else 50)))
    return 0


def _verify(args) -> int:
    from mfcore.checkpoint.summary import verify
    results = verify(args.checkpoint)
    for r in results:
        print(f"{'ok     ' if r.ok else 'CORRUPT'} {r.path}: {r.message}")
    bad = sum(not r.ok for r in results)
    print(f"{len(results) - bad} of {len(results)} checkpoint(s) valid")
    return 1 if bad else 0


def _merge(args) -> int:
    from mfcore.checkpoint.merge import merge
    files = merge(args.checkpoint, args.out_dir, args.max_shard_size, args.overwrite)
    print(f"wrote {', '.join(files)} and trainer_state.json to {args.out_dir}")
    return 0


def _export_hf(args) -> int:
    from mfcore.checkpoint.hf import export_hf
    files = export_hf(args.checkpoint, args.out_dir, args.max_shard_size, args.overwrite)
    print(f"wrote config.json and {', '.join(files)} to {args.out_dir}")
    return 0


def _import_hf(args) -> int:
    from mfcore.checkpoint.hf import import_hf
    path = import_hf(args.in_dir, args.checkpoint)
    print(f"wrote {path}; train from it with checkpoint.resume: {path}")
    return 0


def _export_ms(args) -> int:
    from mfcore.checkpoint.ms_ckpt import export_ms_ckpt
    print(f"wrote {export_ms_ckpt(args.checkpoint, args.out_file, args.prefix)}")
    return 0


def _import_ms(args) -> int:
    from mfcore.checkpoint.mindformers import import_ms
    from mfcore.config.loader import load_config
    from mfcore.models import apply_overrides, load_model_config
    cfg = load_config(args.config, args.overrides, validate=False)
    # only the model matters here: the run's data and layout checks are the trainer's business
    model_cfg = apply_overrides(load_model_config(cfg.model.name), cfg.model.overrides,
                                source=f"{cfg.model.name} + model.overrides")
    path = import_ms(args.in_path, args.checkpoint, model_cfg)
    print(f"wrote {path}; train from it with checkpoint.resume: {path}")
    return 0


COMMANDS = {"info": _info, "verify": _verify, "merge": _merge, "export-hf": _export_hf,
            "import-hf": _import_hf, "export-ms": _export_ms,
            "import-ms": _import_ms}


def _main(argv: Optional[Sequence[str]]) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
