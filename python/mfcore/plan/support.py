"""Which layouts today's code can run. The planner models expert parallelism combined with tensor
and pipeline parallelism, and pipelines combined with tensor parallelism (the real runs
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
    if layout.ep > 1:
        partners = [(f"parallel.pipeline = {layout.pp}", "pipeline parallelism", layout.pp > 1),
                    (f"parallel.tensor = {layout.tp}", "tensor parallelism", layout.tp > 1)]
        keys = [key for key, _, on in partners if on]
        if keys:
            names = [name for _, name, on in partners if on]
            what = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
            out.append(f"parallel.expert = {layout.ep} with {', '.join(keys)}: expert parallelism together "
                       f"with {what} is not implemented yet (use expert parallelism over data-parallel "
                       "ranks alone)")
    return out
