"""The composition matrix (issue 18): every layout of ``helpers.composition.ROWS`` (DP, TP, SP,
ZeRO-1, PP and EP on 2 ranks, and their 4-rank mixes, EP inside pipeline stages and EP over TP x DP
ranks with SP among them) trains tiny Llama 3 and tiny DeepSeek-V3 through
mf-train (real data pipeline, checkpoints) as one process does: the loss curve, the final weights,
and the layout's step-2 checkpoint resumed in one process continues on the one-process curve.

Jobs: one msrun launch per world size trains every row of that size for both models one after the
other (tests/dist/workers/composition_runs.py: ~15 s of msrun start-up and cluster build per
launch instead of per layout); the one-process references run in a background process during the
2-rank launch, the resumes of one launch's checkpoints during the next.

Tolerances (fp32, 4 AdamW steps): losses within 1e-5 relative per step, the final weights within
1e-5 relative L2 over the whole model, DeepSeek's routing biases bitwise equal. Measured
(2026-12-03): DP, ZeRO-1 and PP agree to ~2e-8 in the losses and ~3e-8 in the weights (only the
order of gradient sums differs); TP to ~3e-7 in the losses and up to 3e-6 in the weights (the
vocab-parallel loss and the split projections sum in another order, and AdamW's division by
sqrt(v) enlarges last-bit differences of near-zero gradients; over 10-20 steps that drift grows
past 1e-5, which is why the matrix runs 4 steps and the longer TP tests allow 1e-4); the EP x TP
rows to ~7e-7 in the weights.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers.composition import (MODELS, RESUME_STEP, ROWS, STEPS, overrides, ranks, row_name, rows_for,
                                 write_run_config)
from helpers.launch_helpers import in_background, launch, worker
from helpers.synthetic_data import write_pattern_corpus
from mfcore.checkpoint import CheckpointManager

pytestmark = [pytest.mark.dist, pytest.mark.timeout(3000)]

LOSS_RTOL = 1e-5
MODEL_REL_L2 = 1e-5
CASES = [(model, row_name(row)) for model in MODELS for row in rows_for(model)]


def _run(root: Path, model: str, out: str, extra=()):
    return {"config": str(root / f"{model}.yaml"), "overrides": [f"run.output_dir={root / model / out}", *extra]}


def _spec(root: Path, name: str, runs) -> str:
    path = root / f"{name}.json"
    path.write_text(json.dumps(runs))
    return str(path)


def _one_process(root: Path, name: str, runs):
    proc = subprocess.run([sys.executable, worker("composition_runs.py"), _spec(root, name, runs)], cwd=root,
                          capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """Every row trained (one launch per world size), the references and every resume; the root."""
    root = tmp_path_factory.mktemp("matrix")
    corpus = write_pattern_corpus(root / "syn_text_document")
    for model in MODELS:
        write_run_config(root / f"{model}.yaml", model, corpus, str(root / "cache"))
    single = [in_background(_one_process, root, "single", [_run(root, m, "single") for m in MODELS])]
    for world in sorted({ranks(row) for row in ROWS}):
        rows = [row for row in ROWS if ranks(row) == world]
        runs = [_run(root, m, row_name(row), overrides(row)) for m in MODELS for row in rows if row in rows_for(m)]
        job = launch(root, ["--nproc-per-node", str(world), "--script", worker("composition_runs.py")],
                     [_spec(root, f"world{world}", runs)], timeout=2400, name=f"logs_world{world}")
        assert job.returncode == 0, job.explain()
        resumes = [_run(root, m, f"{row_name(row)}-resumed", [f"checkpoint.resume={_step_dir(root, m, row)}"])
                   for m in MODELS for row in rows if row in rows_for(m)]
        single.append(in_background(_one_process, root, f"resume{world}", resumes))
    for future in single:
        future.result()
    return root


def _step_dir(root: Path, model: str, row, step=RESUME_STEP) -> Path:
    return root / model / row_name(row) / "checkpoints" / f"step_{step:08d}"


def _losses(out_dir: Path):
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r and "step" in r}


def _model_tensors(run_dir: Path):
    state = CheckpointManager(str(run_dir / "checkpoints")).load("auto")
    assert state.step == STEPS
    return {k: v for k, v in state.tensors.items() if k.startswith("model/")}


@pytest.mark.parametrize("model,layout", CASES)
def test_loss_curve_matches_one_process(matrix, model, layout):
    got, want = _losses(matrix / model / layout), _losses(matrix / model / "single")
    assert sorted(got) == sorted(want) == list(range(1, STEPS + 1))
    assert want[STEPS] < want[1]   # the run trains
    np.testing.assert_allclose([got[s] for s in want], [want[s] for s in want], rtol=LOSS_RTOL, atol=0)


@pytest.mark.parametrize("model,layout", CASES)
def test_final_weights_match_one_process(matrix, model, layout):
    got, want = _model_tensors(matrix / model / layout), _model_tensors(matrix / model / "single")
    assert set(got) == set(want)
    diff = norm = 0.0
    for name, w in want.items():
        assert got[name].shape == w.shape, name
        diff += float(np.sum((got[name].astype(np.float64) - w) ** 2))
        norm += float(np.sum(w.astype(np.float64) ** 2))
    rel = np.sqrt(diff / norm)
    print(f"{model} {layout}: final weights relative L2 {rel:.2e}")
    assert rel < MODEL_REL_L2, rel
    for name in [n for n in want if n.endswith("e_score_correction_bias")]:   # DeepSeek's routing biases:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)   # every token routed alike


def test_zero_inside_a_pipeline_stage_splits_moments_over_its_dp_pair(matrix):
    """PP2xDP2+ZeRO: layer 0 is on stage 0 (ranks 0 and 1), its Adam moments cut by rows between
    that stage's two DP ranks (as the shipped llama3-70b layout, PP x DP with ZeRO-1, needs)."""
    step = matrix / "llama3" / "PP2xDP2+ZeRO" / "checkpoints" / f"step_{STEPS:08d}"
    moment = json.loads((step / "index.json").read_text())["tensors"]["optimizer/model.layers.0.mlp.down_proj.weight.exp_avg"]
    assert [(sl["file"], sl["offsets"]) for sl in moment["slices"]] == [
        ("rank_00000.safetensors", [0, 0]), ("rank_00001.safetensors", [64, 0])]


@pytest.mark.parametrize("layout", ["PP2xEP2xDP2", "PP2xEP2xDP2+ZeRO"])
def test_experts_of_a_pipeline_stage_are_split_over_its_ep_pair(matrix, layout):
    """PP2xEP2xDP2: the MoE layer 1 is on stage 1 (ranks 2 and 3, its EP group): each holds half
    of the routed experts, written as rows of the global stack (with their moments); the dense
    layer 0's moments are on stage 0, cut between its DP pair under ZeRO-1."""
    step = matrix / "deepseek_v3" / layout / "checkpoints" / f"step_{STEPS:08d}"
    tensors = json.loads((step / "index.json").read_text())["tensors"]
    experts = "model.layers.1.mlp.experts.gate_proj.weight"
    for key in (f"model/{experts}", f"optimizer/{experts}.exp_avg"):
        assert [(sl["file"], sl["offsets"][0]) for sl in tensors[key]["slices"]] == [
            ("rank_00002.safetensors", 0), ("rank_00003.safetensors", 4)], key
    dense = tensors["optimizer/model.layers.0.mlp.down_proj.weight.exp_avg"]["slices"]
    assert [sl["file"] for sl in dense] == (["rank_00000.safetensors", "rank_00001.safetensors"]
                                            if layout.endswith("ZeRO") else ["rank_00000.safetensors"])


@pytest.mark.parametrize("model,layout", CASES)
def test_checkpoint_resumes_in_one_process_on_the_curve(matrix, model, layout):
    got, want = _losses(matrix / model / f"{layout}-resumed"), _losses(matrix / model / "single")
    assert sorted(got) == list(range(RESUME_STEP + 1, STEPS + 1))
    np.testing.assert_allclose([got[s] for s in sorted(got)], [want[s] for s in sorted(got)], rtol=LOSS_RTOL,
                               atol=0)
