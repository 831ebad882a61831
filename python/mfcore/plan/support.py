"""Which layouts today's code can run: the one place that rule lives. Config validation
(``mfcore.config.checks``), ``mf-train plan`` and the planner's search (which expert-parallel
sizes it tries, :func:`expert_parallel_sizes`) all ask this module.

Expert parallelism is carved out of a pipeline stage's ``tp x dp`` ranks (Megatron's expert grid
``etp x ep x edp = tp x dp``, :mod:`mfcore.parallel.groups`) with every routed expert whole
(``etp = 1``). With tensor parallelism it needs sequence parallelism (as Megatron asserts): each TP
rank then routes its own sequence shard. Pipelines compose with tensor (+ sequence) and expert
parallelism for both families. ``model_cfg`` is there for rules that depend on the model (none
today)."""
from typing import List, Optional

from mfcore.plan.layout import Layout


def expert_parallel_sizes(n_routed_experts: int, tp: int, dp: int) -> List[int]:
    """The expert-parallel sizes a stage of ``tp x dp`` ranks can run: divisors of ``tp * dp``
    that divide the routed experts (``[1]`` for a model without them)."""
    if not n_routed_experts:
        return [1]
    return [e for e in range(1, tp * dp + 1) if (tp * dp) % e == 0 and n_routed_experts % e == 0]


def unrunnable(layout: Layout, model_cfg: Optional[object] = None) -> List[str]:
    """Why the trainer cannot run ``layout`` today (empty: it can), each naming the config key."""
    out = []
    if layout.ep > 1 and layout.tp > 1 and not layout.sp:
        out.append(f"parallel.expert = {layout.ep} with parallel.tensor = {layout.tp} needs "
                   "parallel.sequence_parallel: true: expert parallelism over tensor-parallel ranks "
                   "routes each rank's own sequence shard (Megatron's layout)")
    if layout.etp > 1:
        out.append(f"parallel.expert_tensor = {layout.etp}: routed experts split by tensor parallelism "
                   "inside each expert are not implemented yet (use parallel.expert_tensor: 1, every "
                   "routed expert whole on each tensor-parallel rank)")
    return out
