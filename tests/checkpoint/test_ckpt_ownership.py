"""Issue 21 row 2: a run owns its checkpoint directory. A fresh run (--resume none) into a directory
holding another run's checkpoints is refused with the ways out, or with --overwrite moves them
aside; rotation never deletes the checkpoint it just wrote."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_ckpt_resume import _cfg, _train  # noqa: E402  (the trainer resume tests' toy run)

from mfcore.checkpoint import CheckpointManager  # noqa: E402
from mfcore.checkpoint.load import read_trainer_state  # noqa: E402
from mfcore.errors import CheckpointError  # noqa: E402


def _listing(root):
    return sorted((os.path.relpath(os.path.join(d, f), root), os.path.getmtime(os.path.join(d, f)))
                  for d, _, files in os.walk(root) for f in files)


@pytest.fixture
def old_run(in_tmp):
    """An older run's output dir: checkpoints at steps 2, 4, 6 and `latest`."""
    out = in_tmp / "run"
    _train(_cfg(out, save_interval=2, keep_last_n=5))
    return out


def test_fresh_run_into_another_runs_checkpoints_is_refused(old_run):
    root = old_run / "checkpoints"
    before = _listing(root)
    cfg = _cfg(old_run, resume="none", save_interval=1, keep_last_n=2)
    with pytest.raises(CheckpointError) as e:
        _train(cfg)
    msg = str(e.value)
    assert str(root) in msg and "step_00000006" in msg
    for way_out in ("run.output_dir", "--resume auto", "--overwrite"):
        assert way_out in msg
    assert _listing(root) == before  # nothing of the old run touched


def test_overwrite_moves_the_old_checkpoints_aside(old_run):
    root = old_run / "checkpoints"
    before = _listing(root)
    cfg = _cfg(old_run, resume="none", save_interval=1, keep_last_n=2, overwrite=True)
    cfg.training.train_steps = 3
    result, _ = _train(cfg)
    assert result.state.step == 3
    aside = [p for p in os.listdir(old_run) if p.startswith("checkpoints.old-")]
    assert len(aside) == 1 and _listing(old_run / aside[0]) == before
    # the new run's checkpoints survive their own rotation, and latest names the newest one
    assert sorted(p for p in os.listdir(root) if p.startswith("step_")) == ["step_00000002", "step_00000003"]
    assert (root / "latest").read_text().strip() == "step_00000003"
    assert read_trainer_state(str(root / "step_00000003"))["step"] == 3


def test_auto_resume_continues_the_run_in_the_directory(old_run):
    cfg = _cfg(old_run, resume="auto", save_interval=2, keep_last_n=5)
    cfg.training.train_steps = 8
    result, _ = _train(cfg)
    assert result.state.step == 8 and len(result.losses) == 2


def test_rotation_never_deletes_the_checkpoint_it_just_wrote(tmp_path):
    root = tmp_path / "ck"
    old = CheckpointManager(root, keep_last_n=5)
    for step in (100, 200):
        old.save(step, {"w": np.full(3, step, np.float32)}, {"step": step})
    new = CheckpointManager(root, keep_last_n=1)
    report = new.save(1, {"w": np.ones(3, np.float32)}, {"step": 1})
    assert os.path.isdir(report.path)
    assert (root / "latest").read_text().strip() == "step_00000001"
    assert CheckpointManager(root).load(str(report.path)).step == 1
