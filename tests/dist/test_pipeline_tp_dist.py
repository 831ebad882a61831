"""Pipeline parallelism composed with tensor (+ sequence) parallelism: PP=2 x TP=2 on 4 loopback
ranks, Megatron's grid (TP innermost: ranks 0, 1 are stage 0, ranks 2, 3 stage 1). Every TP group
and every stage pair is a subgroup there, so each TP/SP collective and each point-to-point transfer
runs on GroupComm's AllReduce emulation.

The composition matrix (tests/dist/test_composition_dist.py, rows ``TP2xPP2`` and ``TP2xPP2+SP``)
trains both layouts in fp32 for tiny Llama 3 and tiny DeepSeek-V3 (MoE, MTP on the last stage)
against one process: loss curve, global gradient norm (over stages AND TP ranks, shards summed,
replicated parameters counted once; the clipping threshold of 1.0 is crossed, so the clip
coefficient rides on it), final weights (whole model and per tensor), the stage bubble records,
which ranks write which TP halves of each stage's layers, the step-2 state, and the PP x TP + SP
checkpoint resumed in one process. This module adds what the matrix does not check, in one msrun
job (tests/dist/workers/pipeline_tp_runs.py) of a four-layer Llama (two layers per stage):

- ``pptp_fp16``: PP=2 x TP=2 + SP in float16 with a dynamic loss scale that starts too high, so
  the first steps overflow: the overflow is decided across both stages and both TP ranks, the
  same steps are skipped as in one process (run in a background thread meanwhile).
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

pytestmark = [pytest.mark.dist, pytest.mark.timeout(2400)]

FP16_STEPS = 6
LLAMA = ("model.overrides={vocab_size: 256, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 4, "
         "num_attention_heads: 4, num_key_value_heads: 2}")
PPTP = ["parallel.pipeline=2", "parallel.tensor=2"]
SP = ["parallel.sequence_parallel=true"]
# float16 overflows at scales of 2**20 and more on this data (2**19 trains): three skipped steps
FP16 = ["precision.compute_dtype=float16", "precision.loss_scale=dynamic", "precision.initial_loss_scale=4194304"]


def _overrides(workdir: Path, out: str, steps=FP16_STEPS, overrides=LLAMA):
    return [overrides, f"data.prefixes=[{workdir / 'syn_text_document'}]", f"data.cache_dir={workdir / 'cache'}",
            f"run.output_dir={workdir / out}", "data.seq_length=32", "training.global_batch_size=16",
            "training.micro_batch_size=4", f"training.train_steps={steps}", "schedule.warmup_steps=2",
            "optimizer.lr=3e-3", "optimizer.clip_grad=1.0", "training.eval_interval=0", "logging.log_interval=1",
            "logging.progress_bar=never", "run.deterministic=true", "precision.compute_dtype=float32",
            "checkpoint.resume=none", "checkpoint.save_interval=2", "checkpoint.keep_last_n=10"]


# name -> (config, overrides) for the job, and its one-process reference
RUNS = {"pptp_fp16": ("tiny-llama3", dict(steps=FP16_STEPS), PPTP + SP + FP16)}
SINGLE = {"single_fp16": ("tiny-llama3", dict(steps=FP16_STEPS), FP16)}


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
