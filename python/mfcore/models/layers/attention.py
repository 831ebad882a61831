"""Causal self-attention with grouped-query heads (Llama family) and the shared attention core.

The core is chosen from the device target when the model is built: ``ops.flash_attention_score`` on
Ascend (not exercised here: this repository is tested on CPU only); on CPU in float32 our own C++
kernel (:mod:`mfcore.models.layers.cpu_attention`) when the package ships it; otherwise a plain
formulation that
never materialises repeated key/value heads: the ``g = heads / kv_heads`` query heads that share a
key/value head are stacked along the sequence axis, so one batched product serves the whole group.
Scores, masking and softmax run in float32; the products run in the compute dtype.
"""
import mindspore as ms
from mindspore import nn, ops

from mfcore.models.layers.cpu_attention import CausalAttentionCPU, supports_head_dims
from mfcore.models.layers.cpu_kernels import use_cpu_kernel
from mfcore.models.layers.linear import Linear, output_init_std
from mfcore.models.layers.norm import RMSNorm
from mfcore.models.layers.rope import Rotate

MASK_VALUE = -1.0e9


def use_flash_attention():
    """Whether the fused attention kernel applies on the current device target."""
    return ms.get_context("device_target") == "Ascend"


class AttentionMask(nn.Cell):
    """Causal mask combined with an optional document mask (bool ``[b, s, s]``, True = masked).

    Returns what the core expects: an additive float32 bias ``[b|1, 1, 1, s, s]`` on CPU, a uint8
    mask ``[b|1, 1, s, s]`` (1 = masked) for flash attention.
    """

    def __init__(self, flash=False):
        super().__init__()
        self.flash = flash

    def construct(self, seq_length, attention_mask=None):
        idx = ops.arange(seq_length)
        masked = (idx.expand_dims(0) > idx.expand_dims(1)).expand_dims(0)
        if attention_mask is not None:
            masked = ops.logical_or(masked, attention_mask.astype(ms.bool_))
        if self.flash:
            return masked.astype(ms.uint8).expand_dims(1)
        return (masked.astype(ms.float32) * MASK_VALUE).expand_dims(1).expand_dims(1)


class AttentionKernel(nn.Cell):
    """``softmax(q k^T * scale + mask) v`` per head, ``q [b, n, g*s, d]`` (``g`` query heads per
    key/value head stacked along the sequence), ``k [b, n, s, d]``, ``v [b, n, s, dv]``.

    The backward is written by hand, as in flash attention: the probabilities are recomputed (no
    ``[s, s]`` tensor is kept for the backward) and the softmax gradient uses ``delta = rowsum(dO * O)``,
    a reduction over ``dv`` instead of over the ``s`` keys that autodiff's softmax backward does.
    """

    def __init__(self, scale, compute_dtype=ms.float32):
        super().__init__()
        self.scale = scale
        self.compute_dtype = compute_dtype
        self.matmul = ops.BatchMatMul()
        self.matmul_nt = ops.BatchMatMul(transpose_b=True)
        self.matmul_tn = ops.BatchMatMul(transpose_a=True)
        self.softmax = ops.Softmax(-1)

    def _probs(self, q, k, mask):
        b, n, gs, _ = q.shape
        s = k.shape[2]
        scores = self.matmul_nt(q, k).astype(ms.float32) * self.scale
        scores = scores.reshape(b, n, gs // s, s, s) + mask
        return self.softmax(scores).reshape(b, n, gs, s)

    def construct(self, q, k, v, mask):
        return self.matmul(self._probs(q, k, mask).astype(self.compute_dtype), v)

    def bprop(self, q, k, v, mask, out, dout):
        probs = self._probs(q, k, mask)
        dv = self.matmul_tn(probs.astype(self.compute_dtype), dout)
        dprobs = self.matmul_nt(dout, v).astype(ms.float32)
        delta = (dout.astype(ms.float32) * out.astype(ms.float32)).sum(-1, keepdims=True)
        dscores = (probs * (dprobs - delta) * self.scale).astype(self.compute_dtype)
        return self.matmul(dscores, k), self.matmul_tn(dscores, q), dv, ops.zeros_like(mask)


class CoreAttention(nn.Cell):
    """``softmax(q k^T * scale + mask) v`` for ``q [b, s, nq, d]``, ``k [b, s, nkv, d]``,
    ``v [b, s, nkv, dv]`` → ``[b, s, nq * dv]``. ``nq`` must be a multiple of ``nkv``."""

    def __init__(self, scale, compute_dtype=ms.float32, flash=False):
        super().__init__()
        self.scale = scale
        self.compute_dtype = compute_dtype
        self.flash = flash
        self.kernel = AttentionKernel(scale, compute_dtype)
        self.use_cpu_kernel = not flash and use_cpu_kernel(compute_dtype)
        if self.use_cpu_kernel:
            self.cpu_kernel = CausalAttentionCPU(scale)

    def construct(self, q, k, v, mask):
        if self.flash:
            return self._flash(q, k, v, mask)
        if self.use_cpu_kernel and supports_head_dims(q.shape[-1], v.shape[-1]):
            return self.cpu_kernel(q, k, v, mask)[0]
        b, s, nq, d = q.shape
        nkv = k.shape[2]
        dv = v.shape[3]
        g = nq // nkv
        q = q.reshape(b, s, nkv, g, d).transpose(0, 2, 3, 1, 4).reshape(b, nkv, g * s, d)
        ctx = self.kernel(q, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3), mask)
        return ctx.reshape(b, nkv, g, s, dv).transpose(0, 3, 1, 2, 4).reshape(b, s, nq * dv)

    def _flash(self, q, k, v, mask):
        b, s, nq, d = q.shape
        dv = v.shape[3]
        if dv < d:  # the fused kernel wants one head size: pad values, drop the padding after
            v = ops.pad(v, (0, d - dv))
        out = ops.flash_attention_score(
            q.reshape(b, s, nq * d), k.reshape(b, s, -1), v.reshape(b, s, -1), nq,
            attn_mask=mask, scalar_value=self.scale, input_layout="BSH")
        return out.reshape(b, s, nq, d)[..., :dv].reshape(b, s, nq * dv)


class Attention(nn.Cell):
    """Llama attention: q/k/v projections, optional qk-norm, rotary, GQA core, output projection.

    ``num_heads`` and ``num_key_value_heads`` are read at construct time, so a tensor-parallel pass
    can swap the projections and divide these counts from outside.
    """

    def __init__(self, config, compute_dtype=ms.float32, flash=False):
        super().__init__()
        hidden, hd = config.hidden_size, config.head_dim
        self.num_heads = config.num_attention_heads
        self.num_key_value_heads = config.num_key_value_heads
        self.head_dim = hd
        std = config.initializer_range
        bias = config.attention_bias
        self.q_proj = Linear(hidden, self.num_heads * hd, bias, compute_dtype, std)
        self.k_proj = Linear(hidden, self.num_key_value_heads * hd, bias, compute_dtype, std)
        self.v_proj = Linear(hidden, self.num_key_value_heads * hd, bias, compute_dtype, std)
        self.o_proj = Linear(self.num_heads * hd, hidden, False, compute_dtype,
                             output_init_std(std, config.num_hidden_layers))
        self.qk_norm = config.qk_norm
        if self.qk_norm:
            self.q_norm = RMSNorm(hd, config.rms_norm_eps, compute_dtype)
            self.k_norm = RMSNorm(hd, config.rms_norm_eps, compute_dtype)
        self.rotate = Rotate(hd, interleaved=False)
        self.core = CoreAttention(hd ** -0.5, compute_dtype, flash)

    def construct(self, x, cos, sin, mask):
        b, s, _ = x.shape
        q = self.q_proj(x).reshape(b, s, self.num_heads, self.head_dim)
        k = self.k_proj(x).reshape(b, s, self.num_key_value_heads, self.head_dim)
        v = self.v_proj(x).reshape(b, s, self.num_key_value_heads, self.head_dim)
        if self.qk_norm:
            q = self.q_norm(q)
            k = self.k_norm(k)
        q = self.rotate(q, cos, sin)
        k = self.rotate(k, cos, sin)
        return self.o_proj(self.core(q, k, v, mask))
