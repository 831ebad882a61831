"""Learning-rate schedules with linear warmup: constant, linear, cosine and warmup-stable-decay.

A schedule is a pure function of the step number (``lr_at(step)``), so resuming from a step needs no
state beyond the step itself (owned by the trainer's counters). As a stateful component its state
is its definition, recorded for the reader; on resume the configured schedule wins (a run may be
extended or re-scheduled on purpose). ``step`` counts finished optimizer steps: the first update uses
``lr_at(0)``. Warmup goes linearly from ``lr / warmup`` at step 0 to ``lr`` at step ``warmup - 1``
(Megatron-style, so the first step does not waste a batch on lr = 0).
"""
import math
from dataclasses import dataclass

from mfcore.errors import ConfigError

KINDS = ("constant", "linear", "cosine", "wsd")


@dataclass(frozen=True)
class LRSchedule:
    kind: str
    lr: float
    total_steps: int
    warmup_steps: int = 0
    min_lr: float = 0.0
    decay_fraction: float = 0.1
    decay_style: str = "linear"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"unknown lr schedule '{self.kind}'; choose one of {', '.join(KINDS)}")
        if self.total_steps <= 0 or self.warmup_steps < 0:
            raise ConfigError(f"lr schedule needs total_steps > 0 and warmup_steps >= 0, "
                              f"got {self.total_steps} and {self.warmup_steps}")

    def lr_at(self, step: int) -> float:
        """Learning rate of the update that follows ``step`` finished steps."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return self.lr
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        if self.kind == "linear":
            return self.min_lr + (self.lr - self.min_lr) * (1.0 - progress)
        if self.kind == "cosine":
            return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self._wsd(step, decay_steps)

    def state_dict(self) -> dict:
        return {"kind": self.kind, "lr": self.lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "min_lr": self.min_lr}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore (see the module doc); the saved definition is informative."""

    def _wsd(self, step: int, decay_steps: int) -> float:
        """Warmup-stable-decay: hold ``lr``, then decay over the last ``decay_fraction`` of the steps."""
        length = max(1, round(decay_steps * self.decay_fraction))
        start = self.warmup_steps + decay_steps - length
        if step < start:
            return self.lr
        frac = min(1.0, (step - start) / length)
        if self.decay_style == "cosine":
            return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))
        return self.min_lr + (self.lr - self.min_lr) * (1.0 - frac)


def build_schedule(schedule_cfg, lr: float, total_steps: int) -> LRSchedule:
    """The schedule of the config's ``schedule`` section for a run of ``total_steps``."""
    return LRSchedule(kind=schedule_cfg.name, lr=lr, total_steps=total_steps,
                      warmup_steps=schedule_cfg.warmup_steps, min_lr=schedule_cfg.min_lr,
                      decay_fraction=schedule_cfg.decay_fraction,
                      decay_style=schedule_cfg.decay_style)
