"""Which layouts today's code can run. The planner models expert parallelism combined with tensor
parallelism (the real runs need it); the trainer runs expert parallelism over data-parallel ranks,
inside each pipeline stage too (``parallel.expert`` with ``parallel.pipeline``), but not with
tensor parallelism. This is the one place that rule lives: config validation
(``mfcore.config.checks``) and ``mf-train plan`` both ask it. Pipelines compose with tensor (+
sequence) parallelism for both families (``tests/dist/test_pipeline_tp_dist.py``). ``model_cfg`` is
there for rules that depend on the model (none today)."""
from typing import List, Optional

from mfcore.plan.layout import Layout


def unrunnable(layout: Layout, model_cfg: Optional[object] = None) -> List[str]:
    """Why the trainer cannot run ``layout`` today (empty: it can), each naming the config key."""
    out = []
    if layout.ep > 1 and layout.tp > 1:
        out.append(f"parallel.expert = {layout.ep} with parallel.tensor = {layout.tp}: expert parallelism "
                   "together with tensor parallelism is not implemented yet (use expert parallelism over "
                   "data-parallel ranks, with or without parallel.pipeline)")
    if layout.etp > 1:
        out.append(f"parallel.expert_tensor = {layout.etp}: routed experts split by tensor parallelism "
                   "inside each expert are not implemented yet (use parallel.expert_tensor: 1, every "
                   "routed expert whole on each tensor-parallel rank)")
    return out
