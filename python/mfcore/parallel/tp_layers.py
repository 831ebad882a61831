"""Tensor-parallel layers, each built from the dense layer it replaces (Megatron-LM style).

Every layer takes its shard of the dense layer's weights, so a model built on every rank from the
same seed and then parallelized computes exactly what the dense model computes. Parameter objects
keep the dense layer's names (``model.layers.0.self_attn.q_proj.weight``), so checkpoints, weight
decay rules and Hugging Face names see the same names with a slice of the tensor behind them.

Where communication happens (fewer collectives than one per projection):

- :class:`RegionEntryRMSNorm` — the norm in front of column-parallel projections enters the TP region
  once for all of them (q, k, v share one entry; gate and up share one): without sequence
  parallelism identity forward / AllReduce backward, with it AllGather of the sequence forward /
  ReduceScatter backward.
- :class:`ColumnParallelLinear` — purely local ``x @ W[:, shard]``.
- :class:`RowParallelLinear` — ``x[..., shard] @ W[shard, :]`` then AllReduce (or ReduceScatter of
  the sequence under sequence parallelism), bias added after the reduction.
- :class:`VocabParallelEmbedding` — rows of the table, zero for foreign ids, then the same exit.
- :class:`RegionInput` — a block whose input enters the TP region (a MoE's shared experts, whose
  norm also feeds replicated routed experts and so cannot enter the region itself).
- :class:`FullSequence` — under sequence parallelism, a block that runs replicated on the whole
  sequence (a MoE with replicated routed experts): AllGather in, keep own part out; backward keeps
  own part / AllGathers, so the replicated weights get their full gradient on every rank.
"""
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
import mindspore as ms

from mfcore.errors import ConfigError
from mfcore.models.layers.norm import RMSNorm
from mfcore.parallel.collectives import (CopyToRegion, GatherFromRegion, GatherReduceScatter, MaxOverRegion,
                                         ReduceFromRegion, ReduceScatterToRegion, ScatterToRegion, group_cell)

SEQUENCE_AXIS = 1  # activations are [batch, seq, hidden]


def shard_of(array: np.ndarray, axis: int, size: int, index: int, what: str) -> np.ndarray:
    """``index``-th of ``size`` equal parts of ``array`` along ``axis`` (a copy)."""
    if array.shape[axis] % size:
        raise ConfigError(f"{what}: dimension {array.shape[axis]} is not divisible by parallel.tensor={size}")
    part = array.shape[axis] // size
    return np.ascontiguousarray(np.take(array, range(index * part, (index + 1) * part), axis=axis))


def sharded_parameter(dense: Parameter, axis: int, ctx, what: str) -> Parameter:
    """A Parameter holding this rank's shard of ``dense``, under ``dense``'s name."""
    data = shard_of(dense.asnumpy(), axis, ctx.tp_size, ctx.tp_rank, what)
    return Parameter(Tensor(data, dense.dtype), name=dense.name, requires_grad=dense.requires_grad)


def region_exit(ctx):
    """Sum the TP partial results (and, with sequence parallelism, keep own sequence part)."""
    if ctx.sequence_parallel:
        return group_cell(ReduceScatterToRegion, ctx, axis=SEQUENCE_AXIS)
    return group_cell(ReduceFromRegion, ctx)


def region_entry(ctx):
    if ctx.sequence_parallel:
        return group_cell(GatherReduceScatter, ctx, axis=SEQUENCE_AXIS)
    return group_cell(CopyToRegion, ctx)


class ColumnParallelLinear(nn.Cell):
    """Output features split over TP ranks; input must already be in the TP region."""

    HF_TRANSPOSED = True

    def __init__(self, dense, ctx, name="linear"):
        super().__init__()
        self.in_features = dense.in_features
        self.out_features = dense.out_features // ctx.tp_size
        self.has_bias = dense.has_bias
        self.compute_dtype = dense.compute_dtype
        self.weight = sharded_parameter(dense.weight, 1, ctx, f"{name} out_features")
        if self.has_bias:
            self.bias = sharded_parameter(dense.bias, 0, ctx, f"{name} bias")

    def construct(self, x):
        lead = x.shape[:-1]
        out = ops.matmul(x.reshape(-1, x.shape[-1]).astype(self.compute_dtype),
                         self.weight.astype(self.compute_dtype))
        if self.has_bias:
            out = out + self.bias.astype(self.compute_dtype)
        return out.reshape(lead + (self.out_features,))


class RowParallelLinear(nn.Cell):
    """Input features split over TP ranks; partial products summed over the TP group."""

    HF_TRANSPOSED = True

    def __init__(self, dense, ctx, name="linear"):
        super().__init__()
        self.in_features = dense.in_features // ctx.tp_size
        self.out_features = dense.out_features
        self.has_bias = dense.has_bias
        self.compute_dtype = dense.compute_dtype
        self.weight = sharded_parameter(dense.weight, 0, ctx, f"{name} in_features")
        if self.has_bias:  # replicated, added once after the reduction
            self.bias = dense.bias
        self.exit = region_exit(ctx)

    def construct(self, x):
        lead = x.shape[:-1]
        out = ops.matmul(x.reshape(-1, x.shape[-1]).astype(self.compute_dtype),
                         self.weight.astype(self.compute_dtype))
        out = self.exit(out.reshape(lead + (self.out_features,)))
        if self.has_bias:
            out = out + self.bias.astype(self.compute_dtype)
        return out


class VocabParallelEmbedding(nn.Cell):
    """Rows ``[rank * V/tp, (rank+1) * V/tp)`` of the table; ids outside them contribute zeros."""

    def __init__(self, dense, ctx, name="embed_tokens"):
        super().__init__()
        self.vocab_size = dense.vocab_size // ctx.tp_size
        self.hidden_size = dense.hidden_size
        self.compute_dtype = dense.compute_dtype
        self.vocab_start = ctx.tp_rank * self.vocab_size
        self.weight = sharded_parameter(dense.weight, 0, ctx, f"{name} vocab_size")
        self.exit = region_exit(ctx)

    def construct(self, input_ids):
        local = input_ids - self.vocab_start
        inside = ops.logical_and(local >= 0, local < self.vocab_size)
        rows = ops.gather(self.weight, ops.where(inside, local, ops.zeros_like(local)), 0)
        rows = rows * inside.astype(rows.dtype).expand_dims(-1)
        return self.exit(rows).astype(self.compute_dtype)


class RegionEntryRMSNorm(RMSNorm):
    """An RMSNorm whose output enters the TP region (see :func:`enter_region`)."""

    def construct(self, x):
        return self.tp_entry(super().construct(x))


def enter_region(norm, ctx):
    """Make ``norm`` (in place, same Parameter and name) feed the TP region through one entry."""
    if type(norm) is not RMSNorm:
        raise ConfigError(f"tensor parallelism expects RMSNorm in front of the projections, got {type(norm).__name__}")
    norm.__class__ = RegionEntryRMSNorm  # a subclass: keeps the Parameter object and its HF name
    norm.tp_entry = region_entry(ctx)
    return norm


class RegionInput(nn.Cell):
    """``cell(entry(x))``: the input of ``cell`` enters the TP region (see :func:`region_entry`)."""

    def __init__(self, cell, ctx):
        super().__init__()
        self.cell = cell
        self.tp_entry = region_entry(ctx)

    def construct(self, x):
        return self.cell(self.tp_entry(x))


class FullSequence(nn.Cell):
    """``cell`` on the whole sequence under sequence parallelism: the sequence shards are gathered
    (backward: own part), the first output is cut back to this rank's part (backward: gathered)."""

    def __init__(self, cell, ctx):
        super().__init__()
        self.cell = cell
        self.gather = group_cell(GatherFromRegion, ctx, axis=SEQUENCE_AXIS)
        self.scatter = group_cell(ScatterToRegion, ctx, axis=SEQUENCE_AXIS)

    def construct(self, x):
        out = self.cell(self.gather(x))
        if isinstance(out, tuple):
            return (self.scatter(out[0]),) + out[1:]
        return self.scatter(out)


class VocabParallelCrossEntropySum(nn.Cell):
    """``sum_t mask_t * (logsumexp(z_t) - z_t[label_t])`` with ``z`` split over TP ranks by vocab.

    The max and the two sums (exp and picked logit) are reduced over the group; autodiff through
    the comm cells then yields the local ``(softmax - onehot) * mask`` gradient.
    """

    def __init__(self, ctx, local_vocab):
        super().__init__()
        self.vocab_start = ctx.tp_rank * local_vocab
        self.local_vocab = local_vocab
        self.reduce = group_cell(ReduceFromRegion, ctx)
        self.max_reduce = group_cell(MaxOverRegion, ctx)

    def construct(self, logits, labels, loss_mask):
        logits = logits.astype(ms.float32)
        top = ops.stop_gradient(self.max_reduce(logits.max(axis=-1, keepdims=True)))
        shifted = logits - top
        sum_exp = self.reduce(ops.exp(shifted).sum(-1))
        local = labels.astype(ms.int32) - self.vocab_start
        inside = ops.logical_and(local >= 0, local < self.local_vocab)
        index = ops.where(inside, local, ops.zeros_like(local)).expand_dims(-1)
        picked = ops.gather_elements(shifted, 1, index).squeeze(-1) * inside.astype(ms.float32)
        picked = self.reduce(picked)
        return ((ops.log(sum_exp) - picked) * loss_mask.astype(ms.float32)).sum()
