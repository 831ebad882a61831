"""Helpers for the multi-process tests in tests/dist: every job runs through `mf-launch` (hence msrun) on
loopback with a free port and a short cluster timeout, in the test's temporary directory."""
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

WORKERS = Path(__file__).resolve().parent.parent / "dist" / "workers"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Job:
    def __init__(self, proc: subprocess.CompletedProcess, seconds: float, log_dir: Path):
        self.returncode, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr
        self.seconds, self.log_dir = seconds, log_dir
        self.ended = time.time()

    def explain(self) -> str:
        logs = "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.log_dir.glob("*.log")))
        return f"exit {self.returncode} after {self.seconds:.0f}s\nstdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-3000:]}{logs}"


def launch(cwd: Path, launch_args, train_args=(), timeout=240, env=None, port=None, name="logs") -> Job:
    """Run ``mf-launch`` (as a module of this interpreter) and wait for it."""
    log_dir = cwd / name
    argv = [sys.executable, "-m", "mfcore.cli.launch", "--master-port", str(port or free_port()),
            "--log-dir", str(log_dir), "--cluster-timeout", "60", *launch_args, "--", *train_args]
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "GLOG_v": "3", **(env or {})})
    return Job(proc, time.monotonic() - start, log_dir)


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def worker(name: str) -> str:
    """Path of a rank script in tests/dist/workers/."""
    return str(WORKERS / name)


def in_background(fn, *args, **kwargs) -> Future:
    """``fn(*args, **kwargs)`` in a thread, for a one-process run (about one busy core) that overlaps
    an msrun job: the job's processes spend much of their time waiting (cluster build, heartbeats,
    shutdown), so the two together take less wall time than one after the other."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn, *args, **kwargs)
    pool.shutdown(wait=False)
    return future
