"""The end-to-end runs of test_e2e.py, started as soon as the session knows it will run them.

Each is a separate one-process training run (~1 core busy, 20-30 s); started right after
collection (tests/train/conftest.py), they go on in one background thread while the early, mostly
single-threaded test modules run in the pytest process, instead of taking a minute of their own
near the end of the session. A test waits for its run's result, or runs it itself when the session
did not start it."""
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers.e2e_recipe import TINY_CONFIGS, run_in_subprocess

E2E_RUNS = pytest.StashKey[dict]()


def start_runs(config) -> None:
    pool = ThreadPoolExecutor(max_workers=1)  # one at a time: a run keeps about one core busy
    runs = {}
    for name in TINY_CONFIGS:
        workdir = config._tmp_path_factory.mktemp(f"e2e_{name}")
        runs[name] = (workdir, pool.submit(run_in_subprocess, name, workdir))
    pool.shutdown(wait=False)
    config.stash[E2E_RUNS] = runs


def e2e_run(config, name, workdir):
    """(working directory, losses) of the run of ``name``: the session's background run if there
    is one, else a run started now in ``workdir``."""
    runs = config.stash.get(E2E_RUNS, {})
    if name in runs:
        started_in, future = runs.pop(name)
        return started_in, future.result()
    return workdir, run_in_subprocess(name, workdir)
