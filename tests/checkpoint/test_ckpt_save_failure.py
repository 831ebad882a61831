"""Issue 21: a failed save (sync or async) is one CheckpointError naming the checkpoint's path and
the cause, raised by the step that can know it (an async failure no longer waits for the next
save); the previous checkpoint stays the resume point; checkpoint.on_save_failure: warn trains on."""
import errno
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_ckpt_resume import STEPS, _cfg, _train  # noqa: E402  (the trainer resume tests' toy run)

from mfcore.checkpoint import CheckpointManager  # noqa: E402
from mfcore.checkpoint import save as S  # noqa: E402
from mfcore.errors import CheckpointError  # noqa: E402


@pytest.fixture
def disk_full_at_step_4(monkeypatch):
    """Writing any shard of checkpoint step 4 fails as a full disk does."""
    real = S.save_file

    def save_file(tensors, path, metadata=None):
        if "step_00000004" in path:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real(tensors, path, metadata=metadata)
    monkeypatch.setattr(S, "save_file", save_file)


def _latest(root):
    return (root / "latest").read_text().strip()


@pytest.mark.parametrize("async_save", [False, True])
def test_failed_save_stops_the_run_with_one_clear_error(in_tmp, disk_full_at_step_4, async_save):
    steps = []
    cfg = _cfg(in_tmp / "run", save_interval=2, keep_last_n=5, async_save=async_save)
    with pytest.raises(CheckpointError) as e:
        _train(cfg, on_step=steps.append)
    root = in_tmp / "run" / "checkpoints"
    msg = str(e.value)
    assert msg.startswith(f"{root}/step_00000004: checkpoint not saved: No space left on device (")
    assert "the previous checkpoint stays the resume point" in msg
    assert max(steps) <= 5  # reported at the step after the failed save, not one interval later
    assert _latest(root) == "step_00000002" and not (root / "step_00000004").exists()
    loaded = CheckpointManager(str(root)).load("auto")
    assert loaded.step == 2


@pytest.mark.parametrize("async_save", [False, True])
def test_warn_policy_trains_on(in_tmp, disk_full_at_step_4, async_save, capsys):
    cfg = _cfg(in_tmp / "run", save_interval=2, keep_last_n=5, async_save=async_save, on_save_failure="warn")
    result, _ = _train(cfg)
    assert result.state.step == STEPS
    root = in_tmp / "run" / "checkpoints"
    assert sorted(p for p in os.listdir(root) if p.startswith("step_")) == ["step_00000002", "step_00000006"]
    assert _latest(root) == "step_00000006"
    out = capsys.readouterr().out
    assert "warning: " in out and "step_00000004: checkpoint not saved: No space left on device" in out
