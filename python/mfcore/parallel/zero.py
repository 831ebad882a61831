"""ZeRO-1: AdamW whose states and master-weight updates are sharded over the data-parallel ranks.

Each parameter (this rank's tensor-parallel block of it, if split) is cut by rows (axis 0) into
``dp`` parts of ``ceil(rows / dp)`` rows, the last ones short or empty; viewed flat that is a slice
``[r * shard, (r + 1) * shard)`` of the parameter padded with zeros to ``dp * shard``. DP rank ``r``
keeps only its part of the first and second moments (optimizer-state memory ``1/dp`` of AdamW).
Row-aligned parts are boxes of the global tensor, so checkpoints describe them as ordinary blocks
(:meth:`ZeroAdamW.state_dict`) that reshard to any other layout.

Each step rank ``r`` copies its part of the fp32 master weights (the model's Parameters) into a
work buffer, runs the same AdamW kernel as the dense optimizer on it (:class:`mfcore.optim.AdamWUpdate`:
the result is bit-identical to that part of a dense update), and one AllGather per bucket puts the
full parameters back on every rank. Gradients arrive DP-summed (the reducer's AllReduce).

Under expert parallelism the routed experts' rows (their layout is split over ``ep``) are sharded
over their expert-data-parallel group instead (the ``dp / ep`` ranks holding the same experts), in
buckets of their own gathered over that group.
"""
import math
from typing import Dict, Optional, Sequence

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
import mindspore as ms
import mindspore.common.dtype as mstype

from mfcore.checkpoint.layout import ShardSpec
from mfcore.checkpoint.stateful import Block
from mfcore.errors import CheckpointError
from mfcore.optim import AdamWUpdate, decays_weight
from mfcore.parallel.grad_reduce import default_bucket_mb, make_buckets
from mfcore.parallel.group_comm import group_comm
from mfcore.parallel.param_layout import ParamLayout, coords_of

MOMENTS = ("exp_avg", "exp_avg_sq")
STEP_KEY = "adam_step"


def row_split(shape: Sequence[int], dp: int, rank: int):
    """``(start_row, rows, shard)``: rank's rows of a tensor of ``shape`` cut into ``dp`` parts, and
    the flat part size ``shard`` (rows per part times the row size) every rank pads to."""
    shape = tuple(int(d) for d in shape) or (1,)
    per = math.ceil(shape[0] / dp)
    start = min(rank * per, shape[0])
    row = int(np.prod(shape[1:], dtype=np.int64))
    return start, max(0, min(per, shape[0] - start)), per * row


class ZeroAdamW(nn.Cell):
    """``construct(grads, lr, grad_coeff)`` like the dense AdamW; ``params`` are the full ones."""

    def __init__(self, params: Sequence[Parameter], ctx, beta1=0.9, beta2=0.95, eps=1e-8,
                 weight_decay=0.1, layouts: Optional[Dict[str, ParamLayout]] = None, bucket_mb=None):
        super().__init__(auto_prefix=False)
        bucket_mb = bucket_mb or default_bucket_mb()
        self.params = ms.ParameterTuple(params)
        self.coords = coords_of(ctx)
        self.layouts = {p.name: (layouts or {}).get(p.name) or _whole(p) for p in params}
        # the group each parameter is sharded over: its replicas (experts: the expert-DP ranks)
        self.dims = tuple("edp" if "ep" in self.layouts[p.name].split_over else "dp" for p in params)
        sizes = {"dp": (ctx.dp_size, ctx.dp_rank),
                 "edp": (getattr(ctx, "edp_size", ctx.dp_size), getattr(ctx, "edp_rank", ctx.dp_rank))}
        self.parts = tuple(sizes[d][0] for d in self.dims)
        self.ranks = tuple(sizes[d][1] for d in self.dims)
        self.numels = tuple(int(np.prod(p.shape)) for p in params)
        self.splits = tuple(row_split(p.shape, n, r) for p, n, r in zip(params, self.parts, self.ranks))
        self.shard = tuple(s for _, _, s in self.splits)
        self.exp_avg = ms.ParameterTuple([_zeros(s, f"zero_m.{p.name}") for s, p in zip(self.shard, params)])
        self.exp_avg_sq = ms.ParameterTuple([_zeros(s, f"zero_v.{p.name}") for s, p in zip(self.shard, params)])
        self.work = ms.ParameterTuple([_zeros(s, f"zero_p.{p.name}") for s, p in zip(self.shard, params)])
        self.step = Parameter(Tensor(0, mstype.int32), name="adam_step", requires_grad=False)
        self.update = AdamWUpdate(beta1, beta2, eps, weight_decay)
        self.decay_flags = tuple(1.0 if decays_weight(p) else 0.0 for p in params)
        bucket_elems = int(bucket_mb * 2 ** 20 / 4)
        self.buckets = _buckets_of(self.shard, self.dims, "dp", bucket_elems)
        self.expert_buckets = _buckets_of(self.shard, self.dims, "edp", bucket_elems)
        self.comm = group_comm(ctx, "dp")
        self.expert_comm = group_comm(ctx, "edp") if self.expert_buckets else None

    def _my_shard(self, x, i):
        """This rank's part of ``x`` viewed flat (padded with zeros to ``parts * shard``)."""
        flat = ops.reshape(x.astype(ms.float32), (-1,))
        pad = self.parts[i] * self.shard[i] - self.numels[i]
        if pad:
            flat = ops.concat([flat, ops.zeros((pad,), ms.float32)])
        return flat[self.ranks[i] * self.shard[i]:(self.ranks[i] + 1) * self.shard[i]]

    def construct(self, grads, lr, grad_coeff):
        step = self.step + 1
        ops.assign(self.step, step)
        lr_t, eps_t, wd_t = self.update.scalars(step, lr)
        for bucket in self.buckets:
            shards = []
            for i in bucket:
                shards.append(self._update_shard(i, grads[i], lr_t, eps_t, wd_t, grad_coeff))
            self._gather_into_params(bucket, ops.concat(shards), self.comm)
        for bucket in self.expert_buckets:
            shards = []
            for i in bucket:
                shards.append(self._update_shard(i, grads[i], lr_t, eps_t, wd_t, grad_coeff))
            self._gather_into_params(bucket, ops.concat(shards), self.expert_comm)
        return step

    def _update_shard(self, i, grad, lr_t, eps_t, wd_t, grad_coeff):
        work = self.work[i]
        ops.assign(work, self._my_shard(self.params[i], i))
        done = self.update.apply(work, self.exp_avg[i], self.exp_avg_sq[i], self._my_shard(grad, i) * grad_coeff,
                                 lr_t, eps_t, wd_t, self.decay_flags[i])
        return ops.depend(work, done) * 1.0

    def _gather_into_params(self, bucket, mine, comm):
        rows = ops.reshape(comm.all_gather(mine, 0), (self.parts[bucket[0]], -1))
        offset = 0
        for i in bucket:
            s = self.shard[i]
            flat = ops.reshape(rows[:, offset:offset + s], (-1,))[:self.numels[i]]
            param = self.params[i]
            ops.assign(param, ops.reshape(flat, param.shape).astype(param.dtype))
            offset += s

    def state_nbytes(self) -> int:
        """Bytes of optimizer state held by this rank (moments; the step counter is negligible)."""
        return sum(int(np.prod(p.shape)) * 4 for p in list(self.exp_avg) + list(self.exp_avg_sq))

    # ---- checkpoint state, in the global layout ------------------------------------------------
    def _moment_layout(self, i: int) -> ParamLayout:
        start, rows, _ = self.splits[i]
        return self.layouts[self.params[i].name].rows(start, rows, self.dims[i])

    def state_dict(self) -> dict:
        """``adam_step`` and this rank's rows of every moment, as blocks of the global tensors."""
        out = {STEP_KEY: Block(self.step.asnumpy(), ShardSpec.whole(()), ParamLayout(
            ShardSpec.whole(()), ()).writes(self.coords))}
        for i, p in enumerate(self.params):
            lay = self._moment_layout(i)
            size = int(np.prod(lay.shape))
            for kind, buf in zip(MOMENTS, (self.exp_avg[i], self.exp_avg_sq[i])):
                block = buf.asnumpy()[:size].reshape(lay.shape)
                out[f"{p.name}.{kind}"] = Block(block, lay.spec, size > 0 and lay.writes(self.coords))
        return out

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict` (blocks in this rank's layout, whatever wrote them)."""
        self.step.set_data(Tensor(np.asarray(state[STEP_KEY]), mstype.int32))
        for i, p in enumerate(self.params):
            lay = self._moment_layout(i)
            for kind, buf in zip(MOMENTS, (self.exp_avg[i], self.exp_avg_sq[i])):
                key = f"{p.name}.{kind}"
                arr = np.asarray(state[key], np.float32) if key in state else None
                if arr is None or arr.shape != lay.shape:
                    got = "missing" if arr is None else f"shape {arr.shape}"
                    raise CheckpointError(f"ZeRO-1 optimizer state {key}: expected a block of shape "
                                          f"{lay.shape}, {got}")
                padded = np.zeros(self.shard[i], np.float32)
                padded[:arr.size] = arr.reshape(-1)
                buf.set_data(Tensor(padded, mstype.float32))


def build_zero_adamw(params, ctx, optimizer_cfg, layouts=None, bucket_mb=None) -> ZeroAdamW:
    """The ZeRO-1 optimizer straight from the ``optimizer:`` config section (no dense AdamW, and
    so no full moments, is ever built)."""
    return ZeroAdamW(params, ctx, beta1=optimizer_cfg.beta1, beta2=optimizer_cfg.beta2,
                     eps=optimizer_cfg.eps, weight_decay=optimizer_cfg.weight_decay, layouts=layouts,
                     bucket_mb=bucket_mb)


def _buckets_of(shards, dims, dim, bucket_elems):
    """Buckets (tuples of parameter indices) of the parameters sharded over ``dim``."""
    indices = [i for i, d in enumerate(dims) if d == dim]
    local = make_buckets([shards[i] for i in indices], bucket_elems)
    return tuple(tuple(indices[j] for j in b) for b in local)


def _whole(p) -> ParamLayout:
    shape = tuple(int(d) for d in p.shape)
    return ParamLayout(ShardSpec.whole(shape), shape)


def _zeros(n: int, name: str) -> Parameter:
    return Parameter(Tensor(np.zeros((n,), np.float32)), name=name, requires_grad=False)
