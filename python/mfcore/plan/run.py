"""The planner's view of a run config (``mf-train --dry-run``, ``mf-train plan --config``): its
layout, workload and device, read from the config's sections without importing the trainer."""
from mfcore.plan.layout import GIB, Device, Layout, Workload, device_for
from mfcore.plan.search import Plan, evaluate

COMPUTE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def layout_of(cfg) -> Layout:
    """The :class:`Layout` a run config declares."""
    p, t = cfg.parallel, cfg.training
    dp = max(1, p.data)
    per_step = max(1, t.micro_batch_size) * dp
    return Layout(tp=p.tensor, pp=p.pipeline, vpp=p.virtual_stages, dp=dp, ep=p.expert, etp=p.expert_tensor,
                  sp=p.sequence_parallel, zero=p.optimizer_sharding, micro_batch=t.micro_batch_size,
                  micro_batches=max(1, t.global_batch_size // per_step), recompute=cfg.recompute.mode,
                  pipeline_layers=None if p.pipeline_layers is None else tuple(p.pipeline_layers))


def workload_of(cfg, model_cfg=None) -> Workload:
    """Sequence, batch and precision of a run; the MoE dispatch and capacity factor are the model's
    (``model.overrides.moe_dispatch`` / ``capacity_factor``; DeepSeek-V3 defaults to dropless)."""
    return Workload(seq_length=cfg.data.seq_length, global_batch_size=cfg.training.global_batch_size,
                    compute_bytes=COMPUTE_BYTES[cfg.precision.compute_dtype],
                    moe_dispatch=getattr(model_cfg, "moe_dispatch", None) or "dropless",
                    capacity_factor=getattr(model_cfg, "capacity_factor", None) or 1.0)


def device_of(cfg) -> Device:
    """The device a run declares: ``run.device_target``'s defaults, then the ``plan`` section and
    ``logging.peak_flops``."""
    p = cfg.plan
    gbs = 1e9
    return device_for(
        cfg.run.device_target,
        memory=None if p.device_memory_gib is None else p.device_memory_gib * GIB,
        peak_flops=cfg.logging.peak_flops, efficiency=p.compute_efficiency,
        intra_node_bw=None if p.intra_node_bandwidth_gbs is None else p.intra_node_bandwidth_gbs * gbs,
        inter_node_bw=None if p.inter_node_bandwidth_gbs is None else p.inter_node_bandwidth_gbs * gbs,
        devices_per_node=p.devices_per_node)


def plan_run(cfg, model_cfg) -> Plan:
    """Memory and step time of the layout ``cfg`` declares, on the device it declares."""
    return evaluate(model_cfg, layout_of(cfg), workload_of(cfg, model_cfg), device_of(cfg))
