"""The other half of the composition matrix (issue 18): every combination of DP, TP, SP, ZeRO-1, EP,
expert TP and PP over sizes 1 and 2 is either a row of ``helpers.composition.ROWS`` (trained against one
process by tests/dist/test_composition_dist.py) or refused by config validation with a message
naming the combination's keys; and docs/parallelism.md shows exactly the tested rows."""
import itertools
import re
from pathlib import Path

import pytest

from helpers.composition import (MODELS, MOE_MODELS, RESUMED, ROWS, overrides, ranks, row_name, rows_for,
                                 write_run_config)
from mfcore.config.checks import check_model_fit
from mfcore.config.loader import load_config
from mfcore.errors import ConfigError
from mfcore.models import apply_overrides, load_model_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "parallelism.md"
SIZES = ("data", "tensor", "pipeline", "expert", "expert_tensor")
FLAGS = ("sequence_parallel", "optimizer_sharding")


def _combinations():
    """Every layout over sizes {1, 2} and both flags that fits the 4 ranks a test can launch here,
    as the non-default ``parallel:`` keys. (Of the 8-rank ones, TP2xPP2xDP2 with its flags is
    accepted: a composition of tested pairs, run only on a larger machine.)"""
    for sizes in itertools.product((1, 2), repeat=len(SIZES)):
        for flags in itertools.product((False, True), repeat=len(FLAGS)):
            layout = {k: v for k, v in zip(SIZES, sizes) if v > 1}
            layout.update({k: v for k, v in zip(FLAGS, flags) if v})
            if ranks(layout) <= 4:
                yield layout


COMBINATIONS = list(_combinations())


@pytest.fixture(scope="module")
def base_configs(tmp_path_factory):
    root = tmp_path_factory.mktemp("matrix_configs")
    return {m: write_run_config(root / f"{m}.yaml", m, str(root / "corpus"), str(root / "cache")) for m in MODELS}


def _refusal(config, model, layout):
    """Validation's message for ``layout`` (None: accepted), config checks then the model's."""
    try:
        cfg = load_config(config, overrides(layout))
        name, model_overrides = MODELS[model]
        check_model_fit(cfg, apply_overrides(load_model_config(name), model_overrides))
    except ConfigError as e:
        return str(e)
    return None


@pytest.mark.parametrize("model", list(MODELS))
def test_every_accepted_layout_is_a_tested_row_and_every_other_is_refused_by_name(base_configs, model):
    rows = [dict(row) for row in rows_for(model)]
    accepted, refused = [], []
    for layout in COMBINATIONS:
        message = _refusal(base_configs[model], model, layout)
        if message is None:
            accepted.append(layout)
            assert not layout or layout in rows, f"{row_name(layout)} is accepted but not in the matrix"
        else:
            refused.append(row_name(layout))
            named = set(re.findall(r"parallel\.(\w+)", message))
            assert named & set(layout), f"{row_name(layout)} refused without naming its keys: {message}"
            assert layout not in rows, f"matrix row {row_name(layout)} is refused: {message}"
    # every row is accepted (rows beyond sizes 1 and 2, e.g. EP4, validated one by one)
    assert [row for row in rows if row not in accepted and _refusal(base_configs[model], model, row)] == []
    # the refusals today: EP with TP but without SP (and EP without routed experts), expert TP, SP
    # without TP, ZeRO without DP (and their mixes)
    assert {"TP2xEP2xDP2", "TP2xEP2", "TP2xETP2", "DP2+SP", "TP2+ZeRO", "TP2xPP2+ZeRO"} <= set(refused)
    assert ("TP2xEP2xDP2+SP" in refused) == (model not in MOE_MODELS)
    assert ("EP2xDP2" in refused) == ("PP2xEP2xDP2" in refused) == (model not in MOE_MODELS)
    print(f"{model}: {len(accepted) - 1} layouts run, {len(refused)} refused")


def test_rows_are_distinct_and_fit_four_ranks():
    names = [row_name(row) for row in ROWS]
    assert len(set(names)) == len(names)
    assert all(ranks(row) in (2, 4) for row in ROWS)
    # the resumed rows are 4-rank rows (their resumes overlap the 2-rank launch), each model has some
    assert all(row in ROWS and ranks(row) == 4 for row in RESUMED)
    assert all(any(row in rows_for(model) for row in RESUMED) for model in MODELS)
    assert row_name({"tensor": 2, "data": 2, "sequence_parallel": True, "optimizer_sharding": True}) == \
        "TP2xDP2+SP+ZeRO"


def test_the_guide_shows_the_tested_table():
    """docs/parallelism.md's composition table lists the matrix's rows, in order."""
    text = DOC.read_text()
    section = text.split("<!-- composition-table -->")[1].strip().split("\n\n")[0]   # the table after the marker
    shown = re.findall(r"^\| `([^`]+)` \|", section, re.M)
    assert shown == [row_name(row) for row in ROWS]
