"""The planner's memory per device against the measured peak of real 2-rank runs under msrun
(DP2, TP2, PP2 of tiny Llama 3, DP2 x EP2 of tiny DeepSeek-V3), within 20% on every rank, as in
docs/planning.md's distributed table. Each layout is one launch of tools/measure_train_memory.py on
both ranks (the resident high-water mark since the runtime's baseline, minus that baseline; it
resets the mark at its baseline and pins its allocator and threads, so sharing the cores does not
change the figure). The launches run side by side: most of an msrun job's wall time is start-up and
waiting, and the figures are sizes, not times."""
import json
import threading
from pathlib import Path

import pytest

from helpers.launch_helpers import launch

pytestmark = [pytest.mark.dist, pytest.mark.timeout(900)]

TOOL = str(Path(__file__).resolve().parents[2] / "tools" / "measure_train_memory.py")
STEPS = 2
ROWS = {
    "dp2": ["--config", "tiny-llama3", "parallel.data=2"],
    "tp2": ["--config", "tiny-llama3", "parallel.tensor=2"],
    "pp2": ["--config", "tiny-llama3", "parallel.pipeline=2"],
    "dp2xep2": ["--config", "tiny-deepseek-v3", "parallel.data=2", "parallel.expert=2"],
}
PINNED = {"MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def _measure(cwd: Path, args, jobs, name):
    jobs[name] = launch(cwd, ["--nproc-per-node", "2", "--script", TOOL],
                        ["--out", str(cwd / "out"), "--steps", str(STEPS), *args], timeout=800, env=PINNED)


def _rows_of(job):
    lines = [l for log in sorted(job.log_dir.glob("worker_*.log"))
             for l in log.read_text(errors="replace").splitlines() if l.startswith("MEASURED ")]
    return [json.loads(l[len("MEASURED "):]) for l in lines]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    jobs = {}
    threads = [threading.Thread(target=_measure, args=(tmp_path_factory.mktemp(name), args, jobs, name))
               for name, args in ROWS.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return jobs


@pytest.mark.parametrize("layout", list(ROWS))
def test_planned_memory_within_20_percent_of_measured_on_every_rank(measured, layout):
    job = measured[layout]
    assert job.returncode == 0, job.explain()
    rows = _rows_of(job)
    assert sorted(r["rank"] for r in rows) == [0, 1], job.explain()
    for row in rows:
        error = row["predicted"] / row["measured"] - 1
        print(f"{layout} rank {row['rank']}: measured {row['measured'] / 2**20:.0f} MiB, "
              f"predicted {row['predicted'] / 2**20:.0f} MiB ({error:+.1%})")
        assert row["measured"] > 0 and row["predicted"] > 0
        assert abs(error) <= 0.20, f"{layout} rank {row['rank']}: predicted {row['predicted'] / 2**20:.0f} " \
                                   f"MiB, measured {row['measured'] / 2**20:.0f} MiB ({error:+.0%})"
