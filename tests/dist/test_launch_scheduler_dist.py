"""Issue 21 row 6: mf-launch watches the scheduler as it watches the ranks, and its own end reaches
msrun's whole job. A scheduler that cannot bind its port ends the job at once with its error (it
used to hang for the whole --cluster-timeout); SIGTERM and SIGKILL of mf-launch leave no rank or
scheduler behind (SIGKILL used to orphan msrun and the workers)."""
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from helpers.launch_helpers import free_port, launch, worker

pytestmark = [pytest.mark.dist, pytest.mark.timeout(300)]


def test_scheduler_that_cannot_bind_ends_the_job_at_once(in_tmp):
    port = free_port()
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        job = launch(in_tmp, ["--nproc-per-node", "2", "--script", worker("init_and_wait.py"),
                              "--cluster-timeout", "300"], port=port, timeout=200)
    assert job.returncode == 1, job.explain()
    assert job.seconds < 60, job.explain()
    assert "error: the job failed" in job.stderr and "the scheduler (node 0) exited with status 1" in job.stderr, job.explain()
    assert "Failed to init the tcp server" in job.stderr and f"is port {port} in use" in job.stderr, job.explain()
    assert _survivors(in_tmp, deadline=20) == []


def _pids(cwd):
    return [int(p.name.rsplit("_", 1)[1]) for p in cwd.glob("pid_*")]


def _survivors(cwd, deadline):
    """The recorded rank/scheduler pids still running after up to ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while True:
        alive = [p for p in _pids(cwd) if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > end:
            return alive
        time.sleep(0.5)


def _start(cwd):
    argv = [sys.executable, "-m", "mfcore.cli.launch", "--master-port", str(free_port()), "--log-dir",
            str(cwd / "logs"), "--nproc-per-node", "2", "--script", worker("init_and_wait.py"), "--"]
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "GLOG_v": "3"})
    end = time.monotonic() + 150
    while time.monotonic() < end:  # every rank joined the cluster (rank 0 streamed, rank 1 logged)
        logs = [cwd / "logs" / f"worker_{r}.log" for r in (0, 1)]
        if all(p.exists() and "ready" in p.read_text(errors="replace") for p in logs):
            return proc
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("the job did not start")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_ending_mf_launch_ends_the_whole_job(in_tmp, sig):
    proc = _start(in_tmp)
    roles = sorted(p.name.rsplit("_", 1)[0] for p in in_tmp.glob("pid_*"))
    assert roles == ["pid_MS_SCHED", "pid_MS_WORKER", "pid_MS_WORKER"], roles
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == (130 if sig == signal.SIGTERM else -9), err
    if sig == signal.SIGTERM:
        assert "mf-launch: interrupted, job stopped" in err
    assert _survivors(in_tmp, deadline=20) == []
