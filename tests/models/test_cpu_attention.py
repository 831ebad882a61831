"""The C++ causal attention kernel (ops.Custom AOT on CPU) against NumPy: forward, all three
gradients, GQA, sequence lengths that fill no vector or block evenly, document masks, determinism,
and the selection rules that keep the plain path available."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

import model_refs as ref
from mfcore.models.layers.attention import AttentionMask, CoreAttention
from mfcore.models.layers.cpu_attention import CausalAttentionCPU, supports_head_dims
from mfcore.models.layers.cpu_kernels import use_cpu_kernel

pytestmark = pytest.mark.usefixtures("kernels_built")
TOL = dict(rtol=1e-5, atol=1e-5)


class WeightedSum(nn.Cell):
    """``sum(attention(q, k, v) * weights)``: its gradients are the kernel's backward applied to
    ``weights``."""

    def __init__(self, core):
        super().__init__()
        self.core = core

    def construct(self, q, k, v, mask, weights):
        return (self.core(q, k, v, mask) * weights).sum()


def reference_gradients(q, k, v, scale, masked, weights):
    """Analytic gradients of ``sum(attention * weights)`` in float64 (GQA heads summed back)."""
    b, s, nq, _ = q.shape
    g = nq // k.shape[2]
    kr, vr = np.repeat(k, g, axis=2), np.repeat(v, g, axis=2)
    scores = np.where(masked[:, None], -np.inf, np.einsum("bqhd,bkhd->bhqk", q, kr) * scale)
    probs = ref.softmax(scores)
    dout = weights.reshape(b, s, nq, -1)
    dprobs = np.einsum("bqhd,bkhd->bhqk", dout, vr)
    dscores = probs * (dprobs - (dprobs * probs).sum(-1, keepdims=True)) * scale
    dq = np.einsum("bhqk,bkhd->bqhd", dscores, kr)
    dk = np.einsum("bhqk,bqhd->bkhd", dscores, q)
    dv = np.einsum("bhqk,bqhd->bkhd", probs, dout)
    fold = lambda x: x.reshape(b, s, k.shape[2], g, -1).sum(3)  # noqa: E731
    return dq, fold(dk), fold(dv)


def inputs(rng, b, s, nq, nkv, d, dv):
    q, k = rng.normal(0, 1, (b, s, nq, d)), rng.normal(0, 1, (b, s, nkv, d))
    v, weights = rng.normal(0, 1, (b, s, nkv, dv)), rng.normal(0, 1, (b, s, nq * dv))
    return q, k, v, weights


def f32(*arrays):
    return [Tensor(a.astype(np.float32)) for a in arrays]


@pytest.mark.parametrize("b,s,nq,nkv,d,dv,document", [
    (2, 7, 6, 2, 8, 16, False),    # GQA 3:1, s fills neither a block of 4 rows nor a vector of 16 keys
    (1, 21, 4, 4, 16, 8, True),    # plain multi-head, d != dv, document mask
    (3, 4, 2, 1, 8, 8, True),      # multi-query, a mask per batch row
])
def test_forward_and_gradients_match_numpy(b, s, nq, nkv, d, dv, document):
    rng = np.random.default_rng(s)
    q, k, v, weights = inputs(rng, b, s, nq, nkv, d, dv)
    masked = ref.causal(b, s).copy()
    if document:  # two documents per row, split at a different place in each row
        for row in range(b):
            cut = 1 + row % (s - 1)
            masked[row, cut:, :cut] = True
    scale = d ** -0.5
    mask = AttentionMask()(s, Tensor(masked & ~ref.causal(b, s)) if document else None)
    kernel = CausalAttentionCPU(scale)
    out, _ = kernel(*f32(q, k, v), mask)
    np.testing.assert_allclose(out.asnumpy(), ref.attention(q, k, v, scale, masked), **TOL)
    grads = ms.grad(WeightedSum(CoreAttention(scale)), (0, 1, 2))(*f32(q, k, v), mask, *f32(weights))
    for got, want in zip(grads, reference_gradients(q, k, v, scale, masked, weights)):
        np.testing.assert_allclose(got.asnumpy(), want, **TOL)


def test_kernel_equals_the_plain_path_and_is_deterministic(monkeypatch):
    rng = np.random.default_rng(0)
    q, k, v, weights = inputs(rng, 2, 32, 4, 2, 16, 16)
    mask = AttentionMask()(32)
    fused = CoreAttention(0.25)
    monkeypatch.setenv("MFCORE_CPU_KERNELS", "0")
    plain = CoreAttention(0.25)
    assert fused.use_cpu_kernel and not plain.use_cpu_kernel
    args = (*f32(q, k, v), mask, *f32(weights))
    grad_fused = ms.grad(WeightedSum(fused), (0, 1, 2))
    first, second = grad_fused(*args), grad_fused(*args)
    for a, b_, c in zip(first, second, ms.grad(WeightedSum(plain), (0, 1, 2))(*args)):
        np.testing.assert_array_equal(a.asnumpy(), b_.asnumpy())
        np.testing.assert_allclose(a.asnumpy(), c.asnumpy(), **TOL)


def test_selection_rules(monkeypatch):
    assert use_cpu_kernel(ms.float32)
    assert not use_cpu_kernel(ms.float16)  # the kernel is float32 only
    monkeypatch.setenv("MFCORE_CPU_KERNELS", "0")
    assert not use_cpu_kernel(ms.float32)
    assert supports_head_dims(32, 16) and not supports_head_dims(12, 16) and not supports_head_dims(8, 4)


def test_head_sizes_the_kernel_does_not_take_use_the_plain_path():
    rng = np.random.default_rng(1)
    q, k, v, _ = inputs(rng, 1, 5, 2, 1, 6, 6)
    core = CoreAttention(6 ** -0.5)
    assert core.use_cpu_kernel
    out = core(*f32(q, k, v), AttentionMask()(5))
    np.testing.assert_allclose(out.asnumpy(), ref.attention(q, k, v, 6 ** -0.5, ref.causal(1, 5)), **TOL)
