"""Preflight: the size check ``mf-train`` runs before it allocates anything, the same one
``--dry-run`` reports. A model or sequence whose planned per-device memory (:mod:`mfcore.plan`,
the one memory model) exceeds the memory it would run in is refused with the figures, instead of
growing until the kernel kills the process.

The memory is ``plan.device_memory_gib`` when set (one device), else the host's memory on a CPU
target (every rank of the host shares it, so the plan is multiplied by the ranks this host runs);
on other targets it is unchecked unless configured.
"""
import os
from dataclasses import dataclass
from typing import Dict, Optional

from mfcore.config.schema import RunConfig
from mfcore.errors import ConfigError

GIB = 1024 ** 3


@dataclass
class FitReport:
    params: int
    per_device: Dict[str, float]   # bytes of the planner's terms (weights, gradients, activations, ...)
    processes: int                 # sharing `limit` (ranks on this host for host memory)
    limit: Optional[float]         # bytes, None when unknown
    limit_name: str

    @property
    def needed(self) -> float:
        return sum(self.per_device.values()) * self.processes

    def problem(self) -> Optional[str]:
        if self.limit is None or self.needed <= self.limit:
            return None
        parts = ", ".join(f"{k.replace('_', ' ')} {v / GIB:.1f}" for k, v in self.per_device.items() if v)
        ranks = f" x {self.processes} ranks on this host" if self.processes > 1 else ""
        return (f"the model ({self.params / 1e9:.3f} B parameters) needs about {self.needed / GIB:.1f} GiB "
                f"({parts} GiB per device{ranks}), more than the {self.limit_name} of "
                f"{self.limit / GIB:.1f} GiB; use a smaller model, data.seq_length or "
                "training.micro_batch_size, recompute.mode, more parallel ranks (mf-train plan lists "
                "layouts that fit), or set plan.device_memory_gib if this figure is wrong")

    def line(self) -> str:
        if self.limit is None:
            return "memory check: not checked (set plan.device_memory_gib)"
        verdict = "fits" if self.problem() is None else "DOES NOT FIT"
        return f"memory check: {verdict}, {self.needed / GIB:.2f} of {self.limit / GIB:.2f} GiB {self.limit_name}"


def memory_limit(cfg: RunConfig):
    """(bytes, what they are) the run must fit in, or (None, '') when unknown."""
    if cfg.plan.device_memory_gib is not None:
        return cfg.plan.device_memory_gib * GIB, "plan.device_memory_gib"
    if cfg.run.device_target == "CPU":
        import psutil
        return float(psutil.virtual_memory().total), "host memory"
    return None, ""


def ranks_on_this_host(cfg: RunConfig) -> int:
    """Ranks sharing this host's memory: mf-launch's --nproc-per-node, else the whole job."""
    local = os.environ.get("MFCORE_LOCAL_WORLD_SIZE")
    if local and local.isdigit():
        return int(local)
    return cfg.parallel.ranks


def check_fit(cfg: RunConfig, model_cfg) -> FitReport:
    """The planner's memory per device against the memory; never builds anything."""
    from mfcore.models import count_parameters
    from mfcore.plan import plan_run
    terms = plan_run(cfg, model_cfg).memory.as_dict()
    terms.pop("total")
    limit, name = memory_limit(cfg)
    processes = ranks_on_this_host(cfg) if cfg.plan.device_memory_gib is None else 1
    return FitReport(count_parameters(model_cfg), terms, processes, limit, name)


def preflight(cfg: RunConfig, model_cfg) -> FitReport:
    """Raise ConfigError naming the figures when the run cannot fit; else the report."""
    report = check_fit(cfg, model_cfg)
    problem = report.problem()
    if problem:
        raise ConfigError(f"{cfg.run.name}: {problem}")
    return report
