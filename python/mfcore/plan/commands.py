"""What ``mf-train plan`` does: search the layouts of a model on N devices, or plan a run config's own
layout next to the best ones for its device count."""
from mfcore.errors import ConfigError
from mfcore.models.config import config_from_dict, config_to_dict, load_model_config
from mfcore.models.counting import parameter_breakdown
from mfcore.plan.layout import GIB, Device, Layout, Workload
from mfcore.plan.report import fit_problem, plan_lines, search_report
from mfcore.plan.run import device_of, layout_of, workload_of
from mfcore.plan.search import evaluate, search


def model_of(cfg):
    """The model config of a run config, ``model.overrides`` applied."""
    model_cfg = load_model_config(cfg.model.name)
    if cfg.model.overrides:
        merged = {**config_to_dict(model_cfg), **cfg.model.overrides}
        model_cfg = config_from_dict(merged, strict=True, source=f"{cfg.model.name} + model.overrides")
    return model_cfg


def _title(name: str, model_cfg) -> str:
    counts = parameter_breakdown(model_cfg)
    return (f"plan for {name}: {counts['total'] / 1e9:.2f} B parameters, "
            f"{counts['active_matmul'] / 1e9:.2f} B active per token")


def plan_model(name: str, devices: int, work: Workload, device: Device, top: int = 5,
               runnable_only: bool = False) -> str:
    """``mf-train plan --model NAME --devices N``: the best layouts that fit."""
    if devices <= 0:
        raise ConfigError(f"--devices must be > 0, got {devices}")
    model_cfg = load_model_config(name)
    result = search(model_cfg, devices, work, device, top, runnable_only)
    return search_report(_title(name, model_cfg), result, work, device, devices)


def check_plannable(layout: Layout, work: Workload) -> None:
    """Sizes the planner needs to make sense of a run config."""
    sizes = {"parallel.tensor": layout.tp, "parallel.pipeline": layout.pp, "parallel.data": layout.dp,
             "parallel.virtual_stages": layout.vpp, "parallel.expert": layout.ep,
             "parallel.expert_tensor": layout.etp,
             "training.micro_batch_size": layout.micro_batch, "data.seq_length": work.seq_length,
             "training.global_batch_size": work.global_batch_size}
    bad = [f"{k} must be > 0, got {v}" for k, v in sizes.items() if v <= 0]
    if bad:
        raise ConfigError("; ".join(bad))


def plan_config(cfg, top: int = 5, runnable_only: bool = False) -> str:
    """``mf-train plan --config X``: the config's layout, then the best ones for its device count."""
    model_cfg = model_of(cfg)
    layout, work, device = layout_of(cfg), workload_of(cfg, model_cfg), device_of(cfg)
    check_plannable(layout, work)
    plan = evaluate(model_cfg, layout, work, device)
    lines = [_title(cfg.model.name, model_cfg), f"config {cfg.run.name}:"]
    lines += plan_lines(plan, work, "   ")
    if not plan.fits:
        lines.append("   does not fit: " + fit_problem(plan))
    result = search(model_cfg, layout.devices, work, device, top, runnable_only)
    lines += ["", search_report(f"alternatives on the same {layout.devices} devices:", result, work,
                                device, layout.devices)]
    return "\n".join(lines)


def _layout_keys(layout: Layout) -> str:
    keys = [f"parallel.tensor={layout.tp}", f"parallel.data={layout.dp}"]
    keys += [f"parallel.pipeline={layout.pp}"] if layout.pp > 1 else []
    keys += [f"parallel.virtual_stages={layout.vpp}"] if layout.vpp > 1 else []
    keys += [f"parallel.expert={layout.ep}"] if layout.ep > 1 else []
    keys += [f"parallel.sequence_parallel={str(layout.sp).lower()}",
             f"training.micro_batch_size={layout.micro_batch}", f"recompute.mode={layout.recompute}"]
    return " ".join(keys)


def refusal(cfg, model_cfg, plan) -> str:
    """Why ``plan`` (of ``cfg``) does not fit, with the fastest layout of the same devices that
    does: one today's trainer runs if there is one, else the best one with what it still needs."""
    work = workload_of(cfg, model_cfg)
    text = fit_problem(plan)
    runnable = search(model_cfg, plan.layout.devices, work, plan.device, 1, runnable_only=True).best
    if runnable:
        return text + f". Fits and runs today: {_layout_keys(runnable[0].layout)} " \
                      f"({runnable[0].memory.total / GIB:.1f} GiB planned)"
    best = search(model_cfg, plan.layout.devices, work, plan.device, 1).best
    if best:
        return text + f". No layout today's trainer runs fits {plan.layout.devices} devices; the best " \
                      f"that fits is {best[0].layout.describe()}, which needs " + \
                      "; ".join(p.split(":")[0] for p in best[0].unrunnable) + " (not implemented yet)"
    return text + f". No layout of {plan.layout.devices} devices fits: use more devices"
