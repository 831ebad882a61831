"""Expert parallelism, applied to a model from outside it (``parallel.expert = E``).

Megatron's layout: the ``E`` ranks of an expert-parallel group are consecutive ranks of a pipeline
stage's ``tp x dp`` grid, TP innermost (:class:`~mfcore.parallel.groups.RankGrid`). Each keeps
``n_routed_experts / E`` whole routed experts (rank ``r`` experts ``[r * n, (r + 1) * n)``: rows of
the stacked ``[n_experts, ...]`` weights, recorded in :mod:`mfcore.parallel.param_layout` so
checkpoints hold them under their global names and reshard to any EP size); everything else
(attention, router, shared experts, dense layers) stays as tensor parallelism left it, replicated
over DP. Expert gradients are summed over the expert-data-parallel group (the ranks holding the same
experts), the others over DP (:mod:`mfcore.parallel.grad_reduce`).

With tensor parallelism, sequence parallelism is required (validated in :mod:`mfcore.plan.support`):
the MoE block then runs on this rank's sequence shard (the tensor-parallel plan does not gather the
sequence for it), so every TP rank routes distinct tokens; the router's gradient is a partial sum
over TP (reduced like the other sequence-parallel replicated parameters), the sequence aux loss sums
its per-sequence statistics over TP (``MoE.sequence_reduce``), and the trainer sums expert loads
over TP x DP (``ParallelContext.routing_sum``) so the routing biases stay identical everywhere.

Token exchange (:class:`ExpertExchange`, the one interface the MoE layer calls): every rank of the
group gets every rank's tokens and routing (``gather_tokens``/``gather_routing``: AllGather along
the tokens; backward: the gradients summed over the group, each rank keeping its own tokens'), runs
its experts on the pairs routed to them, and the partial outputs go back summed over the group with
each rank keeping its own tokens (``give_back``: reduce-scatter; backward: AllGather). This is
Megatron's "allgather" token dispatcher; the collectives are :class:`~mfcore.parallel.group_comm.
GroupComm`'s, so on CPU, where MCCL refuses AlltoAll, ReduceScatter, and AllGather in a subgroup,
they are the exact emulations on subgroup AllReduce (each rank fills its slot of a zero buffer), and
native AllGather/ReduceScatter on Ascend (that path is not run here: no Ascend device). An AlltoAll
dispatcher (moving only the routed rows, ``1/E`` of the gathered volume) would be a second
implementation of the same three methods.
"""
import numpy as np
from mindspore import Parameter, Tensor, nn

from mfcore.errors import ConfigError
from mfcore.models.layers.moe import moe_layers
from mfcore.models.layers.moe_dispatch import TokenDispatcher
from mfcore.parallel.collectives import GatherReduceScatter, ReduceFromRegion, ReduceScatterToRegion, group_cell
from mfcore.parallel.group_comm import group_comm
from mfcore.parallel.param_layout import record_ep_plan

EXPERT_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


class ExpertExchange(nn.Cell):
    """Moves tokens to the ranks of the expert-parallel group and the expert outputs back."""

    def __init__(self, comm):
        super().__init__()
        self.tokens = GatherReduceScatter(comm, axis=0)
        self.routing = GatherReduceScatter(comm, axis=0)
        self.back = ReduceScatterToRegion(comm, axis=0)

    def gather_tokens(self, x):
        """``[T, h]`` on each rank → ``[E * T, h]`` (rank-major) on every rank."""
        return self.tokens(x)

    def gather_routing(self, r):
        """``[T, c]`` routing columns (weights and expert ids) → ``[E * T, c]``."""
        return self.routing(r)

    def give_back(self, y):
        """Partial outputs ``[E * T, h]`` → their sum over the group, this rank's ``[T, h]``."""
        return self.back(y)


def local_expert_range(num_experts: int, ep: int, ep_rank: int):
    """``(first, count)`` of the routed experts EP rank ``ep_rank`` holds; the error names both sizes."""
    if num_experts % ep:
        raise ConfigError(f"model n_routed_experts ({num_experts}) must be divisible by "
                          f"parallel.expert ({ep})")
    count = num_experts // ep
    return ep_rank * count, count


def parallelize_experts(model, ctx):
    """Keep this rank's routed experts in every MoE layer (MTP modules too) and give the layers
    the token exchange; no-op when EP is 1."""
    ep = getattr(ctx, "ep_size", 1)
    if ep == 1:
        return model
    layers = moe_layers(model)
    if not layers:
        raise ConfigError(f"parallel.expert ({ep}) needs a model with routed experts "
                          f"({type(model).__name__} has none); use parallel.expert: 1")
    comm = group_comm(ctx, "ep")
    split = []
    for moe in layers:
        first, count = local_expert_range(moe.num_experts, ep, ctx.ep_rank)
        for name in EXPERT_PROJECTIONS:
            split.append(_keep_rows(getattr(moe.experts, name), first, count))
        moe.experts.num_experts = count
        moe.first_local_expert = first
        moe.local_dispatcher = TokenDispatcher(count, moe.top_k, "dropless", partial=True)
        moe.exchange = ExpertExchange(comm)
        if getattr(ctx, "routes_sequence_shards", False):
            moe.sequence_reduce = group_cell(ReduceFromRegion, ctx)
            moe.sequence_shards = ctx.tp_size
    record_ep_plan(model, split)
    return model


def _keep_rows(linear, first: int, count: int) -> str:
    """Replace a stacked expert weight by its rows ``[first, first + count)``, same name."""
    dense = linear.weight
    name = dense.name
    rows = np.ascontiguousarray(dense.asnumpy()[first:first + count])
    linear.weight = Parameter(Tensor(rows, dense.dtype), name=name, requires_grad=dense.requires_grad)
    linear.weight.name = name   # MindSpore re-prefixes on assignment
    linear.num_experts = count
    return name
