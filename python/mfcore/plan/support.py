"""Which layouts today's code can run. The planner models expert parallelism combined with tensor
and pipeline parallelism (the real runs need them); the trainer runs expert parallelism over
data-parallel ranks only. This is the one place that rule lives: config validation
(``mfcore.config.checks``) and ``mf-train plan`` both ask it. Pipelines compose with tensor (+
sequence) parallelism for both families (``tests/dist/test_pipeline_tp_dist.py``). ``model_cfg`` is
there for rules that depend on the model (none today)."""
from typing import List, Optional

from mfcore.plan.layout import Layout


def unrunnable(layout: Layout, model_cfg: Optional[object] = None) -> List[str]:
    """Why the trainer cannot run ``layout`` today (empty: it can), each naming the config key."""
    out = []
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
    if layout.etp > 1:
        out.append(f"parallel.expert_tensor = {layout.etp}: routed experts split by tensor parallelism "
                   "inside each expert are not implemented yet (use parallel.expert_tensor: 1, every "
                   "routed expert whole on each tensor-parallel rank)")
    return out
