"""NaN/Inf and spike policy, and the dynamic loss scaler."""
import math

import pytest

from mfcore.train.faults import FaultPolicy, TrainingDivergedError
from mfcore.train.precision import LossScaler


def test_non_finite_steps_are_skipped_then_stop():
    p = FaultPolicy(max_bad_steps=3)
    assert p.judge(1, 1.0).apply
    assert p.judge(2, math.nan).reason == "non-finite"
    assert p.judge(3, 1.0).apply                      # a good step resets the count
    assert not p.judge(4, math.inf).apply
    assert not p.judge(5, math.nan).apply
    with pytest.raises(TrainingDivergedError, match="training stopped at step 6: 3 consecutive bad steps"):
        p.judge(6, math.nan)


def test_expected_fp16_overflow_is_not_counted():
    p = FaultPolicy(max_bad_steps=2)
    for step in range(10):
        assert p.judge(step, math.inf, expected_overflow=True).reason == "overflow"
    assert p.consecutive_bad == 0


def test_spike_skipped_against_running_mean():
    p = FaultPolicy(max_bad_steps=10, spike_factor=3.0, spike_window=4, spike_warmup=4)
    for i, norm in enumerate([1.0, 2.0, 1.0, 2.0]):
        assert p.judge(i, norm).apply
    assert p.judge(5, 4.4).apply                      # mean 1.5 → limit 4.5
    v = p.judge(6, 100.0)                             # mean of (2,1,2,4.4) = 2.35
    assert not v.apply and v.reason == "spike"
    assert list(p.norms) == [2.0, 1.0, 2.0, 4.4]      # skipped norms do not enter the mean


def test_no_spike_check_during_warmup():
    p = FaultPolicy(spike_factor=2.0, spike_warmup=3)
    assert p.judge(1, 1.0).apply and p.judge(2, 50.0).apply


def test_dynamic_loss_scaler():
    s = LossScaler("dynamic", scale=8.0, window=2, min_scale=2.0)
    assert not s.update(False) and s.scale == 4.0
    assert not s.update(False) and s.scale == 2.0
    assert not s.update(False) and s.scale == 2.0     # floor
    assert s.update(True) and s.scale == 2.0
    assert s.update(True) and s.scale == 4.0          # doubled after a clean window
    st = s.state_dict()
    t = LossScaler("dynamic", scale=1.0, window=2)
    t.load_state_dict(st)
    assert (t.scale, t.good_steps) == (4.0, 0)


def test_static_and_none_never_change():
    for mode in ("static", "none"):
        s = LossScaler(mode, scale=128.0)
        assert not s.update(False) and s.update(True) and s.scale == 128.0
