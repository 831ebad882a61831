"""Masked cross entropy summed over tokens, with a hand-written backward.

Autodiff of ``log-sum-exp`` differentiates through the max used for stability and spends extra
kernels on it (ReduceMax/Equal/Mul in the CPU profile); the gradient of the summed loss is simply
``(softmax(z) - onehot(label)) * mask * dout``, which the ``bprop`` below computes in one pass.
"""
import mindspore as ms
from mindspore import nn, ops

from mfcore.models.layers.cpu_kernels import custom_op, use_cpu_kernel


class CrossEntropyRows(nn.Cell):
    """Per-row masked cross entropy and log-sum-exp through ``cpp/kernels/cross_entropy.cpp``: one
    pass over the logits forward, one backward (float32 logits and mask, int32 labels)."""

    def __init__(self):
        super().__init__()
        self.forward = custom_op("MfCrossEntropyForward", _rows_shapes, _rows_types)
        self.backward = custom_op("MfCrossEntropyBackward", _logits_like, _logits_like)

    def construct(self, logits, labels, loss_mask):
        return self.forward(logits, labels, loss_mask)

    def bprop(self, logits, labels, loss_mask, out, dout):
        grad = self.backward(logits, labels, loss_mask, out[1], dout[0])
        return grad, ops.zeros_like(labels), ops.zeros_like(loss_mask)


def _rows_shapes(logits, labels, loss_mask):
    return [logits[0]], [logits[0]]


def _rows_types(logits, labels, loss_mask):
    return logits, logits


def _logits_like(logits, *rest):
    return logits


class MaskedCrossEntropySum(nn.Cell):
    """``sum_t mask_t * (logsumexp(z_t) - z_t[label_t])`` for ``z [n, vocab]`` float32; our C++ kernel
    on CPU (:mod:`mfcore.models.layers.cpu_kernels`), else :class:`CrossEntropySumFunction`."""

    def __init__(self):
        super().__init__()
        self.use_cpu_kernel = use_cpu_kernel(ms.float32)
        self.rows = CrossEntropyRows() if self.use_cpu_kernel else CrossEntropySumFunction()

    def construct(self, logits, labels, loss_mask):
        if self.use_cpu_kernel:
            rows, _ = self.rows(logits, labels.astype(ms.int32), loss_mask.astype(ms.float32))
            return rows.sum()
        return self.rows(logits, labels, loss_mask)


class CrossEntropySumFunction(nn.Cell):
    """The plain formulation of :class:`MaskedCrossEntropySum`, with its hand-written backward."""

    def construct(self, logits, labels, loss_mask):
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_norm = ops.log(ops.exp(shifted).sum(-1))
        picked = ops.gather_elements(shifted, 1, labels.astype(ms.int32).expand_dims(-1)).squeeze(-1)
        return ((log_norm - picked) * loss_mask.astype(ms.float32)).sum()

    def bprop(self, logits, labels, loss_mask, out, dout):
        grad = plain_cross_entropy_grad(logits, labels, loss_mask, dout)
        return grad, ops.zeros_like(labels), ops.zeros_like(loss_mask)


class CrossEntropyWithGrad(nn.Cell):
    """``(sum_t mask_t * CE_t, d/dlogits)`` for ``logits [n, vocab]`` float32: the loss of
    :class:`MaskedCrossEntropySum` and its gradient at unit output gradient, computed in one go
    (the chunked LM head, :mod:`mfcore.models.layers.head_loss`, backpropagates right away)."""

    def __init__(self):
        super().__init__()
        self.use_cpu_kernel = use_cpu_kernel(ms.float32)
        if self.use_cpu_kernel:
            self.rows = CrossEntropyRows()
        else:
            self.plain = CrossEntropySumFunction()

    def construct(self, logits, labels, loss_mask):
        if self.use_cpu_kernel:
            rows, log_norm = self.rows.forward(logits, labels, loss_mask)
            grad = self.rows.backward(logits, labels, loss_mask, log_norm, ops.ones_like(rows))
            return rows.sum(), grad
        loss = self.plain(logits, labels, loss_mask)
        return loss, plain_cross_entropy_grad(logits, labels, loss_mask, ops.ones((), ms.float32))


def plain_cross_entropy_grad(logits, labels, loss_mask, dout):
    """``(softmax(z) - onehot(label)) * mask * dout``: the gradient of the masked CE sum."""
    probs = ops.softmax(logits, -1)
    onehot = ops.one_hot(labels.astype(ms.int32), logits.shape[-1],
                         ops.ones((), ms.float32), ops.zeros((), ms.float32))
    return (probs - onehot) * (loss_mask.astype(ms.float32) * dout).expand_dims(-1)
