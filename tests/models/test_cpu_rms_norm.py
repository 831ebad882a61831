"""The C++ RMSNorm kernel (ops.Custom AOT on CPU) against NumPy: value and the gradients of the input
and the weight, on widths and row counts that fill no vector or task evenly, equal to the plain path,
and bit-identical from run to run (dw is reduced over fixed row blocks)."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from mfcore.models.layers.norm import RMSNorm

pytestmark = pytest.mark.usefixtures("kernels_built")
TOL = dict(rtol=2e-5, atol=2e-5)


class WeightedSum(nn.Cell):
    def __init__(self, norm):
        super().__init__()
        self.norm = norm

    def construct(self, x, weights):
        return (self.norm(x) * weights).sum()


def reference(x, w, weights, eps):
    """Value and analytic gradients of ``sum(rmsnorm(x, w) * weights)`` in float64."""
    r = 1.0 / np.sqrt((x * x).mean(-1, keepdims=True) + eps)
    normed = x * r
    g = weights * w
    dx = r * (g - normed * (g * normed).mean(-1, keepdims=True))
    dw = (weights * normed).reshape(-1, x.shape[-1]).sum(0)
    return normed * w, dx, dw


def make_norm(width, eps, rng):
    norm = RMSNorm(width, eps)
    norm.weight.set_data(Tensor(rng.normal(1.0, 0.3, width).astype(np.float32)))
    return norm


@pytest.mark.parametrize("shape", [(3, 37, 45), (70, 256), (1, 1, 8)])
def test_value_and_gradients_match_numpy(shape):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 2, shape)
    x[0, ...] *= 1e-3  # a row of small values: 1/rms is large, eps matters
    weights = rng.normal(0, 1, shape)
    norm = make_norm(shape[-1], 1e-5, rng)
    assert norm.use_cpu_kernel
    w = norm.weight.asnumpy().astype(np.float64)
    value, dx, dw = reference(x, w, weights, 1e-5)
    args = [Tensor(a.astype(np.float32)) for a in (x, weights)]
    np.testing.assert_allclose(norm(args[0]).asnumpy(), value, **TOL)
    net = WeightedSum(norm)
    grad_x, (grad_w,) = ms.grad(net, 0, net.trainable_params())(*args)
    np.testing.assert_allclose(grad_x.asnumpy(), dx, **TOL)
    np.testing.assert_allclose(grad_w.asnumpy(), dw, rtol=1e-4, atol=1e-4)


def test_kernel_equals_the_plain_path_and_repeats_bit_for_bit(monkeypatch):
    rng = np.random.default_rng(1)
    x, weights = (Tensor(rng.normal(0, 1, (5, 33, 24)).astype(np.float32)) for _ in range(2))
    fused = make_norm(24, 1e-6, np.random.default_rng(2))
    monkeypatch.setenv("MFCORE_CPU_KERNELS", "0")
    plain = make_norm(24, 1e-6, np.random.default_rng(2))
    assert fused.use_cpu_kernel and not plain.use_cpu_kernel
    fused_net, plain_net = WeightedSum(fused), WeightedSum(plain)
    first = ms.grad(fused_net, 0, fused_net.trainable_params())(x, weights)
    again = ms.grad(fused_net, 0, fused_net.trainable_params())(x, weights)
    other = ms.grad(plain_net, 0, plain_net.trainable_params())(x, weights)
    for a, b, c in zip((first[0], first[1][0]), (again[0], again[1][0]), (other[0], other[1][0])):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
        np.testing.assert_allclose(a.asnumpy(), c.asnumpy(), rtol=1e-4, atol=1e-5)
    assert not RMSNorm(24, compute_dtype=ms.float16).use_cpu_kernel
