"""Regenerate the golden loss curves of the tiny configs (tests/golden/losses_*.json).

    .venv/bin/python tools/regen_golden_losses.py [tiny-llama3 ...]

Runs each tiny config with the recipe of tests/helpers/e2e_recipe.py (synthetic indexed dataset,
deterministic fp32 on CPU) twice, each in a fresh process as the test does, refuses to write if the
two runs differ in any bit, and writes the first 20 losses. Only run this after a deliberate change
of the numerics, and review the diff. The recipe is the tests' own, run as a command (a tool does
not import from tests/).
"""
import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"


def main(argv) -> int:
    env = {**os.environ, "GLOG_v": os.environ.get("GLOG_v", "3"),
           "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "helpers.e2e_recipe", "--regen", *argv], env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
