"""Jobs shared by several dist test modules (each launch costs ~15 s of msrun start-up, cluster
build and teardown before any work, so claims about the same job share one launch)."""
import pytest

from helpers.launch_helpers import launch, worker

TP_STEPS = 20


@pytest.fixture(scope="session")
def tp2_job(tmp_path_factory):
    """One TP=2 job (tests/dist/workers/tp_checks.py): the comm-cell and TP-layer checks of
    test_collectives_dist.py, then the TP=2 + sequence-parallel training of test_equivalence_dist.py
    (tiny Llama). Returns the job and its output directory."""
    cwd = tmp_path_factory.mktemp("tp2_job")
    job = launch(cwd, ["--nproc-per-node", "2", "--script", worker("tp_checks.py")], ["out", str(TP_STEPS)],
                 timeout=800)
    assert job.returncode == 0, job.explain()
    return job, cwd / "out"
