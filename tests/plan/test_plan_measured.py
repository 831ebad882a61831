"""The planner's memory per device against the measured peak of real short runs on CPU (the resident
high-water mark since the runtime's baseline after MindSpore, the runtime set-up and the data, before
the model, minus that baseline): within 20% on every row, as in docs/planning.md's table. One process
each, run side by side: the tool resets the high-water mark at its baseline and pins its allocator
and threads, so neither this pytest process's own peak nor sharing the cores changes the figure."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "measure_train_memory.py"
SMALL = "model.overrides={hidden_size: 512, intermediate_size: 1376, num_hidden_layers: 8}"  # 27 M
ROWS = {
    "tiny-llama3": ["--config", "tiny-llama3"],
    "tiny-deepseek-v3": ["--config", "tiny-deepseek-v3"],
    "small-llama3": ["--config", "tiny-llama3", SMALL],
}


def _start(name, args, tmp_path):
    env = {**os.environ, "GLOG_v": "3", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    cwd = tmp_path / name
    cwd.mkdir()
    return subprocess.Popen([sys.executable, str(TOOL), "--out", str(cwd / "out"), "--steps", "3", *args],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _raise_own_high_water_mark(nbytes=1 << 30):
    """A CI session that already trained in-process has a high resident peak; Linux hands it to
    every child's ru_maxrss over exec. Recreate that here so the tool must not count it."""
    block = bytearray(nbytes)
    block[::4096] = b"\1" * len(block[::4096])   # touch every page
    del block


@pytest.mark.slow
def test_planned_memory_within_20_percent_of_measured(tmp_path):
    _raise_own_high_water_mark()
    procs = {name: _start(name, args, tmp_path) for name, args in ROWS.items()}
    rows = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"{name}: {err[-2000:]}"
        line = next(l for l in out.splitlines() if l.startswith("MEASURED "))
        rows[name] = json.loads(line[len("MEASURED "):])
    for name, row in rows.items():
        print(f"{name}: baseline {row['baseline'] / 2**20:.0f} MiB, measured {row['measured'] / 2**20:.1f} MiB, "
              f"predicted {row['predicted'] / 2**20:.1f} MiB ({row['predicted'] / row['measured'] - 1:+.1%})")
    for name, row in rows.items():
        assert row["measured"] > 0 and row["predicted"] > 0
        error = row["predicted"] / row["measured"] - 1
        assert abs(error) <= 0.20, f"{name}: predicted {row['predicted'] / 2**20:.0f} MiB, measured " \
                                   f"{row['measured'] / 2**20:.0f} MiB ({error:+.0%})"
