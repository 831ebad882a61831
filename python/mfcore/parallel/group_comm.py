"""Collectives over one process group, for compiled (graph-mode) code: the one place that knows
which collectives the device runs natively and how the others are emulated.

MindSpore's CPU backend (MCCL) runs AllReduce in every group, but AllGather and Broadcast only in
the world group, and ReduceScatter, AlltoAll and Recv nowhere. Ascend (HCCL) runs them all. So
:class:`GroupComm` uses the native op where the device allows it and otherwise builds the result on
a subgroup AllReduce (sum): each rank contributes its data in its own *slot* of a zero buffer, the
other slots stay zero, and the sum is the concatenation (gather) or the root's value (broadcast).
Adding zeros is exact, so the emulation is bit-identical to the native op; it moves ``size`` times
more data, which only matters on CPU, where it is the only way.

The slot arithmetic is plain functions (:func:`place_in_slot`, :func:`take_slot`) tested without
communication. All-to-all and point-to-point (expert and pipeline parallelism) belong here too,
built the same way: a rank writes the slots meant for each peer, one AllReduce delivers them.
"""
from typing import Optional, Sequence

from mindspore import nn, ops


def place_in_slot(x, axis: int, index: int, size: int):
    """``x`` at slot ``index`` of ``size`` equal slots along ``axis``, zeros elsewhere."""
    axis = axis % x.ndim
    parts = []
    if index > 0:
        parts.append(_zeros_along(x, axis, index))
    parts.append(x)
    if index < size - 1:
        parts.append(_zeros_along(x, axis, size - 1 - index))
    return ops.concat(parts, axis) if len(parts) > 1 else x


def take_slot(x, axis: int, index: int, size: int):
    """Slot ``index`` of ``size`` equal slots of ``x`` along ``axis``."""
    axis = axis % x.ndim
    shape = x.shape
    part = shape[axis] // size
    begin = tuple(index * part if d == axis else 0 for d in range(len(shape)))
    end = tuple((index + 1) * part if d == axis else shape[d] for d in range(len(shape)))
    return ops.strided_slice(x, begin, end, (1,) * len(shape))


def _zeros_along(x, axis: int, slots: int):
    shape = tuple(s * slots if d == axis else s for d, s in enumerate(x.shape))
    return ops.zeros(shape, x.dtype)


class GroupComm(nn.Cell):
    """Collectives over ``group`` (``size`` ranks, this one at ``index``); identities for a group
    of one. ``native_gather``: AllGather/Broadcast run natively (Ascend, or the world group);
    ``native_scatter``: ReduceScatter and MAX reductions run natively (Ascend only)."""

    def __init__(self, group: Optional[str], size: int, index: int, native_gather: bool = False,
                 native_scatter: bool = False, ranks: Optional[Sequence[int]] = None):
        super().__init__()
        self.group, self.size, self.index = group, int(size), int(index)
        self.ranks = tuple(ranks) if ranks is not None else tuple(range(self.size))
        self.active = group is not None and self.size > 1
        self.native_gather = bool(native_gather)
        self.native_scatter = bool(native_scatter)
        if not self.active:
            return
        self.sum = ops.AllReduce(ops.ReduceOp.SUM, group)
        if self.native_gather:
            self.gather_op = ops.AllGather(group)
            self.broadcast_ops = tuple(ops.Broadcast(r, group) for r in self.ranks)  # one per root
        if self.native_scatter:
            self.scatter_op = ops.ReduceScatter(ops.ReduceOp.SUM, group)
            self.max_op = ops.AllReduce(ops.ReduceOp.MAX, group)

    @classmethod
    def summing(cls, group: Optional[str]) -> "GroupComm":
        """For callers that only sum over a named group (size and index unknown, not needed)."""
        return cls(group, 2 if group is not None else 1, 0)

    def all_reduce(self, x):
        """Sum over the group."""
        if not self.active:
            return x
        return self.sum(x)

    def all_gather(self, x, axis=0):
        """Every rank's ``x`` concatenated along ``axis``, rank-major."""
        if not self.active:
            return x
        if not self.native_gather:
            return self.sum(place_in_slot(x, axis, self.index, self.size))
        axis = axis % x.ndim
        if axis == 0:
            return self.gather_op(x)
        return ops.moveaxis(self.gather_op(ops.moveaxis(x, axis, 0)), 0, axis)

    def reduce_scatter(self, x, axis=0):
        """Sum over the group, this rank keeps its equal part along ``axis``."""
        if not self.active:
            return x
        if not self.native_scatter:
            return take_slot(self.sum(x), axis, self.index, self.size)
        axis = axis % x.ndim
        return ops.moveaxis(self.scatter_op(ops.moveaxis(x, axis, 0)), 0, axis)

    def broadcast(self, x, root=0):
        """The ``x`` of the group's ``root``-th rank on every rank (natively, or as the AllReduce of
        it and zeros: a sum with one nonzero term is exact)."""
        if not self.active:
            return x
        if self.native_gather:
            return self.broadcast_ops[root]((x,))[0]
        # x * 0 on the other ranks, not a zeros tensor: MindSpore folds a constant input of a
        # collective into a smaller one, and the ranks' messages would no longer match (so x must
        # be finite on every rank; an inf/NaN off the root would reach the sum)
        keep = 1.0 if self.index == root else 0.0
        return self.sum(x * keep)

    def all_reduce_max(self, x):
        """Element-wise max over the group (CPU's AllReduce only sums: gather, then max)."""
        if not self.active:
            return x
        if self.native_scatter:
            return self.max_op(x)
        return self.all_gather(x.expand_dims(0), 0).max(axis=0)

    def own_slice(self, x, axis=0):
        """This rank's equal part of ``x`` along ``axis`` (no communication)."""
        if not self.active:
            return x
        return take_slot(x, axis, self.index, self.size)


def native_ops(device_target: str, group: Optional[str], world_group: Optional[str]):
    """``(native_gather, native_scatter)`` for a group on a device (see :class:`GroupComm`)."""
    ascend = device_target == "Ascend"
    return ascend or (group is not None and group == world_group), ascend


def group_comm(ctx, dim: str) -> GroupComm:
    """The :class:`GroupComm` of ``ctx``'s ``dim`` group ("tp", "dp", "pp", "ep" or "edp")."""
    group = getattr(ctx, f"{dim}_group")
    gather, scatter = native_ops(ctx.device_target, group, getattr(ctx, "world_group", None))
    return GroupComm(group, getattr(ctx, f"{dim}_size"), getattr(ctx, f"{dim}_rank"),
                     native_gather=gather, native_scatter=scatter, ranks=getattr(ctx, f"{dim}_ranks", None))
