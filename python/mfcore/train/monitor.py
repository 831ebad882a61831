"""What a person watching a run sees: one line per ``log_interval`` steps (or a progress bar in an
interactive terminal), the same metrics appended to ``metrics.jsonl`` and written to TensorBoard
(with the resolved config as text).

Metric names (the JSONL keys and TensorBoard tags ``train/<name>``): ``step``, ``total_steps``,
``consumed_tokens``, ``loss``, ``lr``, ``grad_norm``, ``loss_scale``, ``tokens_per_s``,
``step_time``, ``mfu``, ``data_wait`` (seconds per step), ``data_wait_share``, ``eta_s``,
``skipped`` (steps skipped in the interval), ``memory_gb`` (peak memory so far in GB: the device's
on Ascend/GPU, the process's peak resident set on CPU; see :mod:`mfcore.train.footprint`); MoE models add ``expert_load`` (tokens routed to each
expert of each MoE layer in the interval, JSONL only), ``expert_imbalance`` (the worst layer's
max/mean load), ``expert_tokens_min``/``_mean``/``_max`` (tokens per expert in the interval, over
all MoE layers) and, with ``moe_dispatch: capacity``, ``dropped_tokens`` (token-expert pairs dropped
over capacity in the interval, all layers and ranks); with ``parallel.expert`` > 1, ``ep_comm_share``
(the expert-parallel token exchange's share of the step time: its time measured once after the first
step x exchanges per step / the interval's mean step time, see :mod:`mfcore.parallel.expert_timing`);
validation records have ``valid_loss`` and ``valid_ppl``.
"""
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class IntervalMeter:
    """Sums step time, data-wait time, tokens and losses between two log lines."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.steps = self.skipped = self.tokens = self.loss_tokens = 0
        self.step_time = self.data_wait = self.loss_sum = 0.0

    def add(self, step_time: float, data_wait: float, tokens: int, loss_sum: float, loss_tokens: int,
            skipped: bool):
        self.steps += 1
        self.skipped += int(skipped)
        self.step_time += step_time
        self.data_wait += data_wait
        self.tokens += tokens
        self.loss_sum += loss_sum
        self.loss_tokens += loss_tokens

    def summary(self) -> Dict[str, float]:
        n = max(self.steps, 1)
        total_time = max(self.step_time, 1e-9)
        return {"loss": self.loss_sum / max(self.loss_tokens, 1), "step_time": self.step_time / n,
                "data_wait": self.data_wait / n, "data_wait_share": self.data_wait / total_time,
                "tokens_per_s": self.tokens / total_time, "skipped": self.skipped}


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def format_count(n: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def format_line(m: Dict[str, Any]) -> str:
    """The human log line of one metrics record."""
    parts = [f"step {m['step']}/{m['total_steps']}", f"tokens {format_count(m['consumed_tokens'])}",
             f"loss {m['loss']:.4f}", f"lr {m['lr']:.3e}", f"grad {m['grad_norm']:.3f}"]
    if m.get("loss_scale") is not None:
        parts.append(f"scale {m['loss_scale']:g}")
    parts += [f"{m['tokens_per_s']:.0f} tok/s", f"{m['step_time'] * 1000:.0f} ms/step"]
    if m.get("mfu") is not None:
        parts.append(f"MFU {100 * m['mfu']:.1f}%")
    if m.get("memory_gb") is not None:
        parts.append(f"mem {m['memory_gb']:.2f} GB")
    if m.get("expert_imbalance") is not None:
        parts.append(f"experts max/mean {m['expert_imbalance']:.2f}")
    if m.get("expert_tokens_max") is not None:
        parts.append(f"expert tokens min/mean/max {m['expert_tokens_min']}/{m['expert_tokens_mean']:.1f}/"
                     f"{m['expert_tokens_max']}")
    if m.get("dropped_tokens") is not None:
        parts.append(f"dropped {m['dropped_tokens']}")
    if m.get("ep_comm_share") is not None:
        parts.append(f"EP comm {100 * m['ep_comm_share']:.1f}%")
    parts += [f"data {100 * m['data_wait_share']:.1f}%", f"ETA {format_duration(m['eta_s'])}"]
    if m.get("skipped"):
        parts.append(f"skipped {m['skipped']}")
    return " | ".join(parts)


class Monitor:
    """Writes metrics to the console, ``metrics.jsonl`` and TensorBoard (only on the main rank)."""

    def __init__(self, output_dir, total_steps: int, logging_cfg, config_text: str = "",
                 enabled: bool = True, start_step: int = 0, stream=None):
        self.out = Path(output_dir)
        self.total_steps = total_steps
        self.cfg = logging_cfg
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self.started = time.perf_counter()
        self.start_step = start_step
        self.jsonl = self.tb = self.bar = None
        if enabled:
            self._open(config_text)

    def _open(self, config_text: str) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        if self.cfg.jsonl:
            self.jsonl = open(self.out / METRICS_FILE, "a", encoding="utf-8")
        if self.cfg.tensorboard:
            from tensorboardX import SummaryWriter
            self.tb = SummaryWriter(str(self.out / TENSORBOARD_DIR))
            if config_text:
                self.tb.add_text("config", "```\n" + config_text + "\n```", self.start_step)
        if self._use_bar():
            from tqdm import tqdm
            self.bar = tqdm(total=self.total_steps, initial=self.start_step, unit="step",
                            dynamic_ncols=True, file=self.stream)

    def _use_bar(self) -> bool:
        mode = self.cfg.progress_bar
        return mode == "always" or (mode == "auto" and getattr(self.stream, "isatty", lambda: False)())

    def eta(self, step: int, step_time: float) -> float:
        return max(0, self.total_steps - step) * step_time

    def log_train(self, record: Dict[str, Any]) -> None:
        """One record (see the module docstring) → line/bar, JSONL, TensorBoard."""
        if not self.enabled:
            return
        self._write(record, "train")
        if self.bar is not None:
            self.bar.update(record["step"] - self.bar.n)
            self.bar.set_postfix_str(format_line(record).split(" | ", 2)[2])
        else:
            self.print(format_line(record))

    def log_valid(self, step: int, loss: float, ppl: float) -> None:
        if not self.enabled:
            return
        self._write({"step": step, "valid_loss": loss, "valid_ppl": ppl}, "valid")
        self.print(f"validation at step {step}: loss {loss:.4f} | perplexity {ppl:.3f}")

    def log_test(self, step: int, loss: float, ppl: float, samples: int) -> None:
        if not self.enabled:
            return
        self._write({"step": step, "test_loss": loss, "test_ppl": ppl, "test_samples": samples}, "test")
        self.print(f"test split after step {step}: loss {loss:.4f} | perplexity {ppl:.3f} "
                   f"({samples} samples)")

    def _write(self, record: Dict[str, Any], group: str) -> None:
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(record) + "\n")
            self.jsonl.flush()
        if self.tb is not None:
            for k, v in record.items():
                if k not in ("step", "total_steps") and isinstance(v, (int, float)) and v is not None:
                    self.tb.add_scalar(f"{group}/{k}", v, record["step"])

    def print(self, text: str) -> None:
        """A message that does not break the progress bar."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        for h in (self.bar, self.tb, self.jsonl):
            if h is not None:
                h.close()
        self.bar = self.tb = self.jsonl = None


def read_metrics(output_dir) -> list:
    """Records of ``metrics.jsonl`` in an output directory (empty list when there is none)."""
    path = Path(output_dir) / METRICS_FILE
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
