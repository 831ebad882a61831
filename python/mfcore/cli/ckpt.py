"""`mf-ckpt`: Inspect, verify, merge and convert mfcore checkpoints (safetensors, Hugging Face layout)."""
import argparse
import sys
from typing import Optional, Sequence

from mfcore.cli.common import run_main


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="mf-ckpt", description="Inspect, verify, merge and convert mfcore checkpoints (safetensors, Hugging Face layout).")


def _main(argv: Optional[Sequence[str]]) -> int:
    build_parser().parse_args(argv)
    print("mf-ckpt: this command is being built; see docs/architecture.md", file=sys.stderr)
    return 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
