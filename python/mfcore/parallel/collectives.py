"""Communication Cells with hand-written backward passes (Megatron's "mappings").

Each Cell is the forward collective of one region boundary and defines ``bprop`` as its conjugate,
so autodiff through a tensor-parallel model sends exactly the collectives Megatron sends:

================================  ==========================  ==========================
cell                              forward                     backward
================================  ==========================  ==========================
:class:`CopyToRegion`             identity                    AllReduce(sum)
:class:`ReduceFromRegion`         AllReduce(sum)              identity
:class:`GatherFromRegion`         AllGather along ``axis``    keep own slice
:class:`ScatterToRegion`          keep own slice              AllGather along ``axis``
:class:`ReduceScatterToRegion`    sum, keep own slice         AllGather along ``axis``
:class:`GatherReduceScatter`      AllGather along ``axis``    sum, keep own slice
:class:`MaxOverRegion`            max over the group          zero (stabiliser only)
================================  ==========================  ==========================

The sequence-parallel cells use ``axis=1`` (activations are ``[batch, seq, hidden]``). ReduceScatter
is native on Ascend; MindSpore's CPU backend does not register it, so there it is AllReduce + slice
(same result, twice the traffic). All cells are plain identities for a group of one (``group=None``).
"""
from mindspore import nn, ops


class _GroupCell(nn.Cell):
    """Holds the group, its size and this rank's index in it (Python constants for graph mode)."""

    def __init__(self, group, size, index, axis=-1, native_reduce_scatter=False):
        super().__init__()
        self.group = group
        self.size = int(size)
        self.index = int(index)
        self.axis = axis
        self.active = group is not None and self.size > 1
        if self.active:
            self.all_reduce = ops.AllReduce(ops.ReduceOp.SUM, group)
            self.all_gather = ops.AllGather(group)
            self.native_rs = bool(native_reduce_scatter)
            if self.native_rs:
                self.reduce_scatter = ops.ReduceScatter(ops.ReduceOp.SUM, group)
                self.all_reduce_max = ops.AllReduce(ops.ReduceOp.MAX, group)

    def _slice(self, x):
        """This rank's equal part of ``x`` along ``axis``."""
        axis = self.axis % x.ndim
        shape = x.shape
        part = shape[axis] // self.size
        begin = tuple(self.index * part if d == axis else 0 for d in range(len(shape)))
        end = tuple((self.index + 1) * part if d == axis else shape[d] for d in range(len(shape)))
        return ops.strided_slice(x, begin, end, (1,) * len(shape))

    def _gather(self, x):
        """Concatenate every rank's ``x`` along ``axis``, rank-major (AllGather stacks along axis 0)."""
        axis = self.axis % x.ndim
        if axis == 0:
            return self.all_gather(x)
        return ops.moveaxis(self.all_gather(ops.moveaxis(x, axis, 0)), 0, axis)

    def _reduce_scatter(self, x):
        """Sum over the group and keep this rank's part along ``axis``."""
        axis = self.axis % x.ndim
        if not self.native_rs:
            return self._slice(self.all_reduce(x))
        moved = ops.moveaxis(x, axis, 0)
        return ops.moveaxis(self.reduce_scatter(moved), 0, axis)


class CopyToRegion(_GroupCell):
    """Enter a parallel region: forward identity, backward sum of the gradients over the group."""

    def construct(self, x):
        return x

    def bprop(self, x, out, dout):
        if self.active:
            return (self.all_reduce(dout),)
        return (dout,)


class ReduceFromRegion(_GroupCell):
    """Leave a parallel region: forward sum of the partial results, backward identity."""

    def construct(self, x):
        if self.active:
            return self.all_reduce(x)
        return x

    def bprop(self, x, out, dout):
        return (dout,)


class GatherFromRegion(_GroupCell):
    """Forward: concatenate the ranks' parts along ``axis``; backward: keep this rank's part."""

    def construct(self, x):
        if self.active:
            return self._gather(x)
        return x

    def bprop(self, x, out, dout):
        if self.active:
            return (self._slice(dout),)
        return (dout,)


class ScatterToRegion(_GroupCell):
    """Forward: keep this rank's part along ``axis``; backward: concatenate the gradients."""

    def construct(self, x):
        if self.active:
            return self._slice(x)
        return x

    def bprop(self, x, out, dout):
        if self.active:
            return (self._gather(dout),)
        return (dout,)


class ReduceScatterToRegion(_GroupCell):
    """Row-parallel output under sequence parallelism: sum partials, keep own sequence part."""

    def construct(self, x):
        if self.active:
            return self._reduce_scatter(x)
        return x

    def bprop(self, x, out, dout):
        if self.active:
            return (self._gather(dout),)
        return (dout,)


class GatherReduceScatter(_GroupCell):
    """Column-parallel input under sequence parallelism: gather the sequence; backward reduce-scatter."""

    def construct(self, x):
        if self.active:
            return self._gather(x)
        return x

    def bprop(self, x, out, dout):
        if self.active:
            return (self._reduce_scatter(dout),)
        return (dout,)


class MaxOverRegion(_GroupCell):
    """Element-wise max over the group (no gradient: used for softmax stabilisation only).

    CPU's AllReduce only sums, so there it is AllGather + max over the gathered copies."""

    def construct(self, x):
        if not self.active:
            return x
        if self.native_rs:
            return self.all_reduce_max(x)
        return self.all_gather(x).reshape((self.size,) + x.shape).max(axis=0)

    def bprop(self, x, out, dout):
        return (ops.zeros_like(x),)


def group_cell(cls, ctx, dim="tp", axis=-1):
    """Instantiate a comm cell over ``ctx``'s ``dim`` group ("tp" or "dp")."""
    group = getattr(ctx, f"{dim}_group")
    size = getattr(ctx, f"{dim}_size")
    index = getattr(ctx, f"{dim}_rank")
    return cls(group, size, index, axis=axis, native_reduce_scatter=ctx.native_reduce_scatter)


__all__ = ["CopyToRegion", "ReduceFromRegion", "GatherFromRegion", "ScatterToRegion",
           "ReduceScatterToRegion", "GatherReduceScatter", "MaxOverRegion", "group_cell"]
