"""The AdamW update (decoupled weight decay, PyTorch semantics, bias-corrected), once.

It runs MindSpore's fused ``AdamWeightDecay`` kernel (one kernel per tensor instead of a dozen
element-wise ops). That kernel has no bias correction, so it is folded into its scalars: PyTorch's
``p -= lr*wd*p + lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)`` equals the kernel's
``p -= lr_t * (m / (sqrt(v) + eps_t) + wd_t * p)`` with ``lr_t = lr*sqrt(bc2)/bc1``,
``eps_t = eps*sqrt(bc2)`` and ``wd_t = wd*lr/lr_t``.

The dense optimizer applies it to whole parameters, ZeRO-1 to each rank's shard of them; being the
same kernel on the same numbers, a shard's update is bit-identical to that part of the dense one.
On CPU the dense optimizer runs the same arithmetic in our one-pass kernel instead
(:class:`mfcore.train.optim.AdamW`, ``cpp/kernels/adamw.cpp``).
"""
import mindspore.common.dtype as mstype
from mindspore import Parameter, Tensor, nn, ops


def decays_weight(param: Parameter) -> bool:
    """Decoupled weight decay applies to matrices (and embeddings), not to norms and biases."""
    name = param.name.lower()
    return len(param.shape) >= 2 and "norm" not in name and not name.endswith("bias")


class AdamWUpdate(nn.Cell):
    """``scalars(step, lr)`` once per optimizer step, then ``apply(...)`` per tensor."""

    def __init__(self, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1):
        super().__init__(auto_prefix=False)
        self.beta1 = Tensor(beta1, mstype.float32)
        self.beta2 = Tensor(beta2, mstype.float32)
        self.eps = Tensor(eps, mstype.float32)
        self.weight_decay = float(weight_decay)
        self.kernel = ops.AdamWeightDecay()

    def scalars(self, step, lr):
        """``(lr_t, eps_t, wd_t)`` of update number ``step`` (1-based): bias correction folded in."""
        t = ops.cast(step, mstype.float32)
        bc1 = 1.0 - ops.pow(self.beta1, t)
        root_bc2 = ops.sqrt(1.0 - ops.pow(self.beta2, t))
        lr_t = lr * root_bc2 / bc1
        eps_t = self.eps * root_bc2
        wd_t = self.weight_decay * lr / lr_t
        return lr_t, eps_t, wd_t

    def apply(self, param, exp_avg, exp_avg_sq, grad, lr_t, eps_t, wd_t, decay_flag):
        """Update ``param`` and its moments in place from the float32 ``grad``; returns the kernel's
        outputs (the new param first), so callers can order reads after the write."""
        return self.kernel(param, exp_avg, exp_avg_sq, lr_t, self.beta1, self.beta2, eps_t,
                           wd_t * decay_flag, grad)
