"""Crash safety: SIGKILL a process in the middle of an (artificially slowed) save; the previous
checkpoint stays valid and is what ``load("auto")`` returns (or the new one, once it is complete)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from mfcore.checkpoint import CheckpointManager

# The child saves step 1, then step 2 with one stage of the save patched to announce itself and
# hang; the parent kills it there with SIGKILL. Stages: right after the shard file is written
# (sync and async), just before the temporary directory is renamed, and after the rename but
# before ``latest`` moves (then the new checkpoint is complete and is the one loaded).
CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from mfcore.checkpoint import CheckpointManager
    from mfcore.checkpoint import save as S
    root, stage, flag = sys.argv[1:4]
    def hang(real, before):
        def slowed(*a, **k):
            out = None if before else real(*a, **k)
            open(flag, "w").close()
            time.sleep(60)
            return out
        return slowed
    mgr = CheckpointManager(root, keep_last_n=1, async_save=(stage == "async"))
    mgr.save(1, {"w": np.full((256, 256), 1.0, np.float32)}, {"consumed_samples": 8})
    mgr.wait()
    target = {"shard": "save_file", "async": "save_file", "commit": "fsync_dir", "latest": "write_latest"}[stage]
    setattr(S, target, hang(getattr(S, target), before=target != "save_file"))
    mgr.save(2, {"w": np.full((256, 256), 2.0, np.float32)}, {"consumed_samples": 16})
    if stage == "async":
        time.sleep(60)  # training would continue here while the background thread writes
""")


@pytest.mark.parametrize("stage,expect_step", [("shard", 1), ("async", 1), ("commit", 1), ("latest", 2)])
def test_sigkill_during_save(tmp_path, stage, expect_step):
    root, flag = tmp_path / "ck", tmp_path / "flag"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(root), stage, str(flag)])
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert proc.poll() is None, "child exited before reaching the slowed stage"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    got = CheckpointManager(root).load("auto")
    assert got.step == expect_step and got.skipped == []
    assert np.all(got.tensors["w"] == float(expect_step))
    assert got.trainer_state["consumed_samples"] == 8 * expect_step
    # the next save clears the leftovers of the killed one and rotation still works
    mgr = CheckpointManager(root, keep_last_n=1)
    mgr.save(3, {"w": np.zeros(1, np.float32)}, {})
    assert sorted(os.listdir(root)) == ["latest", "step_00000003"]
