"""Pipeline parallelism composed with tensor (+ sequence) parallelism: PP=2 x TP=2 on 4 loopback
ranks, Megatron's grid (TP innermost: ranks 0, 1 are stage 0, ranks 2, 3 stage 1). Every TP group
and every stage pair is a subgroup there, so each TP/SP collective and each point-to-point transfer
runs on GroupComm's AllReduce emulation.

The composition matrix (tests/dist/test_composition_dist.py, rows ``TP2xPP2`` and ``TP2xPP2+SP``)
trains both layouts for tiny Llama 3 and tiny DeepSeek-V3 (MoE, MTP on the last stage) against one
process. This module adds what the matrix does not check, in one msrun job
(tests/dist/workers/pipeline_tp_runs.py) of four-layer Llama runs:

- ``pptp_sp``: PP=2 x TP=2 + SP, fp32, with gradient clipping that bites;
- ``pptp_fp16``: the same in float16 with a dynamic loss scale that starts too high, so the first
  steps overflow: the overflow is decided across both stages and both TP ranks.

Each is checked against its one-process run (run in a background thread meanwhile): the loss curve
(fp32: 1e-5 per step), the global gradient norm (over stages AND TP ranks, shards summed,
replicated parameters counted once; the clipping threshold of 1.0 is crossed, so the clip
coefficient rides on it), the final weights under the same global names; and the PP x TP + SP
checkpoint resumes in one process on the one-process curve.

Tolerances: the first step's norm within 1e-6 (same weights, only the order of sums differs). After
that AdamW turns last-bit differences of near-zero gradients into whole update steps (see
test_equivalence_dist.py), so later norms are held to 1e-4 and the final weights to a relative L2
of 1e-5 over the whole model and 1e-4 per tensor (measured after 4 steps: worst tensor 1.5e-5).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers.launch_helpers import in_background, launch, worker
from helpers.synthetic_data import write_pattern_corpus
from mfcore.checkpoint import CheckpointManager

pytestmark = [pytest.mark.dist, pytest.mark.timeout(2400)]

STEPS, FP16_STEPS, LOSS_RTOL = 4, 6, 1e-5
FIRST_NORM_RTOL, NORM_RTOL, MODEL_REL_L2, PARAM_REL_L2 = 1e-6, 1e-4, 1e-5, 1e-4
LLAMA = ("model.overrides={vocab_size: 256, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 4, "
         "num_attention_heads: 4, num_key_value_heads: 2}")
PPTP = ["parallel.pipeline=2", "parallel.tensor=2"]
SP = ["parallel.sequence_parallel=true"]
# float16 overflows at scales of 2**20 and more on this data (2**19 trains): three skipped steps
FP16 = ["precision.compute_dtype=float16", "precision.loss_scale=dynamic", "precision.initial_loss_scale=4194304"]


def _overrides(workdir: Path, out: str, steps=STEPS, overrides=LLAMA):
    return [overrides, f"data.prefixes=[{workdir / 'syn_text_document'}]", f"data.cache_dir={workdir / 'cache'}",
            f"run.output_dir={workdir / out}", "data.seq_length=32", "training.global_batch_size=16",
            "training.micro_batch_size=4", f"training.train_steps={steps}", "schedule.warmup_steps=2",
            "optimizer.lr=3e-3", "optimizer.clip_grad=1.0", "training.eval_interval=0", "logging.log_interval=1",
            "logging.progress_bar=never", "run.deterministic=true", "precision.compute_dtype=float32",
            "checkpoint.resume=none", "checkpoint.save_interval=2", "checkpoint.keep_last_n=10"]


# name -> (config, overrides) for the job; the one-process reference of each is REFERENCE[name]
RUNS = {
    "pptp_sp": ("tiny-llama3", dict(), PPTP + SP),
    "pptp_fp16": ("tiny-llama3", dict(steps=FP16_STEPS), PPTP + SP + FP16),
}
REFERENCE = {"pptp_sp": "single", "pptp_fp16": "single_fp16"}
SINGLE = {"single": ("tiny-llama3", dict(), []), "single_fp16": ("tiny-llama3", dict(steps=FP16_STEPS), FP16)}


def _records(out_dir: Path):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _per_step(out_dir: Path, key: str):
    return {r["step"]: r[key] for r in _records(out_dir) if "loss" in r and "step" in r}


def _train_alone(workdir: Path, config: str, args):
    proc = subprocess.run([sys.executable, "-m", "mfcore.cli.train", "--config", config, *args], cwd=workdir,
                          capture_output=True, text=True, timeout=1500, env={**os.environ, "GLOG_v": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]


def _references(workdir: Path):
    for name, (config, kw, extra) in SINGLE.items():
        _train_alone(workdir, config, [*_overrides(workdir, name, **kw), *extra])


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """The shared 4-rank job and the one-process references (trained in a thread meanwhile)."""
    workdir = tmp_path_factory.mktemp("pipeline_tp")
    write_pattern_corpus(workdir / "syn_text_document")
    references = in_background(_references, workdir)
    runs = {name: [config, [*_overrides(workdir, name, **kw), *extra]] for name, (config, kw, extra) in RUNS.items()}
    (workdir / "runs.json").write_text(json.dumps(runs))
    result = launch(workdir, ["--nproc-per-node", "4", "--script", worker("pipeline_tp_runs.py")],
                    [str(workdir / "runs.json")], timeout=2000)
    assert result.returncode == 0, result.explain()
    references.result()
    return workdir


def _assert_close(got: dict, want: dict, rtol: float):
    assert sorted(got) == sorted(want)
    steps = sorted(got)
    np.testing.assert_allclose([got[s] for s in steps], [want[s] for s in steps], rtol=rtol, atol=0)


def _final_weights(out_dir: Path):
    state = CheckpointManager(str(out_dir / "checkpoints")).load("auto")
    return {name: np.asarray(t, np.float64) for name, t in state.tensors.items() if name.startswith("model/")}


def _assert_same_weights(got: dict, want: dict):
    assert set(got) == set(want)   # the same global (HF) names, nothing added by wrappers
    diff = norm = 0.0
    for name in want:
        err = np.linalg.norm(got[name] - want[name]) / max(np.linalg.norm(want[name]), 1e-12)
        assert err < PARAM_REL_L2, (name, err)
        diff += float(np.sum((got[name] - want[name]) ** 2))
        norm += float(np.sum(want[name] ** 2))
    assert np.sqrt(diff / norm) < MODEL_REL_L2, np.sqrt(diff / norm)


@pytest.mark.parametrize("run", ["pptp_sp"])
def test_pp2_tp2_reproduces_one_process_curve_norms_and_weights(job, run):
    single = job / REFERENCE[run]
    losses = _per_step(job / run, "loss")
    assert sorted(losses) == list(range(1, STEPS + 1))
    _assert_close(losses, _per_step(single, "loss"), LOSS_RTOL)
    norms, want = _per_step(job / run, "grad_norm"), _per_step(single, "grad_norm")
    np.testing.assert_allclose(norms[1], want[1], rtol=FIRST_NORM_RTOL)
    _assert_close(norms, want, NORM_RTOL)
    assert max(norms.values()) > 1.0   # optimizer.clip_grad=1.0 clipped: the coefficient used the norm
    _assert_same_weights(_final_weights(job / run), _final_weights(single))
    assert len(_records(job / run)[-1]["pipeline_bubble"]) == 2


def test_pp2_tp2_checkpoint_holds_tp_halves_of_each_stage(job):
    index = json.loads((job / "pptp_sp" / "checkpoints" / "step_00000002" / "index.json").read_text())
    assert index["world_size"] == 4

    def writers(name):
        return sorted((s["file"], s["offsets"]) for s in index["tensors"][name]["slices"])
    # layer 0 on stage 0 (ranks 0, 1), layer 3 on stage 1 (ranks 2, 3); q_proj split by its heads
    assert writers("model/model.layers.0.self_attn.q_proj.weight") == [
        ("rank_00000.safetensors", [0, 0]), ("rank_00001.safetensors", [0, 32])]
    assert writers("model/model.layers.3.self_attn.q_proj.weight") == [
        ("rank_00002.safetensors", [0, 0]), ("rank_00003.safetensors", [0, 32])]
    assert writers("model/model.layers.3.input_layernorm.weight") == [("rank_00002.safetensors", [0])]


def test_pp2_tp2_sp_checkpoint_resumes_in_one_process_on_the_same_curve(job):
    step2 = job / "pptp_sp" / "checkpoints" / "step_00000002"
    _train_alone(job, "tiny-llama3", [*_overrides(job, "resumed"), f"checkpoint.resume={step2}"])
    resumed = _per_step(job / "resumed", "loss")
    assert sorted(resumed) == list(range(3, STEPS + 1))
    _assert_close(resumed, {s: v for s, v in _per_step(job / "single", "loss").items() if s > 2}, LOSS_RTOL)


def test_fp16_overflow_is_decided_across_stages_and_tp_ranks(job):
    """The same steps are skipped with the same loss scales as in one process; the applied steps
    follow its curve to float16 rounding (the TP halves round their partial products apart)."""
    got, want = job / "pptp_fp16", job / "single_fp16"
    for key in ("skipped", "loss_scale"):
        assert _per_step(got, key) == _per_step(want, key), key
    skipped = _per_step(want, "skipped")
    assert 0 < sum(1 for v in skipped.values() if v) < FP16_STEPS   # some overflowed, some trained
    _assert_close(_per_step(got, "loss"), _per_step(want, "loss"), 2e-3)
    applied = [s for s, v in skipped.items() if not v]
    norms = [_per_step(d, "grad_norm") for d in (got, want)]
    np.testing.assert_allclose([norms[0][s] for s in applied], [norms[1][s] for s in applied], rtol=1e-2)
    assert all(not np.isfinite(norms[0][s]) for s, v in skipped.items() if v)
