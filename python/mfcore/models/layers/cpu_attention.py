"""Causal GQA attention on CPU through our own C++ kernel (``cpp/kernels/causal_attention.cpp``).

Compared with the plain formulation the kernel skips the keys above the diagonal, never materialises
a ``[s, s]`` tensor, reads the ``[b, s, heads, d]`` projections without head transposes and serves
the ``g`` query heads of a key/value head from one copy of its keys. Selected by
:class:`~mfcore.models.layers.attention.CoreAttention` (see :mod:`mfcore.models.layers.cpu_kernels`).
"""
import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from mfcore.models.layers.cpu_kernels import custom_op


def supports_head_dims(qk_dim, v_dim):
    """The kernel works on whole 8-float vectors of a head (other sizes take the plain path)."""
    return qk_dim % 8 == 0 and v_dim % 8 == 0


def _forward_shapes(q, k, v, mask, scale):
    b, s, nq, _ = q
    return [b, s, nq * v[3]], [b, nq, s]


def _forward_types(q, k, v, mask, scale):
    return q, ms.float32


def _backward_shapes(q, k, v, mask, scale, out, lse, dout):
    return q, k, v


def _backward_types(q, k, v, mask, scale, out, lse, dout):
    return q, k, v


class CausalAttentionCPU(nn.Cell):
    """``softmax(q k^T * scale + causal + mask) v`` for ``q [b, s, nq, d]``, ``k [b, s, nkv, d]``,
    ``v [b, s, nkv, dv]`` float32 → ``[b, s, nq * dv]``.

    ``mask`` is the additive float32 mask of :class:`AttentionMask` (``[b|1, 1, 1, s, s]``); the kernel
    applies causality itself and adds ``mask`` below the diagonal (document masks).
    """

    def __init__(self, scale):
        super().__init__()
        self.scale = Tensor(np.array([scale], np.float32))
        self.forward = custom_op("MfCausalAttentionForward", _forward_shapes, _forward_types)
        self.backward = custom_op("MfCausalAttentionBackward", _backward_shapes, _backward_types)

    def construct(self, q, k, v, mask):
        return self.forward(q, k, v, mask, self.scale)

    def bprop(self, q, k, v, mask, out, dout):
        dq, dk, dv = self.backward(q, k, v, mask, self.scale, out[0], out[1], dout[0])
        return dq, dk, dv, ops.zeros_like(mask)
