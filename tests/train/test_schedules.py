"""LR schedules match their closed-form formulas and depend only on the step (resumable)."""
import math

import pytest

from mfcore.errors import ConfigError
from mfcore.train.schedules import LRSchedule

LR, MIN, TOTAL, WARM = 1e-3, 1e-4, 100, 10


def sched(kind, **kw):
    return LRSchedule(kind, LR, TOTAL, warmup_steps=WARM, min_lr=MIN, **kw)


def test_warmup_is_linear_and_reaches_peak():
    s = sched("cosine")
    assert [s.lr_at(i) for i in range(WARM)] == pytest.approx([LR * (i + 1) / WARM for i in range(WARM)])
    assert s.lr_at(WARM) == pytest.approx(LR)


@pytest.mark.parametrize("step", [10, 25, 55, 99, 100, 150])
def test_formulas(step):
    p = min(1.0, (step - WARM) / (TOTAL - WARM))
    assert sched("constant").lr_at(step) == LR
    assert sched("linear").lr_at(step) == pytest.approx(MIN + (LR - MIN) * (1 - p))
    assert sched("cosine").lr_at(step) == pytest.approx(MIN + (LR - MIN) * 0.5 * (1 + math.cos(math.pi * p)))


def test_wsd_holds_then_decays_over_the_last_fraction():
    s = sched("wsd", decay_fraction=0.2)            # 90 steps after warmup → 18 decay steps
    assert all(s.lr_at(i) == LR for i in range(WARM, TOTAL - 18))
    assert s.lr_at(TOTAL - 18 + 9) == pytest.approx(MIN + (LR - MIN) * 0.5)
    assert s.lr_at(TOTAL) == pytest.approx(MIN)
    c = sched("wsd", decay_fraction=0.2, decay_style="cosine")
    assert c.lr_at(TOTAL - 18 + 9) == pytest.approx(MIN + (LR - MIN) * 0.5 * (1 + math.cos(math.pi / 2)))


def test_resumable_from_step_number():
    a, b = sched("cosine"), sched("cosine")
    assert [a.lr_at(i) for i in range(40, 60)] == [b.lr_at(i) for i in range(40, 60)]


def test_bad_schedule():
    with pytest.raises(ConfigError, match="unknown lr schedule 'exp'"):
        LRSchedule("exp", LR, TOTAL)
    with pytest.raises(ConfigError, match="total_steps > 0"):
        LRSchedule("cosine", LR, 0)
