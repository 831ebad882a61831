"""RMSNorm, computed in float32 whatever the compute dtype, with a hand-written backward.

With ``r = 1 / sqrt(mean(x^2) + eps)`` and ``g = dy * w``: ``dx = r * (g - x * r^2 * mean(g * x))``
and ``dw = sum(dy * x * r)``: one reduction each, where autodiff of the forward emits a chain of
square/mean/rsqrt gradients.
"""
import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import One, initializer

from mfcore.models.layers.cpu_kernels import custom_op, use_cpu_kernel


class RMSNormFunction(nn.Cell):
    """``rmsnorm(x, weight)`` with a custom bprop (kept parameter-free: the weight is an input)."""

    def __init__(self, hidden_size, eps, compute_dtype=ms.float32):
        super().__init__()
        self.mean_column = Tensor(np.full((hidden_size, 1), 1.0 / hidden_size, np.float32))
        self.eps = eps
        self.compute_dtype = compute_dtype
        # primitives, not functional ops: MindSpore 2.10 fails to compile a functional op that
        # is used both in construct and in bprop ("func graph is empty")
        self.rsqrt = ops.Rsqrt()
        self.matmul = ops.MatMul()

    def _mean(self, x):
        """Mean over the last axis as a product with a column of 1/n: on MindSpore's CPU backend
        a last-axis ReduceMean ran ~10x slower than this matrix-vector product."""
        flat = x.reshape(-1, x.shape[-1])
        return self.matmul(flat, self.mean_column).reshape(x.shape[:-1] + (1,))

    def _inv_rms(self, x32):
        return self.rsqrt(self._mean(x32 * x32) + self.eps)

    def construct(self, x, weight):
        x32 = x.astype(ms.float32)
        return (x32 * self._inv_rms(x32) * weight).astype(self.compute_dtype)

    def bprop(self, x, weight, out, dout):
        x32 = x.astype(ms.float32)
        dy = dout.astype(ms.float32)
        inv = self._inv_rms(x32)
        normed = x32 * inv
        g = dy * weight
        dx = inv * (g - normed * self._mean(g * normed))
        rows = (dy * normed).reshape(-1, weight.shape[0])
        dw = self.matmul(ops.ones((1, rows.shape[0]), ms.float32), rows).reshape(weight.shape)
        return dx.astype(x.dtype), dw


def _forward_shapes(x, weight, eps):
    rows = 1
    for size in x[:-1]:
        rows *= size
    return x, [rows]


def _forward_types(x, weight, eps):
    return x, x


def _backward_shapes(x, weight, inv_rms, dy):
    return x, weight


def _backward_types(x, weight, inv_rms, dy):
    return x, weight


class RMSNormCPU(nn.Cell):
    """:class:`RMSNormFunction` for float32 through ``cpp/kernels/rms_norm.cpp``: one pass over the
    rows forward (keeping each row's ``1/rms``) and one backward, where the graph above runs about ten
    element-wise kernels and four matrix-vector products per norm."""

    def __init__(self, eps):
        super().__init__()
        self.eps = Tensor(np.array([eps], np.float32))
        self.forward = custom_op("MfRMSNormForward", _forward_shapes, _forward_types)
        self.backward = custom_op("MfRMSNormBackward", _backward_shapes, _backward_types)

    def construct(self, x, weight):
        return self.forward(x, weight, self.eps)

    def bprop(self, x, weight, out, dout):
        return self.backward(x, weight, out[1], dout[0])


class RMSNorm(nn.Cell):
    """``y = x / sqrt(mean(x^2) + eps) * weight`` over the last axis (Zhang & Sennrich, 2019); on
    CPU in float32 our C++ kernel computes it (:mod:`mfcore.models.layers.cpu_kernels`)."""

    def __init__(self, hidden_size, eps=1e-6, compute_dtype=ms.float32):
        super().__init__()
        self.hidden_size = hidden_size
        self.eps = eps
        self.compute_dtype = compute_dtype
        self.weight = Parameter(initializer(One(), [hidden_size], ms.float32), name="weight")
        self.use_cpu_kernel = use_cpu_kernel(compute_dtype)
        if self.use_cpu_kernel:
            self.kernel = RMSNormCPU(eps)
        else:
            self.norm = RMSNormFunction(hidden_size, eps, compute_dtype)

    def construct(self, x):
        if self.use_cpu_kernel:
            return self.kernel(x.astype(ms.float32), self.weight)[0]
        return self.norm(x, self.weight)
