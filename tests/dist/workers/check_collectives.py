"""Run on every rank of a TP=2 job: each comm cell and tensor-parallel layer, forward and backward,
against single-process numpy/dense math. Writes ``{check: max abs error}`` to OUT/rank<r>.json.

Every rank can compute every other rank's inputs (they are drawn from a seed plus the rank), so
the reference for a collective is computed locally, without communication.
"""
import json
import os
import sys

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from mfcore.models.layers.linear import Embedding, Linear
from mfcore.models.layers.loss import MaskedCrossEntropySum
from mfcore.parallel import init_parallel
from mfcore.parallel.collectives import (CopyToRegion, GatherFromRegion, GatherReduceScatter, ReduceFromRegion,
                                         ReduceScatterToRegion, ScatterToRegion, group_cell)
from mfcore.parallel.host_collectives import host_all_reduce
from mfcore.parallel.tp_layers import (ColumnParallelLinear, RowParallelLinear, VocabParallelCrossEntropySum,
                                       VocabParallelEmbedding)

SHAPE = (2, 4, 6)  # [batch, seq, hidden]


class Vjp(nn.Cell):
    """Forward output, input gradients and parameter gradients for a given output gradient."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.params = ms.ParameterTuple(net.trainable_params())
        self.grad = ops.GradOperation(get_all=True, get_by_list=True, sens_param=True)

    def construct(self, x, dout):
        return self.net(x), self.grad(self.net, self.params)(x, dout)


def data(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def run_vjp(net, x, dout):
    out, (inputs, params) = Vjp(net)(Tensor(x), Tensor(dout))
    return out.asnumpy(), inputs[0].asnumpy(), [p.asnumpy() for p in params]


def err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)))


def check_comm_cells(ctx, results):
    n, r = ctx.tp_size, ctx.tp_rank
    xs = [data(10 + k, SHAPE) for k in range(n)]
    douts = [data(20 + k, SHAPE) for k in range(n)]
    part = lambda a, k: np.split(a, n, axis=1)[k]  # noqa: E731 (sequence axis)
    full_douts = [data(30 + k, (2, 4 * n, 6)) for k in range(n)]
    cases = {
        "copy": (CopyToRegion, xs[r], douts[r], xs[r], sum(douts)),
        "reduce": (ReduceFromRegion, xs[r], douts[r], sum(xs), douts[r]),
        "gather_seq": (GatherFromRegion, xs[r], full_douts[r], np.concatenate(xs, 1), part(full_douts[r], r)),
        "scatter_seq": (ScatterToRegion, xs[r], douts[r][:, :4 // n], part(xs[r], r),
                        np.concatenate([d[:, :4 // n] for d in douts], 1)),
        "reduce_scatter_seq": (ReduceScatterToRegion, xs[r], douts[r][:, :4 // n], part(sum(xs), r),
                               np.concatenate([d[:, :4 // n] for d in douts], 1)),
        "gather_reduce_scatter_seq": (GatherReduceScatter, xs[r], full_douts[r], np.concatenate(xs, 1),
                                      part(sum(full_douts), r)),
    }
    for name, (cls, x, dout, want_y, want_dx) in cases.items():
        y, dx, _ = run_vjp(group_cell(cls, ctx, axis=1), x, dout)
        results[f"{name}.forward"] = err(y, want_y)
        results[f"{name}.backward"] = err(dx, want_dx)
    gathered, _, _ = run_vjp(group_cell(GatherFromRegion, ctx, axis=-1), xs[r], data(40, (2, 4, 6 * n)))
    results["gather_last_axis.forward"] = err(gathered, np.concatenate(xs, -1))
    counts = host_all_reduce(np.array([r + 1, 5]), ctx.tp_group)
    results["host_all_reduce.int"] = err(counts, [sum(range(1, n + 1)), 5 * n])


class ColumnNet(nn.Cell):
    def __init__(self, linear, ctx):
        super().__init__()
        self.entry = group_cell(CopyToRegion, ctx)
        self.linear = linear
        self.exit = group_cell(GatherFromRegion, ctx, axis=-1)

    def construct(self, x):
        return self.exit(self.linear(self.entry(x)))


class RowNet(nn.Cell):
    def __init__(self, linear, ctx):
        super().__init__()
        self.entry = group_cell(ScatterToRegion, ctx, axis=-1)
        self.linear = linear

    def construct(self, x):
        return self.linear(self.entry(x))


def check_linear(ctx, results, kind):
    n, r = ctx.tp_size, ctx.tp_rank
    ms.set_seed(7)
    dense = Linear(6, 8, has_bias=True)
    dense.bias.set_data(Tensor(data(3, (8,))))
    x, dout = data(50, SHAPE), data(51, (2, 4, 8))
    y, dx, (dw, db) = run_vjp(dense, x, dout)
    if kind == "column":
        net, w_axis, bias_part = ColumnNet(ColumnParallelLinear(dense, ctx), ctx), 1, np.split(db, n)[r]
    else:
        net, w_axis, bias_part = RowNet(RowParallelLinear(dense, ctx), ctx), 0, db
    py, pdx, (pdw, pdb) = run_vjp(net, x, dout)
    results[f"{kind}_linear.forward"] = err(py, y)
    results[f"{kind}_linear.grad_input"] = err(pdx, dx)
    results[f"{kind}_linear.grad_weight"] = err(pdw, np.split(dw, n, axis=w_axis)[r])
    results[f"{kind}_linear.grad_bias"] = err(pdb, bias_part)


def check_embedding(ctx, results):
    n, r = ctx.tp_size, ctx.tp_rank
    ms.set_seed(8)
    dense = Embedding(16, 6)
    ids = np.random.default_rng(60).integers(0, 16, (2, 4)).astype(np.int32)
    dout = data(61, SHAPE)

    class Lookup(nn.Cell):
        def __init__(self, emb):
            super().__init__()
            self.emb = emb
            self.params = ms.ParameterTuple(emb.trainable_params())
            self.grad = ops.GradOperation(get_by_list=True, sens_param=True)

        def construct(self, ids, dout):
            return self.emb(ids), self.grad(self.emb, self.params)(ids, dout)

    y, (dw,) = Lookup(dense)(Tensor(ids), Tensor(dout))
    py, (pdw,) = Lookup(VocabParallelEmbedding(dense, ctx))(Tensor(ids), Tensor(dout))
    results["vocab_embedding.forward"] = err(py.asnumpy(), y.asnumpy())
    results["vocab_embedding.grad_weight"] = err(pdw.asnumpy(), np.split(dw.asnumpy(), n)[r])


def check_cross_entropy(ctx, results):
    n, r = ctx.tp_size, ctx.tp_rank
    vocab, tokens = 16, 10
    logits = data(70, (tokens, vocab)) * 3
    labels = np.random.default_rng(71).integers(0, vocab, tokens).astype(np.int32)
    mask = (np.arange(tokens) % 4 != 0).astype(np.float32)

    class Loss(nn.Cell):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn
            self.grad = ops.GradOperation()

        def construct(self, z, y, m):
            return self.fn(z, y, m), self.grad(self.fn)(z, y, m)

    loss, dz = Loss(MaskedCrossEntropySum())(Tensor(logits), Tensor(labels), Tensor(mask))
    local = np.split(logits, n, axis=1)[r]
    ploss, pdz = Loss(VocabParallelCrossEntropySum(ctx, vocab // n))(Tensor(local), Tensor(labels), Tensor(mask))
    results["vocab_cross_entropy.forward"] = err(ploss.asnumpy(), loss.asnumpy())
    results["vocab_cross_entropy.grad_logits"] = err(pdz.asnumpy(), np.split(dz.asnumpy(), n, axis=1)[r])


def main(out_dir):
    ms.set_context(mode=ms.GRAPH_MODE)
    run(out_dir, init_parallel({"data": 1, "tensor": 2}))


def run(out_dir, ctx):
    """Every check under ``ctx`` (TP=2, no sequence parallelism; also called by tp_checks.py)."""
    results = {}
    check_comm_cells(ctx, results)
    check_linear(ctx, results, "column")
    check_linear(ctx, results, "row")
    check_embedding(ctx, results)
    check_cross_entropy(ctx, results)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"rank{ctx.rank}.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("checks done", json.dumps(results), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
