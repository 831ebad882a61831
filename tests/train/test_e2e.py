"""End to end: each shipped tiny config trains from a real indexed dataset, its loss falls well
below the start, and its first 20 losses equal the golden file exactly (deterministic fp32 CPU).

A golden mismatch means the numerics changed: if deliberate, regenerate with
``tools/regen_golden_losses.py`` and review the diff; otherwise it is a regression.

The runs start in the background right after collection (e2e_background.py)."""
import math

import pytest

from e2e_background import e2e_run
from helpers.e2e_recipe import GOLDEN_STEPS, TINY_CONFIGS, golden_path, read_golden
from mfcore.train.monitor import read_metrics

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", TINY_CONFIGS)
def test_tiny_config_trains_and_matches_golden(name, in_tmp, pytestconfig):
    workdir, losses = e2e_run(pytestconfig, name, in_tmp)
    assert len(losses) == 30 and all(math.isfinite(x) for x in losses)
    start = sum(losses[:3]) / 3
    assert start > 7.0                                       # ~ln(4096) at initialisation
    assert sum(losses[-5:]) / 5 < 0.6 * start                # "well below": measured ~0.5x
    rows = read_metrics(workdir / "out")
    assert [r["step"] for r in rows if "loss" in r] == [30]          # log_interval 1000: last step
    if "deepseek" in name:   # 2 MoE layers + the MTP module's, 8 experts, top-2 of every token
        load = rows[-1]["expert_load"]
        assert len(load) == 3 and all(len(layer) == 8 for layer in load)
        assert sum(load[0]) == 30 * 8 * 32 * 2 and rows[-1]["expert_imbalance"] >= 1.0
    assert golden_path(name).is_file(), f"no golden file: run tools/regen_golden_losses.py {name}"
    golden = read_golden(name)
    assert golden["losses"] == losses[:GOLDEN_STEPS], (
        f"{name}: loss curve differs from {golden_path(name).name}; if the numerics changed on "
        f"purpose, regenerate it with tools/regen_golden_losses.py and review the diff")
