"""Mixed precision: the loss scaler (compute dtypes by name: :mod:`mfcore.models.dtypes`).

float16 gradients underflow without a loss scale. The dynamic scaler halves the scale (and the
step is skipped) whenever a gradient is not finite, and doubles it after ``window`` clean steps.
The scaler lives on the host: the step reports whether the gradients were finite, the trainer asks
the scaler, so skipping costs nothing in the graph and the state is two plain numbers to checkpoint.
"""
from dataclasses import dataclass

@dataclass
class LossScaler:
    """``mode``: dynamic, static or none. ``update(finite)`` returns whether to apply the step."""
    mode: str = "none"
    scale: float = 1.0
    window: int = 1000
    min_scale: float = 1.0
    good_steps: int = 0

    def update(self, finite: bool) -> bool:
        if self.mode != "dynamic":
            return finite
        if not finite:
            self.scale = max(self.min_scale, self.scale / 2.0)
            self.good_steps = 0
            return False
        self.good_steps += 1
        if self.good_steps >= self.window:
            self.scale *= 2.0
            self.good_steps = 0
        return True

    def state_dict(self) -> dict:
        return {"mode": self.mode, "scale": self.scale, "good_steps": self.good_steps}

    def load_state_dict(self, state: dict) -> None:
        self.scale = float(state["scale"])
        self.good_steps = int(state["good_steps"])

def build_loss_scaler(precision_cfg) -> LossScaler:
    """No scaling unless computing in float16 (float32 and bfloat16 have float32's exponent range)."""
    if precision_cfg.compute_dtype != "float16" or precision_cfg.loss_scale == "none":
        return LossScaler("none", 1.0)
    return LossScaler(precision_cfg.loss_scale, precision_cfg.initial_loss_scale,
                      precision_cfg.loss_scale_window, precision_cfg.min_loss_scale)
