"""A parallel layout, the device it runs on and the workload: the planner's three inputs.

The rank grid is Megatron's: TP innermost, then DP (with EP carved out of it), then PP. Experts are
laid out as ``etp x ep x edp = tp x dp`` inside one pipeline stage, so expert parameters are
replicated (and their optimizer states sharded by ZeRO-1) over ``edp = tp * dp / (etp * ep)`` ranks.
"""
import re
from dataclasses import dataclass, replace
from typing import Optional, Tuple

from mfcore.errors import ConfigError

GIB = 1024 ** 3
RECOMPUTE_MODES = ("none", "selective", "full")


@dataclass(frozen=True)
class Layout:
    tp: int = 1                  # tensor parallel
    pp: int = 1                  # pipeline stages
    vpp: int = 1                 # virtual stages per pipeline rank (interleaved 1F1B when > 1)
    dp: int = 1                  # data parallel
    ep: int = 1                  # expert parallel (inside tp x dp)
    etp: int = 1                 # expert tensor parallel (1: experts whole; tp: split like dense)
    sp: bool = False             # sequence parallelism (with tp > 1)
    zero: bool = False           # ZeRO-1: optimizer moments sharded over (expert-)DP
    micro_batch: int = 1         # samples per micro batch
    micro_batches: int = 1       # micro batches per step per DP rank (m)
    recompute: str = "none"      # none | selective | full
    pipeline_layers: Optional[Tuple[int, ...]] = None   # layers per (virtual) stage; None: balanced

    @property
    def devices(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def edp(self) -> int:
        """Expert data-parallel size: replicas of one expert in a stage."""
        return max(1, self.tp * self.dp // (self.etp * self.ep))

    def describe(self) -> str:
        parts = [f"TP{self.tp}", f"PP{self.pp}" + (f"xV{self.vpp}" if self.vpp > 1 else ""),
                 f"DP{self.dp}"]
        if self.ep > 1:
            parts.append(f"EP{self.ep}" + (f"/ETP{self.etp}" if self.etp > 1 else ""))
        flags = ["SP"] if self.sp else []
        flags += ["ZeRO-1"] if self.zero else []
        return (" x ".join(parts) + (" " + "+".join(flags) if flags else "")
                + f", micro batch {self.micro_batch} x {self.micro_batches}, recompute {self.recompute}")

    def with_(self, **changes) -> "Layout":
        return replace(self, **changes)


@dataclass(frozen=True)
class Device:
    """One accelerator and its links. ``runtime_bytes`` is memory the runtime keeps for itself
    (kernels, communication buffers, graph), plus ``runtime_bytes_per_layer`` for every decoder
    layer (MTP modules included) compiled into the process's graphs; ``activation_factor`` scales the
    counted activations for a backend that stores more intermediates than the layers' own
    (``activation_factor_mla`` for DeepSeek-V3's MLA/MoE layers; see docs/planning.md)."""
    name: str = "Ascend"
    memory: Optional[float] = None     # bytes; None: no fit check
    peak_flops: float = 3.13e14        # dense 16-bit FLOP/s (Atlas 800T A2 / 910B)
    efficiency: float = 0.5            # achieved share of peak on the model's matmuls
    intra_node_bw: float = 196e9       # bytes/s per device inside a node (HCCS)
    inter_node_bw: float = 25e9        # bytes/s per device between nodes (200 Gb/s RoCE)
    devices_per_node: int = 8
    runtime_bytes: float = 3.0 * GIB
    runtime_bytes_per_layer: float = 0.0
    runtime_bytes_expert_parallel: float = 0.0   # more, fixed, when the process runs EP exchanges
    activation_factor: float = 1.0
    activation_factor_mla: float = 1.0


# The CPU backend, calibrated on this repository's measurements (docs/planning.md, "Checked against
# measurement", tools/measure_train_memory.py): MindSpore's CPU graph keeps unfused intermediates
# (RMSNorm's, RoPE's, casts, SiLU's) beside the tensors a fused kernel keeps, and the runtime holds a
# fixed amount after the first step (thread pools, checkpoint staging) plus, per decoder layer in the
# compiled graphs, its kernels and their per-node memory: measured directly as 28-30 MiB per layer at
# hidden size 64 (2 vs 8 layers: 158 vs 335 MiB), where the layer's tensors are negligible. So a
# pipeline stage's runtime is its own layers', not a whole model's. A DeepSeek-V3 model (MLA with its
# LoRA norms, the router, the sort and gathers of the dispatch) keeps more per counted element than a
# Llama one since RoPE stopped broadcasting implicitly (which had cost ~100 MB per rotation at 160M).
# Fitted together (smallest largest relative error: 16.8%) to the 8 one-process and 20 distributed
# rank rows of docs/planning.md, measured as peak-since-baseline VmHWM on 2026-12-03.
CPU_RUNTIME_BYTES = 85 * 2 ** 20
CPU_RUNTIME_BYTES_PER_LAYER = 27 * 2 ** 20
CPU_ACTIVATION_FACTOR = 1.25
CPU_ACTIVATION_FACTOR_MLA = 2.25
# Expert parallelism on CPU adds a fixed amount to the accumulate graph beyond the tensors counted
# (the dispatcher's rows and gathered tokens): measured under DP2 x EP2 against DP2 as 72 MiB
# (tiny-deepseek-v3) and 63 MiB (the 18 M DeepSeek-V3), not growing with the MoE layers, not the
# communication group (0 MiB measured) nor the ep_comm_share probe (0 MiB); the smaller is taken.
CPU_RUNTIME_BYTES_EXPERT_PARALLEL = 63 * 2 ** 20


def device_for(target: str, **overrides) -> Device:
    """The default :class:`Device` of a run's ``run.device_target``, with ``overrides`` applied."""
    if target == "CPU":
        base = Device(name="CPU", peak_flops=1.2e11, efficiency=1.0, intra_node_bw=5e9, inter_node_bw=1e9,
                      devices_per_node=8, runtime_bytes=CPU_RUNTIME_BYTES,
                      runtime_bytes_per_layer=CPU_RUNTIME_BYTES_PER_LAYER,
                      runtime_bytes_expert_parallel=CPU_RUNTIME_BYTES_EXPERT_PARALLEL,
                      activation_factor=CPU_ACTIVATION_FACTOR,
                      activation_factor_mla=CPU_ACTIVATION_FACTOR_MLA)
    else:
        base = Device(name=target)
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class Workload:
    seq_length: int
    global_batch_size: int
    compute_bytes: int = 2         # bytes of an activation element (2: bf16/fp16, 4: fp32)
    moe_dispatch: str = "dropless"  # dropless | capacity | dense (every expert on every token)
    capacity_factor: float = 1.0   # load of the busiest expert rank vs perfect balance


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(GiB|GB|MiB|MB|TiB|TB|G|M|T)?\s*$", re.IGNORECASE)
_UNITS = {"gib": GIB, "g": GIB, "gb": 1e9, "mib": 1024 ** 2, "m": 1024 ** 2, "mb": 1e6,
          "tib": 1024 ** 4, "t": 1024 ** 4, "tb": 1e12, None: GIB}


def parse_memory(text: str) -> float:
    """``64GiB`` / ``64GB`` / ``64`` (GiB) → bytes."""
    match = _SIZE.match(str(text))
    if not match:
        raise ConfigError(f"device memory {text!r}: expected a size like 64GiB, 64GB or 65536MiB")
    unit = match.group(2).lower() if match.group(2) else None
    return float(match.group(1)) * _UNITS[unit]
