"""tools/measure_train_memory.py's peak starts at its baseline: a high-water mark reached before it
(by this process, or handed over by a parent) is not counted (docs/planning.md)."""
import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "measure_train_memory.py"


def _tool():
    spec = importlib.util.spec_from_file_location("measure_train_memory", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_baseline_restarts_the_high_water_mark():
    tool = _tool()
    block = bytearray(256 << 20)
    block[::4096] = b"\1" * len(block[::4096])   # touch every page: the peak is now >= 256 MiB more
    high = tool._status_bytes("VmHWM")
    del block
    baseline = tool._start_baseline()
    peak = tool._status_bytes("VmHWM")
    assert high - peak > 200 << 20, (high, peak)
    assert 0 <= peak - baseline < 16 << 20, (baseline, peak)


def test_environment_is_pinned_without_re_executing_when_already_set(monkeypatch):
    tool = _tool()
    for key, value in tool.PINNED_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(tool.os, "execve", lambda *a: (_ for _ in ()).throw(AssertionError("re-exec")))
    tool._pin_environment(["--config", "tiny-llama3"])


def test_environment_not_pinned_re_executes_the_script_with_it(monkeypatch):
    tool = _tool()
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    calls = []
    monkeypatch.setattr(tool.os, "execve", lambda path, argv, env: calls.append((argv, env)))
    tool._pin_environment(["--config", "tiny-llama3"])
    (argv, env), = calls
    assert argv[1:] == [str(TOOL), "--config", "tiny-llama3"]
    assert all(env[k] == v for k, v in tool.PINNED_ENV.items())
