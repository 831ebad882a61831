"""mf-train end to end on real indexed data: SIGTERM in the middle of a run → the step finishes, a
final checkpoint is saved (async, plus the MindSpore .ckpt asked for), exit code 75; `--resume auto`
then finishes the run with exactly the losses of an uninterrupted run (read from metrics.jsonl)."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from mfcore.checkpoint import CheckpointManager
from mfcore.data import IndexedDatasetBuilder
from mfcore.launch.restarts import EXIT_PREEMPTED

STEPS = 30  # long enough that SIGTERM after step 2 lands mid-run however fast the steps get


def _write_run(tmp):
    rng = np.random.default_rng(0)
    builder = IndexedDatasetBuilder(str(tmp / "corpus"), np.uint16)
    for _ in range(60):
        builder.add_document(rng.integers(1, 250, int(rng.integers(20, 80))).astype(np.uint16))
    builder.finalize()
    run = {"run": {"name": "e2e", "seed": 3},
           "model": {"name": "tiny-llama3", "overrides": {
               "vocab_size": 256, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
               "num_attention_heads": 2, "num_key_value_heads": 1}},
           "data": {"prefixes": [str(tmp / "corpus")], "split": "100,0,0", "seq_length": 16,
                    "eod_id": 0, "num_workers": 1, "cache_dir": str(tmp / "cache")},
           "training": {"global_batch_size": 4, "micro_batch_size": 2, "train_steps": STEPS},
           "optimizer": {"lr": 0.01}, "schedule": {"name": "cosine", "warmup_steps": 1},
           "checkpoint": {"save_interval": 100},
           "logging": {"log_interval": 1, "tensorboard": False, "progress_bar": "never"}}
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    return path


def _cmd(config, out, *extra):
    return [sys.executable, "-m", "mfcore.cli.train", "--config", str(config), f"run.output_dir={out}", *extra]


def _losses(out):
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.mark.slow
def test_sigterm_then_resume_auto_matches_straight_run(in_tmp):
    config = _write_run(in_tmp)
    env = dict(os.environ, GLOG_v="3")
    straight = subprocess.run(_cmd(config, in_tmp / "a"), env=env, capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]
    reference = _losses(in_tmp / "a")
    assert sorted(reference) == list(range(1, STEPS + 1))

    out = in_tmp / "b"
    proc = subprocess.Popen(_cmd(config, out, "checkpoint.async_save=true",
                                 "checkpoint.format=safetensors+ckpt"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not (out / "metrics.jsonl").exists() or len(_losses(out)) < 2:  # step 2 logged
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == EXIT_PREEMPTED, stderr[-2000:]
    assert "stopped by SIGTERM" in stderr
    ckpt = CheckpointManager(out / "checkpoints").load("auto")
    stopped_at = ckpt.step
    assert 2 <= stopped_at < STEPS and sorted(_losses(out)) == list(range(1, stopped_at + 1))
    assert ckpt.trainer_state["consumed_samples"] == 4 * stopped_at
    import mindspore as ms
    ms_ckpt = ms.load_checkpoint(str(out / "checkpoints" / "ms_ckpt" / f"step_{stopped_at:08d}.ckpt"))
    name = "model.embed_tokens.weight"
    assert ms_ckpt[name].asnumpy().tobytes() == ckpt.tensors["model/" + name].tobytes()

    resumed = subprocess.run(_cmd(config, out, "--resume", "auto"), env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {out / 'checkpoints' / f'step_{stopped_at:08d}'}" in resumed.stdout
    assert _losses(out) == reference  # bit-identical losses, including the steps before the stop
