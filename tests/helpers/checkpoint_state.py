"""Comparing a parallel run's checkpoint with the one-process run's checkpoint of the same step.

A one-process resume loads a checkpoint's global tensors (the saved slices assembled by
:meth:`CheckpointManager.load`) and its trainer state (schedule, loss scaler, data position, RNG,
step counters), so a checkpoint whose tensors and trainer state equal the one-process run's resumes
as the one-process run does: these checks stand for a resume without a one-process graph compile.
"""
from pathlib import Path

import numpy as np

from mfcore.checkpoint import CheckpointManager


def load_step(run_dir: Path, step: int):
    """The checkpoint of ``step`` under ``run_dir/checkpoints``, every tensor whole."""
    root = Path(run_dir) / "checkpoints"
    return CheckpointManager(str(root)).load(str(root / f"step_{step:08d}"))


def relative_l2(got, want, names) -> float:
    """``|got - want| / |want|`` over the tensors ``names`` together, in float64 (absolute when
    ``want`` is all zeros, e.g. a counter reset after each step)."""
    diff = norm = 0.0
    for name in names:
        assert got[name].shape == want[name].shape, name
        diff += float(np.sum((got[name].astype(np.float64) - want[name]) ** 2))
        norm += float(np.sum(want[name].astype(np.float64) ** 2))
    return np.sqrt(diff / norm) if norm else np.sqrt(diff)


def assert_routing_biases_equal(got, want):
    """DeepSeek's routing biases bitwise equal: every token was routed alike."""
    for name in [n for n in want if n.endswith("e_score_correction_bias")]:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def assert_same_trainer_state(got, want, rtol: float, where=""):
    """Trainer state (JSON) equal; floats (the fault policy's logged grad norms) within ``rtol``."""
    if isinstance(want, float):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=0, err_msg=where)
    elif isinstance(want, dict):
        assert sorted(got) == sorted(want), where
        for key in want:
            assert_same_trainer_state(got[key], want[key], rtol, f"{where}/{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same_trainer_state(g, w, rtol, f"{where}[{i}]")
    else:
        assert got == want, where


def assert_same_state(got, want, rel_l2: float, rtol: float, label: str = "") -> None:
    """``got`` and ``want`` (loaded checkpoints of one step) hold the same run state: the weights and
    each kind of Adam moment within ``rel_l2`` relative L2 over all their tensors, integer tensors
    (Adam's step) and routing biases equal, the trainer state equal (floats within ``rtol``) but for
    the run's own config (its output dir and layout)."""
    assert got.step == want.step
    assert set(got.tensors) == set(want.tensors)
    floats = [n for n, w in want.tensors.items() if np.issubdtype(w.dtype, np.floating)]
    kinds = {"weights": [n for n in floats if n.startswith("model/")],
             "exp_avg": [n for n in floats if n.endswith(".exp_avg")],
             "exp_avg_sq": [n for n in floats if n.endswith(".exp_avg_sq")]}
    assert sum(map(len, kinds.values())) == len(floats), sorted(set(floats) - set(sum(kinds.values(), [])))
    for kind, names in kinds.items():
        rel = relative_l2(got.tensors, want.tensors, names)
        print(f"{label} step-{want.step} {kind} relative L2 {rel:.2e}")
        assert rel < rel_l2, (kind, rel)
    for name in set(want.tensors) - set(floats):
        np.testing.assert_array_equal(got.tensors[name], want.tensors[name], err_msg=name)
    assert_routing_biases_equal(got.tensors, want.tensors)
    got_state, want_state = dict(got.trainer_state), dict(want.trainer_state)
    got_state.pop("config"), want_state.pop("config")
    assert_same_trainer_state(got_state, want_state, rtol)
