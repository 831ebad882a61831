"""The C++ masked cross entropy (ops.Custom AOT on CPU) against NumPy and the plain path: loss sum,
logit gradient, a vocabulary that fills no vector evenly, an ignore label on a masked row."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

import model_refs as ref
from mfcore.models.layers.loss import MaskedCrossEntropySum

pytestmark = pytest.mark.usefixtures("kernels_built")
TOL = dict(rtol=1e-5, atol=1e-5)


def problem(rng, rows, vocab):
    logits = rng.normal(0, 4, (rows, vocab)).astype(np.float32)
    labels = rng.integers(0, vocab, rows).astype(np.int32)
    mask = (rng.random(rows) < 0.7).astype(np.float32)
    mask[0], mask[1] = 1.0, 0.0
    labels[1] = -100  # an ignore index on a masked row is allowed
    return logits, labels, mask


def test_loss_and_gradient_match_numpy():
    logits, labels, mask = problem(np.random.default_rng(3), 37, 1003)
    ce = MaskedCrossEntropySum()
    assert ce.use_cpu_kernel
    args = [Tensor(a) for a in (logits, labels, mask)]
    safe = np.where(mask > 0, labels, 0)
    nll = ref.cross_entropy(logits.astype(np.float64), safe)
    assert float(ce(*args).asnumpy()) == pytest.approx(float((nll * mask).sum()), rel=1e-5)
    grad = ms.grad(ce, grad_position=0)(*args).asnumpy()
    expected = (ref.softmax(logits.astype(np.float64)) - np.eye(1003)[safe]) * mask[:, None]
    np.testing.assert_allclose(grad, expected, **TOL)


def test_kernel_equals_the_plain_path(monkeypatch):
    logits, labels, mask = problem(np.random.default_rng(4), 16, 64)
    labels[1] = 5  # the plain path needs labels in range everywhere
    args = [Tensor(a) for a in (logits, labels, mask)]
    fused = MaskedCrossEntropySum()
    monkeypatch.setenv("MFCORE_CPU_KERNELS", "0")
    plain = MaskedCrossEntropySum()
    assert fused.use_cpu_kernel and not plain.use_cpu_kernel
    assert float(fused(*args).asnumpy()) == pytest.approx(float(plain(*args).asnumpy()), rel=1e-6)
    np.testing.assert_allclose(ms.grad(fused, grad_position=0)(*args).asnumpy(),
                               ms.grad(plain, grad_position=0)(*args).asnumpy(), **TOL)


def test_a_label_outside_the_vocabulary_on_a_counted_row_is_an_error():
    logits, labels, mask = problem(np.random.default_rng(5), 4, 16)
    labels[0] = 16
    with pytest.raises(RuntimeError):
        MaskedCrossEntropySum()(Tensor(logits), Tensor(labels), Tensor(mask)).asnumpy()
