"""The text ``mf-train plan`` and ``--dry-run`` print for plans."""
from typing import List

from mfcore.plan.layout import GIB, Device, Workload
from mfcore.plan.search import Plan, SearchResult

MEMORY_TERMS = ("weights", "compute_copies", "gradients", "optimizer", "activations", "logits", "runtime")


def memory_line(plan: Plan, label: str = "memory") -> str:
    m = plan.memory
    terms = ", ".join(f"{name.replace('_', ' ')} {getattr(m, name) / GIB:.2f}" for name in MEMORY_TERMS)
    where = f" (stage {m.stage} of {plan.layout.pp})" if plan.layout.pp > 1 else ""
    limit = "" if plan.device.memory is None else f" of {plan.device.memory / GIB:.1f}"
    return f"{label} {m.total / GIB:.2f}{limit} GiB{where}: {terms}"


def time_line(plan: Plan, work: Workload) -> str:
    t = plan.time
    tokens = work.global_batch_size * work.seq_length
    return (f"step {t.total:.3g} s ({tokens / t.total / plan.layout.devices:,.0f} tokens/s/device): "
            f"compute {t.compute:.3g}, TP {t.tp_comm:.3g}, EP {t.ep_comm:.3g}, PP {t.pp_comm:.3g}, "
            f"DP {t.dp_comm:.3g}, bubble {t.bubble:.3g} ({t.bubble_share:.1%})")


def runnable_line(plan: Plan) -> str:
    if plan.runnable:
        return "runs today: yes"
    return "runs today: no (" + "; ".join(p.split(":")[0] for p in plan.unrunnable) + ")"


def plan_lines(plan: Plan, work: Workload, index: str = "") -> List[str]:
    head = f"{index}{plan.layout.describe()}"
    pad = " " * len(index)
    return [head, f"{pad}  {time_line(plan, work)}", f"{pad}  {memory_line(plan)}",
            f"{pad}  {runnable_line(plan)}"]


def device_line(device: Device, devices: int) -> str:
    memory = "memory unchecked" if device.memory is None else f"{device.memory / GIB:.1f} GiB"
    return (f"{devices} x {device.name} ({memory}, peak {device.peak_flops / 1e12:.4g} TFLOP/s x "
            f"{device.efficiency:g} achieved, links {device.intra_node_bw / 1e9:g} GB/s in a node of "
            f"{device.devices_per_node}, {device.inter_node_bw / 1e9:g} GB/s between nodes)")


def search_report(title: str, result: SearchResult, work: Workload, device: Device, devices: int) -> str:
    lines = [title, "devices: " + device_line(device, devices),
             f"workload: sequence {work.seq_length}, global batch {work.global_batch_size}, "
             f"{work.compute_bytes * 8}-bit activations, MoE dispatch {work.moe_dispatch}",
             f"{result.searched} layouts searched, {result.fitting} fit"]
    if not result.best:
        lines.append("no layout fits; the one needing the least memory:")
        if result.smallest is not None:
            lines.extend(plan_lines(result.smallest, work, "   "))
        return "\n".join(lines)
    lines.append(f"best {len(result.best)} by estimated step time:")
    for i, plan in enumerate(result.best, 1):
        lines.extend(plan_lines(plan, work, f"{i:2d}. "))
    return "\n".join(lines)


def fit_problem(plan: Plan) -> str:
    """Why ``plan`` does not fit its device, and what to change ("" when it fits)."""
    if plan.fits:
        return ""
    m, lay = plan.memory, plan.layout
    hints = []
    if lay.recompute != "full":
        hints.append("recompute.mode: full")
    if lay.dp > 1 and not lay.zero:
        hints.append("parallel.optimizer_sharding: true")
    if lay.micro_batch > 1:
        hints.append("a smaller training.micro_batch_size")
    hints.append("another layout (mf-train plan --config <this config> lists those that fit)")
    return (f"planned memory per device {m.total / GIB:.2f} GiB exceeds plan.device_memory_gib "
            f"{plan.device.memory / GIB:g} GiB ({memory_line(plan)}); try " + ", or ".join(hints))
