"""The optimizer of a run: AdamW (dense, or ZeRO-1 sharded over data-parallel ranks).

The update arithmetic (PyTorch-semantics AdamW on MindSpore's fused kernel, bias correction folded
into its scalars) is :class:`mfcore.optim.AdamWUpdate`, shared with the ZeRO-1 optimizer. On CPU the
dense optimizer runs that arithmetic in our one-pass kernel (``cpp/kernels/adamw.cpp``): the
gradient's scaling, the update of the parameter and both moments, and the clearing of the gradient
buffer, in place, reading and writing each element once. MindSpore's formulation needs two
parameter-sized temporaries per tensor (the scaled gradient; the zeros that clear the buffer), and
a CPU graph keeps its temporaries in the memory pool (0.5 GB of the 160M model's step). Weight
decay is not applied to norms and biases (:func:`mfcore.optim.decays_weight`). The optimizer's
``construct(grads, lr, grad_coeff)`` is the interface the step uses; both optimizers are stateful
components (``state_dict`` / ``load_state_dict`` in the global layout, see
:mod:`mfcore.checkpoint.stateful`).
"""
from typing import Dict, List, Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
import mindspore.common.dtype as mstype

from mfcore.checkpoint.layout import ShardSpec
from mfcore.checkpoint.stateful import Block
from mfcore.errors import CheckpointError
from mfcore.models.layers.cpu_kernels import custom_op, float32_output, one_element, use_cpu_kernel
from mfcore.optim import AdamWUpdate, decays_weight

MOMENTS = ("exp_avg", "exp_avg_sq")
STEP_KEY = "adam_step"

__all__ = ["AdamW", "build_optimizer", "decays_weight"]


class AdamW(nn.Cell):
    """AdamW over ``params``; ``construct(grads, lr, grad_coeff)`` updates them in place.

    ``grad_coeff`` multiplies every gradient first (loss-scale removal × clipping factor), so the
    step never materialises scaled copies of the gradients. ``layouts`` (parameter name →
    :class:`~mfcore.parallel.param_layout.ParamLayout`) and ``coords`` (this rank's parallel
    coordinates) describe the state in the global layout; by default everything is whole."""

    def __init__(self, params: Sequence[Parameter], beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1,
                 layouts: Optional[Dict[str, object]] = None, coords: Optional[Dict[str, int]] = None):
        super().__init__(auto_prefix=False)
        self.params = ms.ParameterTuple(params)
        self.exp_avg = self.params.clone(prefix="adam_m", init="zeros")
        self.exp_avg_sq = self.params.clone(prefix="adam_v", init="zeros")
        self.step = Parameter(Tensor(0, mstype.int32), name="adam_step", requires_grad=False)
        self.update = AdamWUpdate(beta1, beta2, eps, weight_decay)
        self.decay_flags = tuple(1.0 if decays_weight(p) else 0.0 for p in self.params)
        # the one-pass kernel also clears the gradients it is given: used only once the owner of
        # those buffers asked for it (clear_grads_in_update), so a direct call leaves them as they are
        fused = use_cpu_kernel(mstype.float32) and all(p.dtype == mstype.float32 for p in self.params)
        self.fused_kernel = custom_op("MfAdamWStep", one_element, float32_output) if fused else None
        self.zeroes_grads = False
        self.layouts = dict(layouts or {})
        self.coords = dict(coords or {})

    def construct(self, grads, lr, grad_coeff):
        step = self.step + 1
        ops.assign(self.step, step)
        lr_t, eps_t, wd_t = self.update.scalars(step, lr)
        if self.zeroes_grads:
            return self._fused(step, grads, lr_t, eps_t, wd_t, grad_coeff)
        for p, m, v, g, flag in zip(self.params, self.exp_avg, self.exp_avg_sq, grads, self.decay_flags):
            self.update.apply(p, m, v, ops.cast(g, mstype.float32) * grad_coeff, lr_t, eps_t, wd_t, flag)
        return step

    def clear_grads_in_update(self) -> bool:
        """Switch to the one-pass kernel, which also zeroes the gradient buffers passed to
        ``construct`` (call before the first step compiles); False where it cannot run."""
        self.zeroes_grads = self.fused_kernel is not None
        return self.zeroes_grads

    def _fused(self, step, grads, lr_t, eps_t, wd_t, grad_coeff):
        """One kernel per parameter, in place (the gradient buffers are cleared as they are read)."""
        head = (lr_t, self.update.beta1, self.update.beta2, eps_t)
        decay = ops.stack(head + (wd_t, grad_coeff))
        plain = ops.stack(head + (ops.zeros_like(wd_t), grad_coeff))
        done = []
        for p, m, v, g, flag in zip(self.params, self.exp_avg, self.exp_avg_sq, grads, self.decay_flags):
            done.append(self.fused_kernel(p, m, v, g, decay if flag else plain))
        return ops.depend(step, ops.stack(done))

    def _spec(self, p) -> ShardSpec:
        lay = self.layouts.get(p.name)
        return lay.spec if lay is not None else ShardSpec.whole(p.shape)

    def _writes(self, p) -> bool:
        lay = self.layouts.get(p.name)
        if lay is not None:
            return lay.writes(self.coords)
        return all(v == 0 for v in self.coords.values())

    def state_dict(self) -> dict:
        """``adam_step`` and both moments of every parameter, as blocks of the global tensors."""
        first = all(v == 0 for v in self.coords.values())
        out = {STEP_KEY: Block(self.step.asnumpy(), ShardSpec.whole(()), first)}
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            for kind, buf in zip(MOMENTS, (m, v)):
                out[f"{p.name}.{kind}"] = Block(buf.asnumpy(), self._spec(p), self._writes(p))
        return out

    def load_state_dict(self, state: dict) -> None:
        self.step.set_data(Tensor(np.asarray(state[STEP_KEY]), mstype.int32))
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            for kind, buf in zip(MOMENTS, (m, v)):
                key = f"{p.name}.{kind}"
                arr = np.asarray(state[key], np.float32) if key in state else None
                if arr is None or arr.shape != tuple(p.shape):
                    got = "missing" if arr is None else f"shape {arr.shape}"
                    raise CheckpointError(f"optimizer state {key}: expected shape {tuple(p.shape)}, {got}")
                buf.set_data(Tensor(arr, mstype.float32))


def build_optimizer(optimizer_cfg, params: List[Parameter], ctx=None, layouts=None):
    """The run's optimizer: ZeRO-1 built directly when ``ctx`` shards optimizer state (DP > 1 with
    ``parallel.optimizer_sharding``), else dense AdamW. ``layouts``: the parameters' global layout."""
    if ctx is not None and ctx.optimizer_sharding:
        from mfcore.parallel.zero import build_zero_adamw
        return build_zero_adamw(params, ctx, optimizer_cfg, layouts)
    from mfcore.parallel.param_layout import coords_of
    return AdamW(params, beta1=optimizer_cfg.beta1, beta2=optimizer_cfg.beta2, eps=optimizer_cfg.eps,
                 weight_decay=optimizer_cfg.weight_decay, layouts=layouts,
                 coords=coords_of(ctx) if ctx is not None else None)
