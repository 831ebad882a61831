"""The composition matrix (issue 18): every layout of ``helpers.composition.ROWS`` (DP, TP, SP,
ZeRO-1, PP and EP on 2 ranks, and their 4-rank mixes, EP inside pipeline stages and EP over TP x DP
ranks with SP among them) trains tiny Llama 3 and tiny DeepSeek-V3 through
mf-train (real data pipeline, checkpoints) as one process does: the loss curve, the final weights,
the layout's step-2 checkpoint (every tensor, optimizer moments included, and the trainer state:
schedule, loss scaler, data position, RNG) against the one-process run's, and for the rows of
``helpers.composition.RESUMED`` that checkpoint resumed in one process continuing on the
one-process curve.

Why not a resume per row: a one-process resume loads the checkpoint's global tensors and trainer
state (:meth:`CheckpointManager.load`, the same assembly of saved slices these tests read) into the
one-process run, so a checkpoint equal to the one-process run's step-2 checkpoint resumes as the
one-process run does. What a resume adds is the path through the trainer; ``RESUMED`` takes it
for every way the matrix cuts the state (TP, ZeRO-1 over DP, PP, EP over 2 and 4 ranks, mixed),
at 9 one-process compiles instead of 35 (~5 min of a core).

Jobs: one msrun launch per world size trains every row of that size for both models one after the
other (tests/dist/workers/composition_runs.py: ~15 s of msrun start-up and cluster build per
launch instead of per layout); the one-process references run in a background process at the start,
the resumes of the 4-rank launch's checkpoints during the 2-rank launch (the 4-rank one runs first,
so nothing one-process is left to run after the last launch).

Tolerances (fp32, 4 AdamW steps): losses within 1e-5 relative per step, the final weights, and the
step-2 weights and Adam moments, within 1e-5 relative L2 over the whole model (each kind of
moment over all its tensors), DeepSeek's routing biases bitwise equal. Measured
(2026-12-03): DP, ZeRO-1 and PP agree to ~2e-8 in the losses and ~3e-8 in the weights (only the
order of gradient sums differs); TP to ~3e-7 in the losses and up to 3e-6 in the weights (the
vocab-parallel loss and the split projections sum in another order, and AdamW's division by
sqrt(v) enlarges last-bit differences of near-zero gradients; over 10-20 steps that drift grows
past 1e-5, which is why the matrix runs 4 steps and the longer TP tests allow 1e-4); the EP x TP
rows to ~7e-7 in the weights. The step-2 moments: ~2e-7 (DP, PP, EP), up to ~3e-6 with TP.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers.composition import (MODELS, RESUME_STEP, RESUMED, ROWS, STEPS, overrides, ranks, row_name,
                                 rows_for, write_run_config)
from helpers.checkpoint_state import assert_routing_biases_equal, assert_same_state, load_step, relative_l2
from helpers.launch_helpers import in_background, launch, worker
from helpers.synthetic_data import write_pattern_corpus
from mfcore.checkpoint import CheckpointManager

pytestmark = [pytest.mark.dist, pytest.mark.timeout(3000)]

LOSS_RTOL = 1e-5
MODEL_REL_L2, PARAM_REL_L2 = 1e-5, 1e-4
FIRST_NORM_RTOL, NORM_RTOL = 1e-6, 1e-4
CASES = [(model, row_name(row)) for model in MODELS for row in rows_for(model)]
RESUMED_CASES = [(model, row_name(row)) for model in MODELS for row in rows_for(model) if row in RESUMED]


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
    """Every row trained (one launch per world size, the largest first), the references and the
    resumes of ``RESUMED``; the root."""
    root = tmp_path_factory.mktemp("matrix")
    corpus = write_pattern_corpus(root / "syn_text_document")
    for model in MODELS:
        write_run_config(root / f"{model}.yaml", model, corpus, str(root / "cache"))
    background = [in_background(_one_process, root, "single", [_run(root, m, "single") for m in MODELS])]
    for world in sorted({ranks(row) for row in ROWS}, reverse=True):
        rows = [row for row in ROWS if ranks(row) == world]
        runs = [_run(root, m, row_name(row), overrides(row)) for m in MODELS for row in rows if row in rows_for(m)]
        job = launch(root, ["--nproc-per-node", str(world), "--script", worker("composition_runs.py")],
                     [_spec(root, f"world{world}", runs)], timeout=2400, name=f"logs_world{world}")
        assert job.returncode == 0, job.explain()
        resumes = [_run(root, m, f"{row_name(row)}-resumed", [f"checkpoint.resume={_step_dir(root, m, row)}"])
                   for m in MODELS for row in rows if row in rows_for(m) and row in RESUMED]
        if resumes:
            background.append(in_background(_one_process, root, f"resume{world}", resumes))
    for future in background:
        future.result()
    return root


def _step_dir(root: Path, model: str, row, step=RESUME_STEP) -> Path:
    return root / model / row_name(row) / "checkpoints" / f"step_{step:08d}"


def _records(out_dir: Path):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _per_step(out_dir: Path, key: str):
    return {r["step"]: r[key] for r in _records(out_dir) if "loss" in r and "step" in r}


def _losses(out_dir: Path):
    return _per_step(out_dir, "loss")


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
    rel = relative_l2(got, want, want)
    print(f"{model} {layout}: final weights relative L2 {rel:.2e}")
    assert rel < MODEL_REL_L2, rel
    for name in want:   # and no tensor far off (measured: worst 1.8e-5, TP's lm_head)
        assert relative_l2(got, want, [name]) < PARAM_REL_L2, name
    assert_routing_biases_equal(got, want)


@pytest.mark.parametrize("model,layout", CASES)
def test_grad_norms_match_one_process(matrix, model, layout):
    """The global gradient norm (over DP, TP, PP and EP ranks: shards summed, replicated parameters
    counted once): the first step within FIRST_NORM_RTOL (same weights, only the order of sums
    differs), later ones within NORM_RTOL (measured: up to 2e-7 and 1.4e-6). The norms exceed
    ``optimizer.clip_grad`` (1.0), so every step's update was scaled by a clip coefficient made
    from them."""
    got, want = _per_step(matrix / model / layout, "grad_norm"), _per_step(matrix / model / "single", "grad_norm")
    assert sorted(got) == sorted(want) == list(range(1, STEPS + 1))
    np.testing.assert_allclose(got[1], want[1], rtol=FIRST_NORM_RTOL)
    np.testing.assert_allclose([got[s] for s in want], [want[s] for s in want], rtol=NORM_RTOL, atol=0)
    assert min(want.values()) > 1.0


@pytest.mark.parametrize("model,layout", [(m, name) for m, name in CASES if "PP2" in name])
def test_pipeline_rows_log_every_stages_bubble(matrix, model, layout):
    bubble = _records(matrix / model / layout)[-1]["pipeline_bubble"]
    assert len(bubble) == 2 and all(0.0 <= share < 1.0 for share in bubble), bubble


# a query projection of each model (Llama's q_proj, MLA's q_b_proj: columns split by heads) and its width
QUERY = {"llama3": ("self_attn.q_proj.weight", 64), "deepseek_v3": ("self_attn.q_b_proj.weight", 192)}


@pytest.mark.parametrize("model", list(MODELS))
def test_tp_inside_pipeline_stages_splits_each_stages_layers(matrix, model):
    """TP2xPP2+SP (Megatron's grid, TP innermost): layer 0 on stage 0 (ranks 0, 1), layer 1 on
    stage 1 (ranks 2, 3), each layer's query projection cut in halves between its stage's TP pair;
    a norm weight written once, by its stage's first rank."""
    step = matrix / model / "TP2xPP2+SP" / "checkpoints" / f"step_{RESUME_STEP:08d}"
    index = json.loads((step / "index.json").read_text())
    assert index["world_size"] == 4

    def writers(name):
        return sorted((s["file"], s["offsets"]) for s in index["tensors"][f"model/model.{name}"]["slices"])
    query, width = QUERY[model]
    for layer, (first, second) in enumerate([(0, 1), (2, 3)]):
        assert writers(f"layers.{layer}.{query}") == [
            (f"rank_{first:05d}.safetensors", [0, 0]), (f"rank_{second:05d}.safetensors", [0, width // 2])]
        assert writers(f"layers.{layer}.input_layernorm.weight") == [(f"rank_{first:05d}.safetensors", [0])]


@pytest.mark.parametrize("model,layout", CASES)
def test_step2_checkpoint_holds_the_one_process_state(matrix, model, layout):
    """What a one-process resume of the layout's step-2 checkpoint would load (the global tensors
    and the trainer state) is the one-process run's step-2 state: weights and each kind of Adam
    moment within MODEL_REL_L2, integers (Adam's step) and routing biases equal, the trainer state
    equal but for the run's own config (output dir, layout)."""
    got, want = load_step(matrix / model / layout, RESUME_STEP), load_step(matrix / model / "single", RESUME_STEP)
    assert got.step == RESUME_STEP
    assert_same_state(got, want, MODEL_REL_L2, LOSS_RTOL, f"{model} {layout}:")
    assert got.trainer_state["config"] != want.trainer_state["config"]   # its own output dir and layout


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


@pytest.mark.parametrize("model,layout", RESUMED_CASES)
def test_checkpoint_resumes_in_one_process_on_the_curve(matrix, model, layout):
    got, want = _losses(matrix / model / f"{layout}-resumed"), _losses(matrix / model / "single")
    assert sorted(got) == list(range(RESUME_STEP + 1, STEPS + 1))
    np.testing.assert_allclose([got[s] for s in sorted(got)], [want[s] for s in sorted(got)], rtol=LOSS_RTOL,
                               atol=0)
