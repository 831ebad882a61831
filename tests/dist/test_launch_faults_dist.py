"""A dead rank ends the whole job quickly, with the rank and its error on the console.

The three one-node jobs run at the same time (module fixture ``one_node_jobs``): each spends most
of its ~20 s starting up and waiting for msrun to notice the failure, and each measures its own
time from its own failure."""
import threading

import pytest

from helpers.launch_helpers import free_port, in_background, launch, worker

pytestmark = [pytest.mark.dist, pytest.mark.timeout(200)]


def _dead_rank_job(cwd, mode):
    return launch(cwd, ["--nproc-per-node", "2", "--script", worker("fail_rank.py")],
                  env={"FAIL_RANK": "1", "FAIL_MODE": mode}, timeout=150)


def _wrong_world_size_job(cwd):
    return launch(cwd, ["--nproc-per-node", "2", "--script", worker("train_equivalence.py")],
                  ["out", '{"data": 2, "tensor": 2}', "1"], timeout=150)


@pytest.fixture(scope="module")
def one_node_jobs(tmp_path_factory):
    """{name: (workdir, future of its Job)} for the "raise" and "kill" jobs and the wrong world size."""
    dirs = {name: tmp_path_factory.mktemp(name) for name in ("raise", "kill", "wrong_world_size")}
    futures = {mode: in_background(_dead_rank_job, dirs[mode], mode) for mode in ("raise", "kill")}
    futures["wrong_world_size"] = in_background(_wrong_world_size_job, dirs["wrong_world_size"])
    return {name: (dirs[name], futures[name]) for name in dirs}


@pytest.mark.parametrize("mode,expected", [
    ("raise", "RuntimeError: injected failure on rank 1"),
    ("kill", "killed by SIGKILL"),
])
def test_dead_rank_fails_the_job_within_60s_naming_it(one_node_jobs, mode, expected):
    cwd, future = one_node_jobs[mode]
    job = future.result()
    assert job.returncode == 1, job.explain()
    assert "first all-reduce [2. 2.]" in job.stdout, job.explain()  # rank 0 streamed: the job really ran
    assert "error: rank 1 failed" in job.stderr and expected in job.stderr, job.explain()
    failed_at = float((cwd / "failed_at.txt").read_text())
    assert job.ended - failed_at < 60, job.explain()


def test_wrong_world_size_is_a_clear_error_on_every_rank(one_node_jobs):
    job = one_node_jobs["wrong_world_size"][1].result()
    assert job.returncode == 1
    assert "the job has 2 ranks (nproc-per-node x nnodes) but parallel.data (2) x parallel.tensor (2) x parallel.pipeline (1) = 4" \
        in job.stderr, job.explain()


def test_rank_dying_on_another_node_ends_both_nodes(in_tmp):
    """Two mf-launch invocations (--nnodes 2); rank 1 on node 1 is killed: node 1 reports it
    directly, node 0 (the scheduler's) learns it from the heartbeat timeout; both exit non-zero."""
    port, jobs = free_port(), {}
    env = {"FAIL_RANK": "1", "FAIL_MODE": "kill"}

    def node(rank):
        jobs[rank] = launch(in_tmp, ["--nnodes", "2", "--node-rank", str(rank), "--nproc-per-node", "1",
                                     "--script", worker("fail_rank.py")],
                            env=env, port=port, name=f"logs_node{rank}", timeout=170)

    threads = [threading.Thread(target=node, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed_at = float((in_tmp / "failed_at.txt").read_text())
    for rank in (0, 1):
        job = jobs[rank]
        assert job.returncode == 1, job.explain()
        assert "error: rank 1 " in job.stderr, job.explain()
        assert job.ended - failed_at < 60, job.explain()
    assert "killed by SIGKILL" in jobs[1].stderr
    assert "stopped responding" in jobs[0].stderr
