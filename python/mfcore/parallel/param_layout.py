"""Where each parameter of this rank sits in the global model: the one record of parallel layouts.

The parallel code that splits a tensor records it here (:func:`record_tp_plan`, called by
:mod:`mfcore.parallel.tensor_parallel`); everything that needs to know the layout (the gradient
reducer and norm, the optimizers' ``state_dict``, checkpoints) reads it through
:func:`param_layouts` / :func:`tp_split_axes` / :func:`tp_partial_names`, never by poking at model
attributes. A :class:`ParamLayout` is the local tensor's box in the global tensor plus the parallel
dimensions it is split over; every other dimension holds replicas, of which the one at coordinate 0
writes checkpoints (so each block is written once). Pipeline stages (``pp``) and expert ranges
(``ep``: the stacked routed-expert weights ``[n_experts, ...]`` are split by rows over the
expert-parallel group, recorded by :func:`record_ep_plan`) are more dimensions in ``split_over``.
"""
from dataclasses import dataclass
from typing import Dict, FrozenSet, Sequence, Tuple

from mfcore.checkpoint.layout import ShardSpec
from mfcore.parallel.groups import DIMENSIONS

_TP_AXES = "tp_shard_axes"             # {parameter name: axis split over the TP group}
_TP_PARTIAL = "tp_partial_grad_params"  # replicated, but each TP rank's gradient is a partial sum
_PP_OWNED = "pp_owned_params"            # held by this pipeline stage alone (split over "pp")
_EP_ROWS = "ep_split_params"             # routed-expert stacks: this EP rank's rows (axis 0)


def record_tp_plan(model, split_axes: Dict[str, int], partial: Sequence[str]) -> None:
    """Record which parameters tensor parallelism split (and along which axis), and which are
    replicated with partial gradients; rank ``tp_rank`` holds slice ``tp_rank`` along the axis."""
    setattr(model, _TP_AXES, dict(split_axes))
    setattr(model, _TP_PARTIAL, tuple(partial))


def record_pp_plan(model, owned: Sequence[str]) -> None:
    """Record the parameters this pipeline stage alone holds (the others it holds, e.g. the last
    stage's copy of a shared embedding, are replicas of the first stage's)."""
    setattr(model, _PP_OWNED, tuple(owned))


def record_ep_plan(model, split: Sequence[str]) -> None:
    """Record the parameters expert parallelism split by rows (axis 0: the expert index); rank
    ``ep_rank`` holds rows ``[ep_rank * n, (ep_rank + 1) * n)`` of ``ep_size * n``."""
    setattr(model, _EP_ROWS, tuple(split))


def ep_split_names(model) -> Tuple[str, ...]:
    return tuple(getattr(model, _EP_ROWS, None) or ())


def pp_owned_names(model) -> Tuple[str, ...]:
    return tuple(getattr(model, _PP_OWNED, None) or ())


def tp_split_axes(model) -> Dict[str, int]:
    return dict(getattr(model, _TP_AXES, None) or {})


def tp_partial_names(model) -> Tuple[str, ...]:
    return tuple(getattr(model, _TP_PARTIAL, None) or ())


@dataclass(frozen=True)
class ParamLayout:
    """This rank's block of a global tensor (``spec``, block shape ``shape``), split over the
    parallel dimensions ``split_over`` and replicated over the others."""

    spec: ShardSpec
    shape: Tuple[int, ...]
    split_over: FrozenSet[str] = frozenset()

    def writes(self, coords: Dict[str, int]) -> bool:
        """Whether the rank at ``coords`` writes this block (the first of its replicas). A block
        split over ``ep`` is replicated over the expert-data-parallel ranks (``ep x edp`` covers the
        stage's ``tp x dp``), not over TP or DP."""
        dims = [d for d in DIMENSIONS if d not in self.split_over]
        if "ep" in self.split_over:
            dims = [d for d in dims if d not in ("tp", "dp")] + ["edp"]
        return all(coords.get(dim, 0) == 0 for dim in dims if dim not in self.split_over)

    def rows(self, start: int, count: int, dim: str) -> "ParamLayout":
        """Rows ``[start, start + count)`` (along axis 0) of this block, additionally split over
        ``dim`` (ZeRO-1 shards the optimizer state of a block by rows over DP, or over the
        expert-DP ranks, ``edp``, for routed experts)."""
        if not self.shape:
            return ParamLayout(self.spec, self.shape, self.split_over)
        offsets = (self.spec.offsets[0] + start,) + self.spec.offsets[1:]
        return ParamLayout(ShardSpec(self.spec.global_shape, offsets), (count,) + self.shape[1:],
                           self.split_over | {dim})


def param_layouts(model, ctx) -> Dict[str, ParamLayout]:
    """Every parameter of ``model`` (trainable or not) → its :class:`ParamLayout` on this rank."""
    axes = tp_split_axes(model)
    staged = set(pp_owned_names(model))
    experts = set(ep_split_names(model))
    tp, tp_rank = getattr(ctx, "tp_size", 1), getattr(ctx, "tp_rank", 0)
    out = {}
    for p in model.get_parameters():
        shape = tuple(int(d) for d in p.shape)
        pp = frozenset({"pp"}) if p.name in staged else frozenset()
        if p.name in experts:
            out[p.name] = _expert_rows(shape, ctx, pp)
            continue
        if p.name not in axes:
            out[p.name] = ParamLayout(ShardSpec.whole(shape), shape, pp)
            continue
        axis = axes[p.name]
        global_shape = list(shape)
        global_shape[axis] *= tp
        offsets = [0] * len(shape)
        offsets[axis] = tp_rank * shape[axis]
        out[p.name] = ParamLayout(ShardSpec(tuple(global_shape), tuple(offsets)), shape, frozenset({"tp"}) | pp)
    return out


def _expert_rows(shape, ctx, pp) -> ParamLayout:
    """This EP rank's rows of a stacked routed-expert tensor."""
    ep, ep_rank = getattr(ctx, "ep_size", 1), getattr(ctx, "ep_rank", 0)
    global_shape = (shape[0] * ep,) + shape[1:]
    offsets = (ep_rank * shape[0],) + (0,) * (len(shape) - 1)
    return ParamLayout(ShardSpec(global_shape, offsets), shape, frozenset({"ep"}) | pp)


def coords_of(ctx) -> Dict[str, int]:
    """This rank's coordinate along every parallel dimension, expert ones included (all 0 in one
    process)."""
    grid = getattr(ctx, "grid", None)
    if grid is None:
        return {}
    return {**grid.coords(ctx.rank), **grid.expert_coords(ctx.rank)}
