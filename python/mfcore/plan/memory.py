"""Per-device memory of a layout: the pipeline stage that holds the most.

Every term and its source is written out in docs/planning.md; in short, per stage:

- weights 4 B/param (fp32 master), a 16-bit compute copy 2 B/param when computing in bf16/fp16,
  gradients 4 B/param plus mfcore's fp32 accumulation buffer 4 B/param, AdamW moments 8 B/param
  (divided by DP, or expert-DP for routed experts, with ZeRO-1);
- activations per micro batch counted tensor by tensor as Korthikanti et al. (2022) do, with
  recompute (none / selective / full) and sequence parallelism; one stage keeps its in-flight micro
  batches' (1F1B); a pipeline stage keeps only their inputs (Narayanan et al. 2021; Megatron's
  interleaved warm-up for V > 1), since mfcore's stage backward recomputes the stage's forward;
- under expert parallelism, the rows of mfcore's all-gather dispatcher (:func:`routed_copies`);
- the LM head's logits (vocab split by TP) and DeepSeek's MTP modules on the last stage;
- what the runtime keeps for itself (:class:`~mfcore.plan.layout.Device`): a fixed reserve plus,
  where the backend is calibrated for it (CPU), a share per decoder layer the stage compiles and a
  fixed share when the stage runs expert-parallel exchanges.
"""
from dataclasses import asdict, dataclass
from typing import Dict, List

from mfcore.models.deepseek_v3.config import local_expert_rows
from mfcore.parallel.pipeline_split import stage_counts
from mfcore.plan.layout import Device, Layout, Workload
from mfcore.plan.shapes import LayerShape, ModelShape


@dataclass(frozen=True)
class MemoryBreakdown:
    stage: int
    weights: float
    compute_copies: float
    gradients: float
    optimizer: float
    activations: float
    logits: float
    runtime: float

    @property
    def total(self) -> float:
        return (self.weights + self.compute_copies + self.gradients + self.optimizer + self.activations
                + self.logits + self.runtime)

    def as_dict(self) -> Dict[str, float]:
        return {**asdict(self), "total": self.total}


def stage_layers(n_layers: int, pp: int, vpp: int = 1, counts=None) -> List[List[int]]:
    """Layer indices of each pipeline rank: the trainer's own split of ``pp * vpp`` chunks
    (:func:`mfcore.parallel.pipeline_split.stage_counts`: ``counts`` as ``parallel.pipeline_layers``
    gives them, else balanced with the extra layers on the middle chunks first, so the embedding
    and LM-head stages stay light); chunk ``c`` runs on rank ``c % pp`` (Megatron's interleaving)."""
    stages: List[List[int]] = [[] for _ in range(pp)]
    start = 0
    for c, size in enumerate(stage_counts(n_layers, pp * vpp, counts)):
        stages[c % pp].extend(range(start, start + size))
        start += size
    return stages


def chunks_in_flight(layout: Layout, stage: int) -> int:
    """Micro-batch chunks whose activations a stage holds at its peak: ``min(P - i, m)`` for 1F1B,
    Megatron's interleaved warm-up ``2 (P - i - 1) + (V - 1) P + 1`` (at most ``m V``) for V > 1."""
    p, v, m = layout.pp, layout.vpp, layout.micro_batches
    if v == 1:
        return min(p - stage, m)
    return min(2 * (p - stage - 1) + (v - 1) * p + 1, m * v)


def routed_shards(layout: Layout) -> int:
    """Ranks the tokens of a MoE layer are split over for routing: the TP ranks when expert
    parallelism runs on sequence-parallel shards, else 1 (plain TP routes the gathered sequence and
    keeps the experts whole: every TP rank does the same routed work)."""
    return layout.tp if layout.sp and layout.ep > 1 else 1


def routed_copies(shape: ModelShape, layout: Layout, work: Workload) -> float:
    """(token, expert) rows a device computes and stores per token it routes.

    One rank holding every expert: top-k times the capacity factor (the busiest expert rank's load),
    or with the dense dispatch every expert on every token. Expert parallelism, mfcore's all-gather
    dispatcher (:mod:`mfcore.parallel.expert_parallel`): static shapes hold the worst case of every
    gathered token (EP of them per own token) — ``min(k, local experts)`` pairs each, dropless, or
    each source rank's capacity per local expert in capacity mode
    (:meth:`~mfcore.models.layers.moe_dispatch.TokenDispatcher.rows_of_local_experts`)."""
    k, ep = shape.experts_per_token, layout.ep
    if work.moe_dispatch == "dense":
        return shape.routed_experts / ep
    if ep == 1:
        return k * work.capacity_factor
    tokens = work.seq_length * layout.micro_batch // routed_shards(layout)
    capacity = work.capacity_factor if work.moe_dispatch == "capacity" else None
    return local_expert_rows(shape.routed_experts // ep, ep, tokens, k, shape.routed_experts, capacity) / tokens


def layer_activation(x: LayerShape, shape: ModelShape, layout: Layout, work: Workload) -> float:
    """Bytes one token stores in layer ``x`` for its backward, without recomputation."""
    w, tp = work.compute_bytes, layout.tp
    seq = tp if layout.sp else 1
    core = x.act_core / tp if layout.recompute == "selective" else 0.0
    dense = w * (x.act_seq / seq + x.act_tp / tp - core) + 4.0 * x.act_fp32
    if not x.moe:
        return dense
    per_copy = w * (x.act_routed / layout.etp + x.act_routed_whole)
    # under EP the all-gather dispatcher also holds every gathered token and its partial output
    gathered = w * 2 * shape.hidden * layout.ep if layout.ep > 1 else 0.0
    return dense + (routed_copies(shape, layout, work) * per_copy + gathered) / routed_shards(layout)


def stage_activations(shape: ModelShape, layout: Layout, work: Workload, stage: int) -> float:
    """Activation bytes of ``stage`` at its peak.

    One stage: every in-flight micro batch's stored activations (Megatron's 1F1B count). A
    pipeline: mfcore's stage backward is one compiled graph that recomputes the stage's forward
    (:mod:`mfcore.train.pipeline_step`), so a waiting micro batch keeps only its chunk's input, and
    one micro batch at a time holds the chunk's activations, inside the backward graph."""
    tokens = work.seq_length * layout.micro_batch
    ids = stage_layers(len(shape.layers), layout.pp, layout.vpp, layout.pipeline_layers)[stage]
    layers = [shape.layers[i] for i in ids]
    if not layers:
        return 0.0
    per_chunk_layers = len(layers) / layout.vpp
    seq = layout.tp if layout.sp else 1
    layer_input = work.compute_bytes * shape.hidden / seq
    in_flight = chunks_in_flight(layout, stage)
    waiting = 0.0
    if layout.pp > 1:
        waiting, in_flight = layer_input * in_flight, 1
    if layout.recompute == "full":
        stored = layer_input * per_chunk_layers * in_flight
        working = max(layer_activation(x, shape, layout, work) for x in layers)
        return tokens * (waiting + stored + working)
    per_layer = sum(layer_activation(x, shape, layout, work) for x in layers) / len(layers)
    return tokens * (waiting + per_layer * per_chunk_layers * in_flight)


def head_activations(shape: ModelShape, layout: Layout, work: Workload) -> float:
    """Last stage: logits (compute dtype), their fp32 copy and gradient (vocab split by TP), for the
    main head and each MTP module, plus the MTP layers' own activations for one micro batch."""
    tokens = work.seq_length * layout.micro_batch
    w = work.compute_bytes
    per_token = shape.vocab / layout.tp * ((w if w < 4 else 0) + 8.0)
    heads = 1 + len(shape.mtp)
    mtp = sum(layer_activation(x, shape, layout, work) + w * 4 * shape.hidden for x in shape.mtp)
    return tokens * (heads * per_token + mtp)


def stage_parameters(shape: ModelShape, layout: Layout, stage: int):
    """(dense, expert) parameters one device of ``stage`` holds."""
    tp = layout.tp
    ids = stage_layers(len(shape.layers), layout.pp, layout.vpp, layout.pipeline_layers)[stage]
    dense = sum(shape.layers[i].split / tp + shape.layers[i].replicated for i in ids)
    experts = sum(shape.layers[i].experts for i in ids) / (layout.ep * layout.etp)
    last = stage == layout.pp - 1
    if stage == 0:
        dense += shape.embedding / tp
    if last:
        dense += shape.head / tp + shape.final_norm
        # the last stage needs the embedding too when it is not the first: tied head, MTP input
        if layout.pp > 1 and (shape.head == 0 or shape.mtp):
            dense += shape.embedding / tp
        dense += sum(x.split / tp + x.replicated + shape.mtp_extra for x in shape.mtp)
        experts += sum(x.experts for x in shape.mtp) / (layout.ep * layout.etp)
    return dense, experts


def stage_memory(shape: ModelShape, layout: Layout, work: Workload, device: Device,
                 stage: int) -> MemoryBreakdown:
    dense, experts = stage_parameters(shape, layout, stage)
    params = dense + experts
    moments = 8.0 * (dense / (layout.dp if layout.zero else 1) + experts / (layout.edp if layout.zero else 1))
    copies = work.compute_bytes * params if work.compute_bytes < 4 else 0.0
    factor = device.activation_factor_mla if shape.mla else device.activation_factor
    acts = stage_activations(shape, layout, work, stage) * factor
    logits = head_activations(shape, layout, work) * factor \
        if stage == layout.pp - 1 else 0.0
    runtime = device.runtime_bytes + device.runtime_bytes_per_layer * compiled_layers(shape, layout, stage)
    if layout.ep > 1 and experts:
        runtime += device.runtime_bytes_expert_parallel
    return MemoryBreakdown(stage, 4.0 * params, copies, 8.0 * params, moments, acts, logits, runtime)


def compiled_layers(shape: ModelShape, layout: Layout, stage: int) -> int:
    """Decoder layers in ``stage``'s compiled graphs: its own, and the MTP modules on the last."""
    ids = stage_layers(len(shape.layers), layout.pp, layout.vpp, layout.pipeline_layers)[stage]
    return len(ids) + (len(shape.mtp) if stage == layout.pp - 1 else 0)


def memory_per_device(shape: ModelShape, layout: Layout, work: Workload, device: Device) -> MemoryBreakdown:
    """The breakdown of the stage that needs the most memory."""
    return max((stage_memory(shape, layout, work, device, s) for s in range(layout.pp)),
               key=lambda m: m.total)
