"""AdamW with decoupled weight decay (PyTorch semantics, bias-corrected) and global-norm clipping.

The update runs MindSpore's fused ``AdamWeightDecay`` kernel (one kernel per parameter instead of a
dozen element-wise ops). That kernel has no bias correction, so it is folded into its scalars:
PyTorch's ``p -= lr*wd*p + lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)`` equals the kernel's
``p -= lr_t * (m / (sqrt(v) + eps_t) + wd_t * p)`` with ``lr_t = lr*sqrt(bc2)/bc1``,
``eps_t = eps*sqrt(bc2)`` and ``wd_t = wd*lr/lr_t``.

Weight decay is not applied to norms and biases (every parameter with fewer than two dimensions, or
whose name says it is a norm). The optimizer's ``construct(grads, lr, grad_coeff)`` is the interface
the step uses; a sharded (ZeRO-1) optimizer replaces it with the same signature.
"""
from typing import List, Sequence

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
import mindspore.common.dtype as mstype


def decays_weight(param: Parameter) -> bool:
    """Decoupled weight decay applies to matrices (and embeddings), not to norms and biases."""
    name = param.name.lower()
    return len(param.shape) >= 2 and "norm" not in name and not name.endswith("bias")


class AdamW(nn.Cell):
    """AdamW over ``params``; ``construct(grads, lr, grad_coeff)`` updates them in place.

    ``grad_coeff`` multiplies every gradient first (loss-scale removal × clipping factor), so the
    step never materialises scaled copies of the gradients."""

    def __init__(self, params: Sequence[Parameter], beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1):
        super().__init__(auto_prefix=False)
        self.params = ms.ParameterTuple(params)
        self.exp_avg = self.params.clone(prefix="adam_m", init="zeros")
        self.exp_avg_sq = self.params.clone(prefix="adam_v", init="zeros")
        self.step = Parameter(Tensor(0, mstype.int32), name="adam_step", requires_grad=False)
        self.beta1 = Tensor(beta1, mstype.float32)
        self.beta2 = Tensor(beta2, mstype.float32)
        self.eps = Tensor(eps, mstype.float32)
        self.weight_decay = weight_decay
        self.decay_flags = tuple(1.0 if decays_weight(p) else 0.0 for p in self.params)
        self.adam = ops.AdamWeightDecay()

    def construct(self, grads, lr, grad_coeff):
        step = self.step + 1
        ops.assign(self.step, step)
        t = ops.cast(step, mstype.float32)
        bc1 = 1.0 - ops.pow(self.beta1, t)
        root_bc2 = ops.sqrt(1.0 - ops.pow(self.beta2, t))
        lr_t = lr * root_bc2 / bc1
        eps_t = self.eps * root_bc2
        wd_t = self.weight_decay * lr / lr_t
        for p, m, v, g, flag in zip(self.params, self.exp_avg, self.exp_avg_sq, grads, self.decay_flags):
            self.adam(p, m, v, lr_t, self.beta1, self.beta2, eps_t, wd_t * flag,
                      ops.cast(g, mstype.float32) * grad_coeff)
        return step

    def state_arrays(self) -> dict:
        """Optimizer state as numpy, keyed by parameter name (for checkpoints)."""
        out = {"adam_step": self.step.asnumpy()}
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            out[f"{p.name}.exp_avg"] = m.asnumpy()
            out[f"{p.name}.exp_avg_sq"] = v.asnumpy()
        return out

    def load_state_arrays(self, state: dict) -> None:
        self.step.set_data(Tensor(np.asarray(state["adam_step"]), mstype.int32))
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            m.set_data(Tensor(state[f"{p.name}.exp_avg"], mstype.float32))
            v.set_data(Tensor(state[f"{p.name}.exp_avg_sq"], mstype.float32))


def global_norm(grads) -> Tensor:
    """L2 norm over all gradients together (computed in float32)."""
    squares = [ops.reduce_sum(ops.square(ops.cast(g, mstype.float32))) for g in grads]
    return ops.sqrt(ops.addn(squares))


def build_optimizer(optimizer_cfg, params: List[Parameter]) -> AdamW:
    return AdamW(params, beta1=optimizer_cfg.beta1, beta2=optimizer_cfg.beta2,
                 eps=optimizer_cfg.eps, weight_decay=optimizer_cfg.weight_decay)
