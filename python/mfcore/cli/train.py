"""`mf-train`: Train a model from one YAML config (shipped name or path) with key=value overrides."""
import argparse
import sys
from typing import Optional, Sequence

from mfcore.cli.common import run_main


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="mf-train", description="Train a model from one YAML config (shipped name or path) with key=value overrides.")


def _main(argv: Optional[Sequence[str]]) -> int:
    build_parser().parse_args(argv)
    print("mf-train: this command is being built; see docs/architecture.md", file=sys.stderr)
    return 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
