"""Regenerate the golden loss curves of the tiny configs (tests/golden/losses_*.json).

    .venv/bin/python tools/regen_golden_losses.py [tiny-llama3 ...]

Runs each tiny config with the recipe of tests/train/e2e_recipe.py (synthetic indexed dataset,
deterministic fp32 on CPU) twice, each in a fresh process as the test does, refuses to write if the
two runs differ in any bit, and writes the first 20 losses. Only run this after a deliberate change of the numerics, and review the diff.
"""
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "train"))
os.environ.setdefault("GLOG_v", "3")

from e2e_recipe import GOLDEN_STEPS, TINY_CONFIGS, run_in_subprocess, write_golden  # noqa: E402


def regenerate(name: str) -> None:
    runs = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(run_in_subprocess(name, Path(tmp))[:GOLDEN_STEPS])
    if runs[0] != runs[1]:
        raise SystemExit(f"{name}: two runs differ, not deterministic: {runs[0]} vs {runs[1]}")
    print(f"{name}: wrote {write_golden(name, runs[0])}")


def main(argv):
    for name in argv or TINY_CONFIGS:
        if name not in TINY_CONFIGS:
            raise SystemExit(f"unknown tiny config {name!r}; choose from {', '.join(TINY_CONFIGS)}")
        regenerate(name)


if __name__ == "__main__":
    main(sys.argv[1:])
