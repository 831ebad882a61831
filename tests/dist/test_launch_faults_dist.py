"""A dead rank ends the whole job quickly, with the rank and its error on the console."""
import pytest

from launch_helpers import launch, worker

pytestmark = [pytest.mark.dist, pytest.mark.timeout(200)]


@pytest.mark.parametrize("mode,expected", [
    ("raise", "RuntimeError: injected failure on rank 1"),
    ("kill", "killed by SIGKILL"),
])
def test_dead_rank_fails_the_job_within_60s_naming_it(in_tmp, mode, expected):
    job = launch(in_tmp, ["--nproc-per-node", "2", "--script", worker("fail_rank.py")],
                 env={"FAIL_RANK": "1", "FAIL_MODE": mode}, timeout=150)
    assert job.returncode == 1, job.explain()
    assert "first all-reduce [2. 2.]" in job.stdout  # rank 0 streamed, the job really ran
    assert "error: rank 1 failed" in job.stderr and expected in job.stderr, job.explain()
    failed_at = float((in_tmp / "failed_at.txt").read_text())
    assert job.ended - failed_at < 60, job.explain()


def test_wrong_world_size_is_a_clear_error_on_every_rank(in_tmp):
    job = launch(in_tmp, ["--nproc-per-node", "2", "--script", worker("train_equivalence.py")],
                 ["out", '{"data": 2, "tensor": 2}', "1"], timeout=150)
    assert job.returncode == 1
    assert "the job has 2 ranks (nproc-per-node x nnodes) but parallel.data (2) x parallel.tensor (2) = 4" \
        in job.stderr, job.explain()
