"""ZeRO-1: AdamW whose states and master-weight updates are sharded over the data-parallel ranks.

Every parameter is viewed flat and cut into ``dp`` equal shards (the last padded with zeros). DP
rank ``r`` keeps only shard ``r`` of the first and second moments, so optimizer-state memory per
rank is ``1/dp`` of plain AdamW. Each step rank ``r`` computes the new values of its shard of the
fp32 master weights (the model's Parameters are the fp32 masters), and one AllGather per bucket
puts the full parameters back on every rank.

The update is the same AdamW (decoupled decay, bias correction folded into the scalars) that
:class:`mfcore.train.optim.AdamW` runs through MindSpore's fused kernel, written element-wise here
because the kernel updates whole Parameters in place. Gradients arrive DP-summed (the reducer's
AllReduce; on Ascend a ReduceScatter would halve that traffic, CPU has no ReduceScatter kernel).
"""
import math
from typing import Sequence

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
import mindspore as ms
import mindspore.common.dtype as mstype

from mfcore.errors import CheckpointError
from mfcore.parallel.grad_reduce import default_bucket_mb, make_buckets


class ZeroAdamW(nn.Cell):
    """``construct(grads, lr, grad_coeff)`` like the dense AdamW; ``params`` are the full ones."""

    def __init__(self, params: Sequence[Parameter], ctx, beta1=0.9, beta2=0.95, eps=1e-8,
                 weight_decay=0.1, decay_flags=None, bucket_mb=None):
        super().__init__(auto_prefix=False)
        bucket_mb = bucket_mb or default_bucket_mb()
        self.params = ms.ParameterTuple(params)
        self.dp, self.rank = ctx.dp_size, ctx.dp_rank
        self.numels = tuple(int(np.prod(p.shape)) for p in params)
        self.shard = tuple(math.ceil(n / self.dp) for n in self.numels)
        self.exp_avg = ms.ParameterTuple([_zeros(s, f"zero_m.{p.name}") for s, p in zip(self.shard, params)])
        self.exp_avg_sq = ms.ParameterTuple([_zeros(s, f"zero_v.{p.name}") for s, p in zip(self.shard, params)])
        self.step = Parameter(Tensor(0, mstype.int32), name="adam_step", requires_grad=False)
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps, self.weight_decay = float(eps), float(weight_decay)
        flags = decay_flags if decay_flags is not None else [1.0 if len(p.shape) >= 2 else 0.0 for p in params]
        self.decay_flags = tuple(float(f) for f in flags)
        self.buckets = tuple(tuple(b) for b in make_buckets(self.shard, int(bucket_mb * 2 ** 20 / 4)))
        self.all_gather = ops.AllGather(ctx.dp_group) if self.dp > 1 else None

    def _my_shard(self, x, i):
        """This rank's part of ``x`` viewed flat (padded with zeros to ``dp * shard``)."""
        flat = ops.reshape(x.astype(ms.float32), (-1,))
        pad = self.dp * self.shard[i] - self.numels[i]
        if pad:
            flat = ops.concat([flat, ops.zeros((pad,), ms.float32)])
        return flat[self.rank * self.shard[i]:(self.rank + 1) * self.shard[i]]

    def construct(self, grads, lr, grad_coeff):
        step = self.step + 1
        ops.assign(self.step, step)
        t = ops.cast(step, mstype.float32)
        bc1 = 1.0 - ops.pow(self.beta1, t)
        root_bc2 = ops.sqrt(1.0 - ops.pow(self.beta2, t))
        lr_t = lr * root_bc2 / bc1
        eps_t = self.eps * root_bc2
        wd_t = self.weight_decay * lr / lr_t
        for bucket in self.buckets:
            shards = []
            for i in bucket:
                shards.append(self._update_shard(i, grads[i], lr_t, eps_t, wd_t, grad_coeff))
            self._gather_into_params(bucket, ops.concat(shards))
        return step

    def _update_shard(self, i, grad, lr_t, eps_t, wd_t, grad_coeff):
        g = self._my_shard(grad, i) * grad_coeff
        p = self._my_shard(self.params[i], i)
        m = self.beta1 * self.exp_avg[i] + (1.0 - self.beta1) * g
        v = self.beta2 * self.exp_avg_sq[i] + (1.0 - self.beta2) * g * g
        ops.assign(self.exp_avg[i], m)
        ops.assign(self.exp_avg_sq[i], v)
        update = m / (ops.sqrt(v) + eps_t) + (wd_t * self.decay_flags[i]) * p
        return p - lr_t * update

    def _gather_into_params(self, bucket, mine):
        full = self.all_gather(mine) if self.all_gather is not None else mine
        rows = ops.reshape(full, (self.dp, -1))
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

    def state_arrays(self) -> dict:
        """This rank's shards as numpy, keyed by parameter name (flat, padded to ``dp * shard``)."""
        out = {"adam_step": self.step.asnumpy()}
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            out[f"{p.name}.exp_avg.shard{self.rank}of{self.dp}"] = m.asnumpy()
            out[f"{p.name}.exp_avg_sq.shard{self.rank}of{self.dp}"] = v.asnumpy()
        return out

    def load_state_arrays(self, state: dict) -> None:
        """Inverse of :meth:`state_arrays` (the checkpoint code re-slices other layouts into it)."""
        self.step.set_data(Tensor(np.asarray(state["adam_step"]), mstype.int32))
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            for kind, target in (("exp_avg", m), ("exp_avg_sq", v)):
                key = f"{p.name}.{kind}.shard{self.rank}of{self.dp}"
                arr = np.asarray(state[key], np.float32) if key in state else None
                if arr is None or arr.shape != tuple(target.shape):
                    got = "missing" if arr is None else f"shape {arr.shape}"
                    raise CheckpointError(f"ZeRO-1 optimizer state {key}: expected shape "
                                          f"{tuple(target.shape)}, {got}")
                target.set_data(Tensor(arr, mstype.float32))


def shard_optimizer(optimizer, ctx, bucket_mb=None) -> ZeroAdamW:
    """The ZeRO-1 twin of a dense AdamW (same parameters, hyper-parameters and decay flags)."""
    return ZeroAdamW(list(optimizer.params), ctx, beta1=_scalar(optimizer.beta1),
                     beta2=_scalar(optimizer.beta2), eps=_scalar(optimizer.eps),
                     weight_decay=_scalar(optimizer.weight_decay),
                     decay_flags=optimizer.decay_flags, bucket_mb=bucket_mb)


def _zeros(n: int, name: str) -> Parameter:
    return Parameter(Tensor(np.zeros((n,), np.float32)), name=name, requires_grad=False)


def _scalar(x) -> float:
    return float(x.asnumpy()) if hasattr(x, "asnumpy") else float(x)
