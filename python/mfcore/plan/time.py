"""Step-time estimate of a layout: compute from FLOPs at the device's achieved peak, each collective's
volume over the link it crosses, and the pipeline bubble (formulas in docs/planning.md).

    step = (m + (P - 1) / V) * (compute + TP + EP + PP per micro batch of the slowest stage) + DP

Collectives are counted as not overlapped with compute (mfcore reduces gradients after the last
micro batch), so the estimate is an upper bound for a runtime that overlaps them.
"""
from dataclasses import asdict, dataclass
from typing import Dict

from mfcore.plan.layout import Device, Layout, Workload
from mfcore.plan.memory import routed_copies, routed_shards, stage_layers
from mfcore.plan.shapes import LayerShape, ModelShape


@dataclass(frozen=True)
class StepTime:
    compute: float        # seconds per step, every micro batch, slowest stage
    tp_comm: float
    ep_comm: float
    pp_comm: float
    dp_comm: float
    bubble: float         # idle seconds of the pipeline fill and drain
    tp_bytes: float       # bytes one device sends+receives per step, per kind of collective
    ep_bytes: float
    pp_bytes: float
    dp_bytes: float

    @property
    def total(self) -> float:
        return self.compute + self.tp_comm + self.ep_comm + self.pp_comm + self.dp_comm + self.bubble

    @property
    def bubble_share(self) -> float:
        return self.bubble / self.total if self.total else 0.0

    def as_dict(self) -> Dict[str, float]:
        return {**asdict(self), "total": self.total}


def layer_flops(x: LayerShape, shape: ModelShape, layout: Layout, work: Workload) -> float:
    """Training FLOPs per token of one layer on one device (6 x matmul parameters + attention,
    the convention of :func:`mfcore.models.flops_per_token`), recomputation included."""
    matmul, routed = x.matmul_active, 0.0
    if x.moe:   # routed experts: the rows the device computes (memory.routed_copies), whole experts
        per_expert = x.experts / shape.routed_experts
        matmul -= shape.experts_per_token * per_expert
        routed = routed_copies(shape, layout, work) * per_expert / (layout.etp * routed_shards(layout))
    attention = work.seq_length * x.attn_flop_dims
    forward = 2.0 * ((matmul + attention) / layout.tp + routed)
    return 3.0 * forward + recomputed_forwards(layout) * forward \
        + (2.0 * attention / layout.tp if layout.recompute == "selective" else 0.0)


def recomputed_forwards(layout: Layout) -> int:
    """Forward passes run again for the backward: a pipeline stage's backward graph recomputes its
    stage (:mod:`mfcore.train.pipeline_step`), full recompute each layer."""
    return int(layout.pp > 1) + int(layout.recompute == "full")


def link(device: Device, span: int) -> float:
    """Bandwidth of a group whose ranks lie within ``span`` consecutive devices."""
    return device.intra_node_bw if span <= device.devices_per_node else device.inter_node_bw


def _stage_micro_batch(shape, layout, work, device, stage):
    """(compute s, TP bytes, EP bytes) of one micro batch on ``stage``."""
    tokens = work.seq_length * layout.micro_batch
    ids = stage_layers(len(shape.layers), layout.pp, layout.vpp, layout.pipeline_layers)[stage]
    layers = [shape.layers[i] for i in ids]
    last = stage == layout.pp - 1
    if last:
        layers = layers + list(shape.mtp)
    flops = tokens * sum(layer_flops(x, shape, layout, work) for x in layers)
    if last:
        head = 2.0 * shape.vocab * shape.hidden * (1 + len(shape.mtp)) / layout.tp
        flops += tokens * head * (3 + int(layout.pp > 1))
    rounds = 4 + 2 * recomputed_forwards(layout)   # TP collectives per layer: 2 fwd, 2 bwd, 2 per recompute
    act = tokens * shape.hidden * work.compute_bytes
    tp_bytes = len(layers) * rounds * 2 * (layout.tp - 1) / layout.tp * act
    # the all-gather dispatcher: every rank receives the other EP ranks' tokens (AllGather) and
    # sends their partial outputs back (reduce-scatter), each (EP - 1) x its own tokens; backward
    # (and a recompute) the same again
    moe_layers = sum(1 for x in layers if x.moe)
    ep_bytes = moe_layers * rounds * (layout.ep - 1) * act / routed_shards(layout)
    return flops / (device.peak_flops * device.efficiency), tp_bytes, ep_bytes


def step_time(shape: ModelShape, layout: Layout, work: Workload, device: Device,
              dense_params: float, expert_params: float) -> StepTime:
    """The :class:`StepTime` of ``layout``; ``dense_params``/``expert_params`` are one device's."""
    per_stage = [_stage_micro_batch(shape, layout, work, device, s) for s in range(layout.pp)]
    comp, tp_b, ep_b = max(per_stage, key=lambda r: r[0] + r[1] / device.intra_node_bw)
    m, p, v = layout.micro_batches, layout.pp, layout.vpp
    seq = layout.tp if layout.sp else 1
    pp_b = 0.0 if p == 1 else 2 * v * work.seq_length * layout.micro_batch * shape.hidden \
        * work.compute_bytes / seq
    tp_t = tp_b / link(device, layout.tp)
    ep_t = ep_b / link(device, layout.tp * layout.ep)
    pp_t = pp_b / link(device, layout.tp * layout.dp * 2 if p > 1 else 1)
    dp_b = 4.0 * (2 * (layout.dp - 1) / layout.dp * dense_params
                  + 2 * (layout.edp - 1) / layout.edp * expert_params)
    dp_t = dp_b / link(device, layout.tp * layout.dp)
    per_mb = comp + tp_t + ep_t + pp_t
    bubble = (p - 1) / v * per_mb
    return StepTime(m * comp, m * tp_t, m * ep_t, m * pp_t, dp_t, bubble,
                    m * tp_b, m * ep_b, m * pp_b, dp_b)
