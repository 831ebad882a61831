"""The NaN/Inf and loss-spike policy: decide per step whether its update is applied.

- A non-finite gradient is never applied. With dynamic fp16 loss scaling an overflow is expected
  now and then (the scaler lowers the scale); it only counts as a bad step once the scale is at its
  minimum.
- With ``spike_factor = k``, a step whose grad norm exceeds k × the running mean of the last
  ``spike_window`` applied steps is skipped (after ``spike_warmup`` applied steps).
- After ``max_bad_steps`` consecutive bad steps the run stops with :class:`TrainingDivergedError`.
"""
import math
from collections import deque
from dataclasses import dataclass
from typing import Optional

from mfcore.errors import MfcoreError


class TrainingDivergedError(MfcoreError):
    """Too many consecutive non-finite or spiking steps."""


@dataclass
class Verdict:
    apply: bool
    reason: Optional[str] = None     # why the step is skipped ("overflow", "non-finite", "spike")


class FaultPolicy:
    def __init__(self, max_bad_steps: int = 5, spike_factor: Optional[float] = None,
                 spike_window: int = 50, spike_warmup: int = 20):
        self.max_bad_steps = max_bad_steps
        self.spike_factor = spike_factor
        self.spike_warmup = spike_warmup
        self.norms = deque(maxlen=spike_window)
        self.applied = 0
        self.consecutive_bad = 0

    def judge(self, step: int, grad_norm: float, expected_overflow: bool = False) -> Verdict:
        """The verdict on step ``step`` with this (unscaled) grad norm; raises after too many bad."""
        if not math.isfinite(grad_norm):
            if expected_overflow:
                return Verdict(False, "overflow")
            return self._bad(step, "non-finite", f"gradient norm is {grad_norm}")
        if self._is_spike(grad_norm):
            mean = sum(self.norms) / len(self.norms)
            return self._bad(step, "spike", f"grad norm {grad_norm:.4g} > {self.spike_factor:g} x "
                             f"running mean {mean:.4g}")
        self.consecutive_bad = 0
        self.applied += 1
        self.norms.append(grad_norm)
        return Verdict(True)

    def _is_spike(self, grad_norm: float) -> bool:
        if self.spike_factor is None or self.applied < self.spike_warmup or not self.norms:
            return False
        return grad_norm > self.spike_factor * (sum(self.norms) / len(self.norms))

    def _bad(self, step: int, reason: str, detail: str) -> Verdict:
        self.consecutive_bad += 1
        if self.consecutive_bad >= self.max_bad_steps:
            raise TrainingDivergedError(
                f"training stopped at step {step}: {self.consecutive_bad} consecutive bad steps "
                f"(last: {detail}); lower optimizer.lr, raise faults.max_bad_steps or resume from "
                f"an earlier checkpoint")
        return Verdict(False, reason)

    def state_dict(self) -> dict:
        return {"norms": list(self.norms), "applied": self.applied, "consecutive_bad": self.consecutive_bad}

    def load_state_dict(self, state: dict) -> None:
        self.norms.clear()
        self.norms.extend(state["norms"])
        self.applied = int(state["applied"])
        self.consecutive_bad = int(state["consecutive_bad"])


def build_fault_policy(faults_cfg) -> FaultPolicy:
    return FaultPolicy(faults_cfg.max_bad_steps, faults_cfg.spike_factor, faults_cfg.spike_window,
                       faults_cfg.spike_warmup)
