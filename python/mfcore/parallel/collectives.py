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

The sequence-parallel cells use ``axis=1`` (activations are ``[batch, seq, hidden]``). The
collectives themselves come from :class:`~mfcore.parallel.group_comm.GroupComm` (native where the
device runs them, emulated on AllReduce where it does not, e.g. AllGather in a CPU subgroup). All
cells are plain identities for a group of one.
"""
from mindspore import nn, ops

from mfcore.parallel.group_comm import GroupComm, group_comm


class _GroupCell(nn.Cell):
    """Holds the group's :class:`GroupComm` and the axis the cell splits/concatenates along."""

    def __init__(self, comm: GroupComm, axis=-1):
        super().__init__()
        self.comm = comm
        self.axis = axis
        self.active = comm.active


class CopyToRegion(_GroupCell):
    """Enter a parallel region: forward identity, backward sum of the gradients over the group."""

    def construct(self, x):
        return x

    def bprop(self, x, out, dout):
        return (self.comm.all_reduce(dout),)


class ReduceFromRegion(_GroupCell):
    """Leave a parallel region: forward sum of the partial results, backward identity."""

    def construct(self, x):
        return self.comm.all_reduce(x)

    def bprop(self, x, out, dout):
        return (dout,)


class GatherFromRegion(_GroupCell):
    """Forward: concatenate the ranks' parts along ``axis``; backward: keep this rank's part."""

    def construct(self, x):
        return self.comm.all_gather(x, self.axis)

    def bprop(self, x, out, dout):
        return (self.comm.own_slice(dout, self.axis),)


class ScatterToRegion(_GroupCell):
    """Forward: keep this rank's part along ``axis``; backward: concatenate the gradients."""

    def construct(self, x):
        return self.comm.own_slice(x, self.axis)

    def bprop(self, x, out, dout):
        return (self.comm.all_gather(dout, self.axis),)


class ReduceScatterToRegion(_GroupCell):
    """Row-parallel output under sequence parallelism: sum partials, keep own sequence part."""

    def construct(self, x):
        return self.comm.reduce_scatter(x, self.axis)

    def bprop(self, x, out, dout):
        return (self.comm.all_gather(dout, self.axis),)


class GatherReduceScatter(_GroupCell):
    """Column-parallel input under sequence parallelism: gather the sequence; backward reduce-scatter."""

    def construct(self, x):
        return self.comm.all_gather(x, self.axis)

    def bprop(self, x, out, dout):
        return (self.comm.reduce_scatter(dout, self.axis),)


class MaxOverRegion(_GroupCell):
    """Element-wise max over the group (no gradient: used for softmax stabilisation only)."""

    def construct(self, x):
        return self.comm.all_reduce_max(x)

    def bprop(self, x, out, dout):
        return (ops.zeros_like(x),)


def group_cell(cls, ctx, dim="tp", axis=-1):
    """Instantiate a comm cell over ``ctx``'s ``dim`` group ("tp" or "dp")."""
    return cls(group_comm(ctx, dim), axis=axis)


__all__ = ["CopyToRegion", "ReduceFromRegion", "GatherFromRegion", "ScatterToRegion",
           "ReduceScatterToRegion", "GatherReduceScatter", "MaxOverRegion", "group_cell"]
