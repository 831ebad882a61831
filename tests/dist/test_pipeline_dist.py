"""Pipeline parallelism on loopback msrun jobs reproduces the one-process fp32 loss curves (1e-5
per step; the issue asks for 20 steps, these runs take 24 / 6 to keep the module's wall time
down on 2 shared cores):

- tiny Llama 3, PP=2 with 1F1B over 4 micro batches (24 steps), and its step-8 checkpoint resumed
  in one process (global parameter names: the stage files hold disjoint layers), and the
  one-process run's step-8 checkpoint resumed at PP=2;
- interleaved PP=2 x V=2 (virtual stages) of the same run, SIGTERMed on its last stage once
  running: both stages stop after the same step, the checkpoint holds both ranks' files, and the
  steps it logged follow the one-process curve;
- tiny DeepSeek-V3 at PP=2 (MTP on the last stage) and the 4-rank PP=2 x DP=2 jobs (with and
  without ZeRO-1; the pair groups are subgroups there, so point-to-point is the AllReduce
  emulation) are rows of the composition matrix, tests/dist/test_composition_dist.py, for both
  models;
- Llama with tied embeddings, PP=2 (6 steps, validation every 3): the two stages' copies of the
  table stay in sync, and the pipelined validation loss equals the one-process one.

Each one-process reference runs in a background thread while an msrun job runs.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers.launch_helpers import free_port, in_background, launch

from helpers.synthetic_data import write_pattern_corpus

pytestmark = [pytest.mark.dist, pytest.mark.timeout(1500)]

STEPS, LOSS_RTOL = 24, 1e-5
LLAMA = ("model.overrides={vocab_size: 256, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 4, "
         "num_attention_heads: 4, num_key_value_heads: 2}")


def _args(workdir: Path, out: str, steps=STEPS, model="tiny-llama3", overrides=LLAMA):
    return ["--config", model, overrides, f"data.prefixes=[{workdir / 'syn_text_document'}]",
            f"data.cache_dir={workdir / 'cache'}", f"run.output_dir={workdir / out}", "data.seq_length=32",
            "training.global_batch_size=16", "training.micro_batch_size=4", f"training.train_steps={steps}",
            "schedule.warmup_steps=2", "optimizer.lr=3e-3", "training.eval_interval=0", "logging.log_interval=1",
            "logging.progress_bar=never", "run.deterministic=true", "precision.compute_dtype=float32",
            "checkpoint.resume=none", "checkpoint.save_interval=4", "checkpoint.keep_last_n=10"]


def _records(out_dir: Path):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _losses(out_dir: Path):
    return {r["step"]: r["loss"] for r in _records(out_dir) if "loss" in r and "step" in r}


def _single(workdir: Path, out: str, *extra, **kw):
    proc = subprocess.run([sys.executable, "-m", "mfcore.cli.train", *_args(workdir, out, **kw), *extra],
                          cwd=workdir, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "GLOG_v": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _losses(workdir / out)


def _assert_same_curve(got: dict, want: dict):
    steps = sorted(got)
    assert steps and all(s in want for s in steps)
    np.testing.assert_allclose([got[s] for s in steps], [want[s] for s in steps], rtol=LOSS_RTOL, atol=0)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("pipeline")
    write_pattern_corpus(path / "syn_text_document")
    return path


@pytest.fixture(scope="module")
def single_started(workdir):
    return in_background(_single, workdir, "single")


@pytest.fixture(scope="module")
def pp2_run(workdir, single_started):
    job = launch(workdir, ["--nproc-per-node", "2"], [*_args(workdir, "pp2"), "parallel.pipeline=2"],
                 timeout=900, name="logs_pp2")
    assert job.returncode == 0, job.explain()
    return _losses(workdir / "pp2")


def test_pp2_one_f_one_b_reproduces_one_process(pp2_run, single_started, workdir):
    single = single_started.result()
    assert sorted(pp2_run) == list(range(1, STEPS + 1)) and single[STEPS] < single[1] - 0.5
    _assert_same_curve(pp2_run, single)
    record = _records(workdir / "pp2")[-1]
    assert len(record["pipeline_bubble"]) == 2 and all(0 <= b < 1 for b in record["pipeline_bubble"])
    assert record["pipeline_bubble_theory"] == pytest.approx(1 / 5, abs=1e-4)  # (P-1)/(m+P-1), m=4


def test_pp2_checkpoint_has_global_names_and_resumes_in_one_process(pp2_run, single_started, workdir):
    step8 = workdir / "pp2" / "checkpoints" / "step_00000008"
    index = json.loads((step8 / "index.json").read_text())
    assert sorted(f["rank"] for f in index["files"].values()) == [0, 1]
    names = set(index["tensors"])
    for i in range(4):
        assert f"model/model.layers.{i}.mlp.down_proj.weight" in names
    assert {"model/model.embed_tokens.weight", "model/lm_head.weight", "model/model.norm.weight"} <= names
    resumed = _single(workdir, "resumed", f"checkpoint.resume={step8}")
    assert sorted(resumed) == list(range(9, STEPS + 1))
    _assert_same_curve(resumed, single_started.result())


def _pids_of(marker: str):
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        if entry.isdigit() and "mfcore.cli.train" in cmd and marker in cmd and "msrun" not in cmd:
            pids.append(int(entry))
    return sorted(pids)


@pytest.fixture(scope="module")
def interleaved_sigterm(workdir, pp2_run):
    """PP=2 x V=2, 24 steps; SIGTERM to the last stage's process once step 2 is logged."""
    out = workdir / "v2"
    argv = [sys.executable, "-m", "mfcore.cli.launch", "--nproc-per-node", "2", "--master-port", str(free_port()),
            "--log-dir", str(workdir / "logs_v2"), "--cluster-timeout", "60", "--",
            *_args(workdir, "v2"), "parallel.pipeline=2", "parallel.virtual_stages=2"]
    proc = subprocess.Popen(argv, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "GLOG_v": "3"})
    deadline = time.monotonic() + 900
    while not (out / "metrics.jsonl").exists() or len(_losses(out)) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    os.kill(_pids_of(str(out))[-1], signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=600)
    return out, proc.returncode, stdout + stderr


def test_interleaved_reproduces_one_process_and_sigterm_stops_both_stages(interleaved_sigterm, single_started,
                                                                          workdir):
    out, returncode, output = interleaved_sigterm
    losses = _losses(out)
    last = max(losses)
    assert returncode != 0, output[-3000:]   # a stopped run exits "resume me" (75), not 0
    assert sorted(losses) == list(range(1, last + 1)) and last < STEPS, "the signal came too late"
    _assert_same_curve(losses, single_started.result())
    logs = [(workdir / "logs_v2" / f"worker_{r}.log").read_text() for r in (0, 1)]
    assert f"stopped at step {last} (another rank)" in logs[0], logs[0][-2000:]  # rank 0 speaks for the job
    assert f"stopped by SIGTERM after step {last}" in logs[1], logs[1][-2000:]   # the signalled stage
    # both stages saved that step (rank 0 commits the index only after every rank's file is written)
    index = json.loads((out / "checkpoints" / f"step_{last:08d}" / "index.json").read_text())
    assert sorted(f["rank"] for f in index["files"].values()) == [0, 1]
    assert "model/model.layers.3.mlp.down_proj.weight" in index["tensors"]
    assert _records(out)[-1]["pipeline_bubble_theory"] == pytest.approx(1 / 5 / 2, abs=1e-4)


def test_tied_embeddings_pp2_reproduce_one_process(workdir):
    """Llama with a tied head: the first stage embeds, the last stage's head uses its own copy of
    the table; the two copies' gradients are summed over the two stages (as Megatron does), so
    both apply the one-process update and the curve follows the one-process run's."""
    tied = LLAMA.replace("}", ", tie_word_embeddings: true}")
    kw = dict(steps=6, overrides=tied)
    evals = ("training.eval_interval=3", "training.eval_steps=1")   # pipelined evaluation too
    single = in_background(_single, workdir, "tied_single", *evals, **kw)
    job = launch(workdir, ["--nproc-per-node", "2"],
                 [*_args(workdir, "tied_pp2", **kw), "parallel.pipeline=2", *evals],
                 timeout=900, name="logs_tied_pp2")
    assert job.returncode == 0, job.explain()
    got = _losses(workdir / "tied_pp2")
    assert sorted(got) == list(range(1, 7))
    _assert_same_curve(got, single.result())
    valid = [[r for r in _records(workdir / out) if "valid_loss" in r] for out in ("tied_pp2", "tied_single")]
    assert [r["step"] for r in valid[0]] == [3, 6] == [r["step"] for r in valid[1]]
    np.testing.assert_allclose([r["valid_loss"] for r in valid[0]], [r["valid_loss"] for r in valid[1]],
                               rtol=LOSS_RTOL)
    index = json.loads((workdir / "tied_pp2" / "checkpoints" / "step_00000006" / "index.json").read_text())
    assert "model/lm_head.weight" not in index["tensors"]
    slices = index["tensors"]["model/model.embed_tokens.weight"]["slices"]   # written once, by stage 0
    assert [s["file"] for s in slices] == ["rank_00000.safetensors"]


def test_one_process_checkpoint_resumes_at_pp2(workdir, single_started):
    """The reverse of the PP=2 -> one-process resume: the one-process run's step-8 checkpoint
    (whole model in one file) continues at PP=2 on the one-process curve."""
    single = single_started.result()
    step8 = workdir / "single" / "checkpoints" / "step_00000008"
    job = launch(workdir, ["--nproc-per-node", "2"],
                 [*_args(workdir, "pp2_resumed"), "parallel.pipeline=2", f"checkpoint.resume={step8}"],
                 timeout=900, name="logs_pp2_resumed")
    assert job.returncode == 0, job.explain()
    resumed = _losses(workdir / "pp2_resumed")
    assert sorted(resumed) == list(range(9, STEPS + 1))
    _assert_same_curve(resumed, single)
