"""Checkpoints under data parallelism, through mf-launch/msrun and mf-train:

- DP=2 run saving every 2 steps, both ranks taking part in every save; its loss curve equals a
  one-process mf-train run of the same config (the user's `mf-launch --nproc-per-node 2 -- --config`
  path; TP=2 is compared the same way in test_mf_train_dist.py);
- a DP=2 job whose rank is killed mid-run is restarted by mf-launch --max-restarts, resumes from the
  newest checkpoint and ends with bit-identical losses and weights (one job proves both the restart
  and the exact DP=2 resume; ``--resume PATH`` itself is exercised by the one-process resumes below);
- the DP=2 checkpoint resumed in one process (DP=1: a reshard, optimizer state included) continues
  the same curve (to the 1e-5 the equivalence tests use: sums are ordered differently);
- ZeRO-1 (DP=2) checkpoint (moments cut by rows over DP) resumed without ZeRO at DP=1 likewise;
- SIGTERM on one rank stops both after the same step, with a final checkpoint.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from helpers.launch_helpers import free_port, in_background, launch
from mfcore.checkpoint import CheckpointManager
from mfcore.data import IndexedDatasetBuilder

pytestmark = [pytest.mark.dist, pytest.mark.timeout(900)]

# 40 steps: the signal tests need a run that is still going when the signal lands (a step takes
# ~20 ms); the checkpoint every 2 steps and keep_last_n 20 keep every even step.
STEPS, LOSS_RTOL = 40, 1e-5


def _write_run(tmp, **parallel):
    rng = np.random.default_rng(0)
    builder = IndexedDatasetBuilder(str(tmp / "corpus"), np.uint16)
    for _ in range(60):
        builder.add_document(rng.integers(1, 250, int(rng.integers(20, 80))).astype(np.uint16))
    builder.finalize()
    run = {"run": {"name": "dist-ckpt", "seed": 3},
           "model": {"name": "tiny-llama3", "overrides": {
               "vocab_size": 256, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
               "num_attention_heads": 2, "num_key_value_heads": 1}},
           "data": {"prefixes": [str(tmp / "corpus")], "split": "100,0,0", "seq_length": 16,
                    "eod_id": 0, "num_workers": 1, "cache_dir": str(tmp / "cache")},
           "training": {"global_batch_size": 4, "micro_batch_size": 2, "train_steps": STEPS},
           "optimizer": {"lr": 0.01}, "schedule": {"name": "cosine", "warmup_steps": 1},
           "parallel": {"data": 2, **parallel},
           "checkpoint": {"save_interval": 2, "keep_last_n": STEPS // 2},
           "logging": {"log_interval": 1, "tensorboard": False, "progress_bar": "never"}}
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    return path


def _losses(out):
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _train(cwd, config, out, nproc, *extra, name):
    """mf-train on ``nproc`` ranks through mf-launch, or (1) as one plain process."""
    args = ["--config", str(config), f"run.output_dir={out}"]
    if nproc == 1:
        args += ["parallel.data=1", "parallel.optimizer_sharding=false"]
        proc = subprocess.run([sys.executable, "-m", "mfcore.cli.train", *args, *extra], cwd=cwd,
                              capture_output=True, text=True, timeout=600, env={**os.environ, "GLOG_v": "3"})
        assert proc.returncode == 0, proc.stderr[-3000:]
    else:
        job = launch(cwd, ["--nproc-per-node", str(nproc)], [*args, *extra], timeout=600, name=name)
        assert job.returncode == 0, job.explain()
    return _losses(out)


@pytest.fixture(scope="module")
def run_config(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("dp2")
    return cwd, _write_run(cwd)


@pytest.fixture(scope="module")
def single_started(run_config):
    """The one-process run of the config, started before (and overlapping) dp2_run's launch."""
    cwd, config = run_config
    return in_background(_train, cwd, config, cwd / "single", 1, name="logs_single")


@pytest.fixture(scope="module")
def dp2_run(run_config, single_started):
    cwd, config = run_config
    losses = _train(cwd, config, cwd / "a", 2, name="logs_a")
    assert sorted(losses) == list(range(1, STEPS + 1))
    return cwd, config, losses


@pytest.fixture(scope="module")
def single_run(single_started):
    return single_started.result()


def test_mf_launch_dp2_matches_one_process(dp2_run, single_run):
    cwd, _, losses = dp2_run
    assert sorted(single_run) == list(range(1, STEPS + 1))
    assert [losses[s] for s in sorted(losses)] == pytest.approx([single_run[s] for s in sorted(single_run)], rel=1e-5)
    assert (cwd / "logs_a" / "worker_1.log").exists()  # every rank's log is kept


def test_dp2_checkpoints_hold_both_ranks(dp2_run):
    cwd, _, _ = dp2_run
    root = cwd / "a" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest"] + [f"step_{s:08d}" for s in range(2, STEPS + 1, 2)]
    index = json.loads((root / "step_00000002" / "index.json").read_text())
    assert index["world_size"] == 2  # both ranks wrote (rank 1 nothing: everything is replicated)


def _pids_of(marker: str):
    """Processes running mf-train whose command line mentions ``marker`` (the run's output dir)."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        if entry.isdigit() and "mfcore.cli.train" in cmd and marker in cmd and "msrun" not in cmd:
            pids.append(int(entry))
    return pids


def _start_job(tmp_path, config, out, launch_flags=(), train_flags=()):
    """mf-launch on 2 ranks in the background (the test signals its ranks while it runs)."""
    argv = [sys.executable, "-m", "mfcore.cli.launch", "--nproc-per-node", "2", *launch_flags,
            "--master-port", str(free_port()), "--log-dir", str(tmp_path / "logs"), "--cluster-timeout", "60",
            "--", "--config", str(config), f"run.output_dir={out}", *train_flags]
    return subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "GLOG_v": "3"})


def _wait_for_steps(proc, out, steps: int) -> None:
    deadline = time.monotonic() + 600
    while not (out / "metrics.jsonl").exists() or len(_losses(out)) < steps:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)


@pytest.fixture(scope="module")
def background(tmp_path_factory, dp2_run):
    """What runs while the restart job (below) runs in the foreground: the one-process resume of
    dp2_run's step 2, and the SIGTERM job with its one-process resume. A launch keeps the cores busy
    only part of the time."""
    cwd, config, _ = dp2_run
    step2 = cwd / "a" / "checkpoints" / "step_00000002"
    return {"resume_c": in_background(_train, cwd, config, cwd / "c", 1, "--resume", str(step2), name="logs_c"),
            "sigterm": in_background(_sigterm_zero1_job, tmp_path_factory.mktemp("sigterm"))}


@pytest.fixture(scope="module")
def restarted_run(tmp_path_factory, dp2_run, background):
    """dp2_run's job with a checkpoint every step, its training process SIGKILLed after step 2 is
    logged, under mf-launch --max-restarts 2: (rank 0's log of the last attempt, stderr, output dir)."""
    _, config, _ = dp2_run
    cwd = tmp_path_factory.mktemp("restart")
    out = cwd / "r"
    proc = _start_job(cwd, config, out, ["--max-restarts", "2"], ["checkpoint.save_interval=1"])
    _wait_for_steps(proc, out, 2)
    victims = _pids_of(str(out))
    assert victims
    os.kill(victims[-1], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-3000:]
    return (cwd / "logs" / "worker_0.log").read_text(errors="replace"), stderr, out


def test_max_restarts_recovers_a_killed_rank(restarted_run, dp2_run):
    """SIGKILL the training process mid-run: mf-launch restarts the job, which resumes from the
    newest checkpoint and finishes with the straight run's losses."""
    _, stderr, out = restarted_run
    assert "restart 1 of 2, resuming from the newest valid checkpoint" in stderr
    assert _losses(out) == dp2_run[2]  # the last record of every step, after the resume
    final = CheckpointManager(out / "checkpoints").load("auto")
    assert final.step == STEPS and final.trainer_state["consumed_samples"] == 4 * STEPS


def test_dp2_resume_is_bit_exact(restarted_run, dp2_run):
    """The restarted job resumed at DP=2 from a mid-run checkpoint: its steps after the resume log
    the straight run's losses exactly and it ends with bitwise the straight run's weights."""
    rank0_log, _, out = restarted_run
    resumed = re.findall(r"resumed from \S*step_(\d{8})", rank0_log)
    assert len(resumed) == 1 and 1 <= int(resumed[0]) < STEPS, rank0_log[-3000:]
    root = dp2_run[0] / "a" / "checkpoints"
    final_a = CheckpointManager(root).load(str(root / f"step_{STEPS:08d}")).tensors
    final_r = CheckpointManager(out / "checkpoints").load("auto").tensors
    assert sorted(final_a) == sorted(final_r)
    assert all(final_a[k].tobytes() == final_r[k].tobytes() for k in final_a)
    assert _losses(out) == dp2_run[2]


@pytest.fixture(scope="module")
def sigterm_zero1_run(background):
    return background["sigterm"].result()


def _sigterm_zero1_job(cwd):
    """DP=2 + ZeRO-1 (otherwise dp2_run's config), one rank SIGTERMed after step 1 is logged, then
    its final checkpoint resumed in one process without ZeRO: (its directory, output dir, the
    newest checkpoint, the losses of the one-process resume)."""
    config = _write_run(cwd, optimizer_sharding=True)
    out = cwd / "s"
    proc = _start_job(cwd, config, out)
    _wait_for_steps(proc, out, 1)
    os.kill(_pids_of(str(out))[-1], signal.SIGTERM)
    proc.communicate(timeout=600)
    ckpt = CheckpointManager(out / "checkpoints").load("auto")
    step = out / "checkpoints" / f"step_{ckpt.step:08d}"
    return cwd, out, ckpt, _train(cwd, config, cwd / "d", 1, "--resume", str(step), name="logs_d")


def test_sigterm_on_one_rank_stops_all_after_the_same_step(sigterm_zero1_run):
    """Only one rank gets SIGTERM; both stop after the same step and the final checkpoint holds both
    ranks' files (under ZeRO-1 each rank owns a slice of the optimizer state). (That --resume auto
    then continues the exact curve is tested in one process by tests/checkpoint/test_ckpt_e2e.py and
    across ranks by test_dp2_resume_is_bit_exact.)"""
    cwd, out, ckpt, _ = sigterm_zero1_run
    logs = [(cwd / "logs" / f"worker_{r}.log").read_text() for r in (0, 1)]
    stops = [[line for line in log.splitlines() if "stopped by SIGTERM" in line or "stopped at step" in line]
             for log in logs]
    assert ckpt.step < STEPS, "the run finished before the signal arrived"
    assert all(f"stopped at step {ckpt.step}" in "\n".join(s) or f"after step {ckpt.step}" in "\n".join(s)
               for s in stops), stops
    index = json.loads((out / "checkpoints" / f"step_{ckpt.step:08d}" / "index.json").read_text())
    assert index["world_size"] == 2 and sorted(f["rank"] for f in index["files"].values()) == [0, 1]
    assert sorted(_losses(out)) == list(range(1, ckpt.step + 1))  # every step up to the stop was logged
    assert ckpt.trainer_state["consumed_samples"] == 4 * ckpt.step


def test_zero1_checkpoint_resumes_without_zero(sigterm_zero1_run, dp2_run):
    """The ZeRO-1 run's checkpoint (optimizer moments cut by rows over DP) resumed in one process without
    ZeRO continues the curve: the ZeRO-1 run followed the plain DP=2 run's losses up to its stop,
    and the resumed steps follow them on (both to the 1e-5 of the equivalence tests)."""
    _, out, ckpt, resumed = sigterm_zero1_run
    losses = dp2_run[2]
    index = json.loads((out / "checkpoints" / f"step_{ckpt.step:08d}" / "index.json").read_text())
    moment = next(v for k, v in index["tensors"].items() if k.endswith("q_proj.weight.exp_avg"))
    rows = moment["shape"][0]  # shaped like the parameter, half of its rows per DP rank
    assert len(moment["shape"]) == 2 and sorted(s["offsets"][0] for s in moment["slices"]) == [0, rows // 2]
    zero1 = _losses(out)
    np.testing.assert_allclose([zero1[s] for s in sorted(zero1)], [losses[s] for s in sorted(zero1)], rtol=LOSS_RTOL)
    after = [ckpt.step + 1, ckpt.step + 2]
    np.testing.assert_allclose([resumed[s] for s in after], [losses[s] for s in after], rtol=LOSS_RTOL)


def test_dp2_checkpoint_resumes_in_one_process(dp2_run, background):
    losses = dp2_run[2]
    resumed = background["resume_c"].result()
    assert sorted(resumed) == list(range(3, STEPS + 1))
    np.testing.assert_allclose([resumed[s] for s in (3, 4)], [losses[s] for s in (3, 4)], rtol=LOSS_RTOL)
