"""Gradient reduction inside the compiled step: bucketed AllReduce over DP (and TP where needed),
and the global gradient norm of a tensor-parallel model.

The loss of every rank is already divided by the *global* loss-token count (see
:mod:`mfcore.train.step`), so data-parallel gradients are **summed**, not averaged: the sum over DP
ranks is exactly the single-process gradient of the whole global batch.

Gradients are flattened and concatenated into buckets of about ``bucket_mb`` MB, so a model with
hundreds of small tensors sends a few large messages (one AllReduce per bucket) instead; the size
defaults per device (:func:`default_bucket_mb`). The sums are written back into the gradient
buffers in place. A tensor of at least ``solo_mb`` is reduced alone, straight from its buffer; on
CPU that is every tensor (``solo_mb`` 0): MindSpore's CPU runtime gives every slice cut from a flat
bucket memory of its own that it keeps for the whole run, so the bucketed path cost hundreds of MB
(docs/planning.md, measured per compiled graph: +340 MiB for the 27 M Llama's 105 MiB of
gradients under DP2, +199 MiB for tiny DeepSeek-V3's 8 MiB in ~150 tensors; in isolation, 150
tensors of 32 KB: +502 MiB bucketed, +46 MiB one by one), while a tensor reduced alone and
assigned back re-uses one buffer. Elsewhere (Ascend) buckets stay.

Under expert parallelism the routed experts' gradients are summed over the expert-data-parallel
group only (the ``dp / ep`` ranks holding the same experts; each already holds the gradient of all
tokens its expert-parallel group routed to them), and the norm counts each expert once by summing
their squares over the expert-parallel group.
"""
from typing import List, Sequence

import mindspore as ms
from mindspore import nn, ops

from mfcore.optim.grad_norm import SquareSum
from mfcore.parallel.group_comm import GroupComm, group_comm
from mfcore.parallel.param_layout import ep_split_names, tp_partial_names, tp_split_axes

DEFAULT_BUCKET_MB = 25.0
# MCCL (TCP) on CPU slows down sharply past a few MB per message: benchmarks/bench_parallel.py
# measured one 20 MB AllReduce at 206 ms, 4 MB buckets at 29 ms, one message per tensor at 45 ms.
BUCKET_MB_BY_DEVICE = {"CPU": 4.0}
# tensors this large skip the flat bucket (see above); on CPU every tensor does: the bucketed path's
# memory outweighs its fewer messages (one per tensor cost 45 ms against 29 ms for 4 MB buckets in
# benchmarks/bench_parallel.py)
SOLO_MB_BY_DEVICE = {"CPU": 0.0}


def default_bucket_mb() -> float:
    """Bucket size for the device this process runs on (HCCL/NCCL favour large messages)."""
    return BUCKET_MB_BY_DEVICE.get(ms.get_context("device_target"), DEFAULT_BUCKET_MB)


def default_solo_mb(bucket_mb: float) -> float:
    """Tensors of at least this many MB are reduced alone on this device."""
    return SOLO_MB_BY_DEVICE.get(ms.get_context("device_target"), bucket_mb)


def make_buckets(sizes: Sequence[int], bucket_elems: int, solo_elems: int = 0) -> List[List[int]]:
    """Consecutive indices grouped so each group holds at most ``bucket_elems`` elements (a single
    larger tensor, or one of at least ``solo_elems`` when given, gets a bucket of its own)."""
    buckets, current, filled = [], [], 0
    for i, n in enumerate(sizes):
        if solo_elems and n >= solo_elems:
            if current:
                buckets.append(current)
            buckets.append([i])
            current, filled = [], 0
            continue
        if current and filled + n > bucket_elems:
            buckets.append(current)
            current, filled = [], 0
        current.append(i)
        filled += n
    if current:
        buckets.append(current)
    return buckets


class BucketedAllReduce(nn.Cell):
    """Sum the tensors at ``indices`` of the gradient buffers over ``comm``'s group, in flat buckets,
    in place (``comm`` a :class:`GroupComm`, or a group name for a plain AllReduce over it)."""

    def __init__(self, shapes, indices, comm, bucket_mb=None, solo_mb=None):
        super().__init__()
        bucket_mb = bucket_mb or default_bucket_mb()
        solo_mb = default_solo_mb(bucket_mb) if solo_mb is None else solo_mb
        self.shapes = [tuple(s) for s in shapes]
        sizes = [_numel(self.shapes[i]) for i in indices]
        local = make_buckets(sizes, max(1, int(bucket_mb * 2 ** 20 / 4)), max(1, int(solo_mb * 2 ** 20 / 4)))
        self.buckets = tuple(tuple(indices[j] for j in b) for b in local)
        if not isinstance(comm, GroupComm):
            comm = GroupComm.summing(comm)
        self.comm = comm

    def construct(self, grads):
        """``grads``: the gradient Parameters, overwritten with their sums (later reads of them in
        the same graph see the sums: MindSpore orders a Parameter's loads after its assigns);
        returns a token of the writes."""
        done = ops.zeros((), ms.float32)
        for bucket in self.buckets:
            if len(bucket) == 1:
                i = bucket[0]
                total = self.comm.all_reduce(grads[i].astype(ms.float32)).astype(grads[i].dtype)
                done = ops.depend(done, ops.assign(grads[i], total))
                continue
            flat = ops.concat([ops.reshape(grads[i].astype(ms.float32), (-1,)) for i in bucket])
            flat = self.comm.all_reduce(flat)
            offset = 0
            for i in bucket:
                n = _numel(self.shapes[i])
                part = ops.reshape(flat[offset:offset + n], self.shapes[i]).astype(grads[i].dtype)
                done = ops.depend(done, ops.assign(grads[i], part))
                offset += n
        return done


class GradientReducer(nn.Cell):
    """``construct(grads) -> token``: sums the gradient buffers in place, TP partial sums first
    (sequence-parallel norms, qk-norms), then the DP sum (routed experts under EP: the expert-DP
    sum); reads of ``grads`` after it (``ops.depend`` on the token) see the sums."""

    def __init__(self, params, ctx, model=None, bucket_mb=None):
        super().__init__()
        shapes = [p.shape for p in params]
        names = [p.name for p in params]
        partial = set(tp_partial_names(model)) if model is not None else set()
        tp_idx = [i for i, n in enumerate(names) if n in partial]
        self.tp_reduce = None
        if ctx.tp_size > 1 and tp_idx:
            self.tp_reduce = BucketedAllReduce(shapes, tp_idx, group_comm(ctx, "tp"), bucket_mb)
        experts = set(ep_split_names(model)) if model is not None else set()
        expert_idx = [i for i, n in enumerate(names) if n in experts]
        dense_idx = [i for i, n in enumerate(names) if n not in experts]
        self.dp_reduce = self.edp_reduce = None
        if ctx.dp_size > 1 and dense_idx:
            self.dp_reduce = BucketedAllReduce(shapes, dense_idx, group_comm(ctx, "dp"), bucket_mb)
        if getattr(ctx, "edp_size", ctx.dp_size) > 1 and expert_idx:
            self.edp_reduce = BucketedAllReduce(shapes, expert_idx, group_comm(ctx, "edp"), bucket_mb)

    def construct(self, grads):
        done = ops.zeros((), ms.float32)
        if self.tp_reduce is not None:
            done = ops.depend(done, self.tp_reduce(grads))
        if self.dp_reduce is not None:
            done = ops.depend(done, self.dp_reduce(grads))
        if self.edp_reduce is not None:
            done = ops.depend(done, self.edp_reduce(grads))
        return done


class ParallelGradNorm(nn.Cell):
    """Global L2 norm of DP-reduced gradients of a tensor- or expert-parallel model: squares of
    TP-sharded gradients are summed over the TP group, those of the routed experts over the EP
    group, replicated ones are counted once."""

    def __init__(self, params, ctx, model=None):
        super().__init__()
        sharded = set(tp_split_axes(model)) if model is not None else set()
        experts = set(ep_split_names(model)) if model is not None else set()
        self.sharded = tuple(i for i, p in enumerate(params) if p.name in sharded)
        self.experts = tuple(i for i, p in enumerate(params) if p.name in experts)
        self.replicated = tuple(i for i, p in enumerate(params) if p.name not in sharded | experts)
        self.tp_sum = group_comm(ctx, "tp") if ctx.tp_size > 1 and self.sharded else None
        self.ep_sum = group_comm(ctx, "ep") if getattr(ctx, "ep_size", 1) > 1 and self.experts else None
        self.square_sum = SquareSum()

    def construct(self, grads):
        total = self.square_sum.total(grads, self.replicated)
        if self.sharded:
            part = self.square_sum.total(grads, self.sharded)
            if self.tp_sum is not None:
                part = self.tp_sum.all_reduce(part.reshape((1,))).reshape(())
            total = total + part
        if self.experts:
            part = self.square_sum.total(grads, self.experts)
            if self.ep_sum is not None:
                part = self.ep_sum.all_reduce(part.reshape((1,))).reshape(())
            total = total + part
        return ops.sqrt(total)


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
