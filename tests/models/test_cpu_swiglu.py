"""The C++ SwiGLU kernel (ops.Custom AOT on CPU) against NumPy: value and both gradients, over the
range where the sigmoid saturates, on a size that fills no vector evenly, and equal to the plain path."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from mfcore.models.layers.mlp import SwiGLU

pytestmark = pytest.mark.usefixtures("kernels_built")
TOL = dict(rtol=1e-5, atol=1e-5)


class WeightedSum(nn.Cell):
    def __init__(self, act):
        super().__init__()
        self.act = act

    def construct(self, gate, up, weights):
        return (self.act(gate, up) * weights).sum()


def reference(gate, up, weights):
    """Value and analytic gradients of ``sum(silu(gate) * up * weights)`` in float64."""
    sig = 1.0 / (1.0 + np.exp(-gate))
    value = gate * sig * up
    dgate = weights * up * sig * (1.0 + gate * (1.0 - sig))
    return value, dgate, weights * gate * sig


def test_value_and_gradients_match_numpy():
    rng = np.random.default_rng(0)
    gate = np.concatenate([rng.normal(0, 3, 997), [-100.0, -30.0, -1e-3, 0.0, 1e-3, 30.0, 100.0]])
    gate = gate.reshape(4, 251)  # 1004 elements: not a multiple of 8
    up, weights = rng.normal(0, 1, gate.shape), rng.normal(0, 1, gate.shape)
    act = SwiGLU()
    assert act.use_cpu_kernel
    args = [Tensor(a.astype(np.float32)) for a in (gate, up, weights)]
    value, dgate, dup = reference(gate, up, weights)
    np.testing.assert_allclose(act(*args[:2]).asnumpy(), value, **TOL)
    grads = ms.grad(WeightedSum(act), (0, 1))(*args)
    np.testing.assert_allclose(grads[0].asnumpy(), dgate, **TOL)
    np.testing.assert_allclose(grads[1].asnumpy(), dup, **TOL)


def test_kernel_equals_the_plain_path(monkeypatch):
    rng = np.random.default_rng(1)
    args = [Tensor(rng.normal(0, 2, (3, 40, 24)).astype(np.float32)) for _ in range(3)]
    fused = SwiGLU()
    monkeypatch.setenv("MFCORE_CPU_KERNELS", "0")
    plain = SwiGLU()
    assert fused.use_cpu_kernel and not plain.use_cpu_kernel
    for a, b in zip(ms.grad(WeightedSum(fused), (0, 1))(*args), ms.grad(WeightedSum(plain), (0, 1))(*args)):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), **TOL)
    assert not SwiGLU(ms.float16).use_cpu_kernel
