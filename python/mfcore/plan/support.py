"""Which layouts today's code can run. The planner models expert parallelism combined with tensor
and pipeline parallelism and ZeRO-1, and pipelines combined with tensor parallelism (the real runs
need them); the trainer does not have those combinations yet. This is the
one place that rule lives: config validation (``mfcore.config.checks``) and ``mf-train plan`` both
ask it. ``model_cfg`` is there for rules that depend on the model (none today: tensor parallelism
covers both families)."""
from typing import List, Optional

from mfcore.plan.layout import Layout


def unrunnable(layout: Layout, model_cfg: Optional[object] = None) -> List[str]:
    """Why the trainer cannot run ``layout`` today (empty: it can), each naming the config key."""
    out = []
    if layout.pp > 1 and layout.tp > 1:
        out.append(f"parallel.pipeline = {layout.pp} with parallel.tensor = {layout.tp}: pipeline "
                   "parallelism together with tensor parallelism is not implemented yet (use one of them)")
    if layout.ep > 1 and layout.pp > 1:
        out.append(f"parallel.expert = {layout.ep} with parallel.pipeline = {layout.pp}: expert "
                   "parallelism together with pipeline parallelism is not implemented yet (use one of them)")
    if layout.ep > 1 and layout.tp > 1:
        out.append(f"parallel.expert = {layout.ep} with parallel.tensor = {layout.tp}: expert "
                   "parallelism together with tensor parallelism is not implemented yet (use one of them)")
    if layout.ep > 1 and layout.zero:
        out.append(f"parallel.expert = {layout.ep} with parallel.optimizer_sharding: expert parallelism "
                   "together with ZeRO-1 is not implemented yet (set parallel.optimizer_sharding: false)")
    return out
