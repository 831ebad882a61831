"""The parser fuzzer: a bounded run of tools/fuzz_indexed.py, and replays of the regression inputs
(tests/data/fuzz_regressions/*.idx) through the same three-way check. The directory holds every input
that ever failed the fuzzer (none so far: 1,000,000 runs with seed 12345) and hand-made corner cases
such as counts whose byte sizes overflow 64 bits; a libFuzzer crash-* file goes there as <name>.fuzz and is replayed through the fuzz target itself."""
import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import atheris  # noqa: F401  (a test dependency: its absence must fail, not skip)
import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZER = ROOT / "tools" / "fuzz_indexed.py"
REGRESSIONS = sorted((Path(__file__).parent / "fuzz_regressions").glob("*.idx"))
RAW_INPUTS = sorted((Path(__file__).parent / "fuzz_regressions").glob("*.fuzz"))


@functools.lru_cache(maxsize=None)
def _fuzz_module():
    spec = importlib.util.spec_from_file_location("fuzz_indexed", FUZZER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bounded_fuzz_run(tmp_path):
    proc = subprocess.run([sys.executable, str(FUZZER), "-runs=3000", "-seed=7", f"-artifact_prefix={tmp_path}/"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Done 3000 runs" in proc.stderr
    assert not list(tmp_path.glob("crash-*"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
@pytest.mark.parametrize("multimodal", [False, True])
def test_regression_input(path, multimodal):
    fuzz = _fuzz_module()
    from mfcore import _core

    idx = path.read_bytes()
    for bin_size in (0, 7, 2**63 - 1):
        problems = _core.check_index_bytes(idx, bin_size, multimodal)
        parsed = fuzz.oracle(idx, bin_size, multimodal)
        assert (parsed is not None) == (not problems)
        assert all(fuzz.MESSAGE.match(p) for p in problems), problems
    disk = fuzz.DiskCheck()
    try:
        disk.run(idx, bytes(7), multimodal, fuzz.oracle(idx, 7, multimodal))
    finally:
        for name in os.listdir(disk.dir):
            os.unlink(os.path.join(disk.dir, name))
        os.rmdir(disk.dir)


@pytest.mark.parametrize("path", RAW_INPUTS, ids=[p.name for p in RAW_INPUTS])
def test_raw_fuzz_input(path):
    fuzz = _fuzz_module()
    try:
        fuzz.test_one_input(path.read_bytes())  # raises on a wrong verdict or a bad message
    finally:
        if fuzz.DISK:
            shutil.rmtree(fuzz.DISK.dir)
            fuzz.DISK = None
