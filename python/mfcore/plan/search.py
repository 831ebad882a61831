"""Evaluate one layout, or enumerate every layout of a device count and rank those that fit by their
estimated step time."""
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence

from mfcore.models.config import DeepseekV3Config
from mfcore.plan.layout import RECOMPUTE_MODES, Device, Layout, Workload
from mfcore.plan.memory import MemoryBreakdown, memory_per_device, stage_parameters
from mfcore.plan.shapes import ModelShape, model_shape
from mfcore.plan.support import expert_parallel_sizes, unrunnable
from mfcore.plan.time import StepTime, step_time


@dataclass(frozen=True)
class Plan:
    layout: Layout
    memory: MemoryBreakdown
    time: StepTime
    device: Device
    unrunnable: tuple           # why today's code cannot run it (empty: it can)

    @property
    def fits(self) -> bool:
        return self.device.memory is None or self.memory.total <= self.device.memory

    @property
    def runnable(self) -> bool:
        return not self.unrunnable


def evaluate(model_cfg, layout: Layout, work: Workload, device: Device,
             shape: Optional[ModelShape] = None) -> Plan:
    """Memory and step time of ``layout`` for ``model_cfg``."""
    shape = shape or model_shape(model_cfg)
    memory = memory_per_device(shape, layout, work, device)
    dense, experts = max((stage_parameters(shape, layout, s) for s in range(layout.pp)), key=sum)
    time = step_time(shape, layout, work, device, dense, experts)
    return Plan(layout, memory, time, device, tuple(unrunnable(layout, model_cfg)))


def _divisors(n: int) -> List[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _tensor_sizes(model_cfg, devices: int, device: Device) -> List[int]:
    heads = [model_cfg.num_attention_heads, getattr(model_cfg, "num_key_value_heads", 1)]
    if isinstance(model_cfg, DeepseekV3Config):
        heads = heads[:1]      # MLA has no separate key/value heads to split
    return [t for t in _divisors(min(devices, device.devices_per_node)) if all(h % t == 0 for h in heads)]


def _expert_sizes(model_cfg, tp: int, dp: int) -> List[int]:
    return expert_parallel_sizes(getattr(model_cfg, "n_routed_experts", 0), tp, dp)


def candidate_layouts(model_cfg, devices: int, work: Workload, device: Device,
                      micro_batch_sizes: Sequence[int] = (1, 2, 4),
                      recompute: Sequence[str] = RECOMPUTE_MODES) -> Iterator[Layout]:
    """Every layout of ``devices`` the model and batch allow (SP on with TP, ZeRO-1 on with DP)."""
    n_layers = model_cfg.num_hidden_layers
    for tp in _tensor_sizes(model_cfg, devices, device):
        for pp in [p for p in _divisors(devices // tp) if p <= n_layers]:
            dp = devices // (tp * pp)
            for mb in micro_batch_sizes:
                if work.global_batch_size % (mb * dp):
                    continue
                m = work.global_batch_size // (mb * dp)
                if pp > 1 and m < pp:
                    continue
                vpps = [1] + ([2] if pp > 1 and m % pp == 0 and n_layers >= 2 * pp else [])
                for vpp in vpps:
                    for ep in _expert_sizes(model_cfg, tp, dp):
                        for mode in recompute:
                            yield Layout(tp=tp, pp=pp, vpp=vpp, dp=dp, ep=ep, sp=tp > 1,
                                         zero=dp > 1, micro_batch=mb, micro_batches=m, recompute=mode)


@dataclass(frozen=True)
class SearchResult:
    best: List[Plan]            # layouts that fit, fastest first
    searched: int
    fitting: int
    smallest: Optional[Plan]    # the layout needing the least memory (when nothing fits)


def search(model_cfg, devices: int, work: Workload, device: Device, top: int = 5,
           runnable_only: bool = False) -> SearchResult:
    """Layouts of ``devices`` that fit ``device.memory``, ranked by estimated step time."""
    shape = model_shape(model_cfg)
    fitting, searched, smallest = [], 0, None
    for layout in candidate_layouts(model_cfg, devices, work, device):
        plan = evaluate(model_cfg, layout, work, device, shape)
        if runnable_only and not plan.runnable:
            continue
        searched += 1
        if smallest is None or plan.memory.total < smallest.memory.total:
            smallest = plan
        if plan.fits:
            fitting.append(plan)
    fitting.sort(key=lambda p: (p.time.total, p.memory.total))
    return SearchResult(fitting[:top], searched, len(fitting), smallest)
