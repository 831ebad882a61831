"""The compiled step: gradient accumulation is exact, AdamW matches a numpy reference of PyTorch's
AdamW (decay skipped for norms and biases), clipping bounds the update."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from helpers.toy_model import ToyLM
from mfcore.train.optim import AdamW, decays_weight
from mfcore.train.step import TrainStep, apply_update, forward_backward, loss_tokens, skip_update

KEYS = ("tokens", "labels", "loss_mask")


def batch(rng, n, length=8, vocab=32):
    t = rng.integers(0, vocab, (n, length + 1)).astype(np.int32)
    mask = (rng.random((n, length)) > 0.3).astype(np.float32)
    return {"tokens": t[:, :-1].copy(), "labels": t[:, 1:].copy(), "loss_mask": mask}


def split(b, k):
    return [{key: v[i::k].copy() for key, v in b.items()} for i in range(k)]


def params_of(model):
    return {p.name: p.asnumpy().copy() for p in model.trainable_params()}


def run(micro_batches, steps=3, clip=1.0, wd=0.1, seed=0):
    model = ToyLM(seed=seed)
    step = TrainStep(model, AdamW(model.trainable_params(), weight_decay=wd))
    outs = []
    for _ in range(steps):
        out = forward_backward(step, micro_batches, KEYS, loss_tokens(micro_batches), 1.0)
        apply_update(step, 1e-2, out.grad_norm, clip, 1.0)
        outs.append(out)
    return outs, params_of(model)


def test_k_micro_batches_equal_one_big_batch(in_tmp):
    big = batch(np.random.default_rng(1), 8)
    one, p1 = run([big])
    four, p4 = run(split(big, 4))
    for a, b in zip(one, four):
        assert a.loss_tokens == b.loss_tokens
        assert a.loss_sum == pytest.approx(b.loss_sum, rel=1e-5)
        assert a.grad_norm == pytest.approx(b.grad_norm, rel=1e-5)
    for name in p1:
        np.testing.assert_allclose(p1[name], p4[name], rtol=1e-5, atol=1e-6)


class SetGrads(nn.Cell):
    """Writes gradients into the step's buffers inside a graph: a host-side ``set_data`` after the
    step graphs compiled is not seen by them (MindSpore 2.10 keeps the compiled device buffers)."""

    def __init__(self, bufs):
        super().__init__()
        self.bufs = bufs

    @ms.jit
    def construct(self, grads):
        for b, g in zip(self.bufs, grads):
            ops.assign(b, g)
        return grads[0]


def numpy_adamw(p, g, m, v, t, lr, b1=0.9, b2=0.95, eps=1e-8, wd=0.1):
    p = p * (1 - lr * wd)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    return p - lr * mhat / (np.sqrt(vhat) + eps), m, v


def test_adamw_matches_reference_and_skips_norms_and_biases(in_tmp):
    model = ToyLM()
    opt = AdamW(model.trainable_params(), weight_decay=0.1)
    step = TrainStep(model, opt)
    set_grads = SetGrads(step.grads)
    assert {p.name: decays_weight(p) for p in model.trainable_params()} == {
        "embed.weight": True, "mix.weight": True, "mix.bias": False, "norm.weight": False,
        "head.weight": True}
    rng = np.random.default_rng(3)
    ref = {p.name: (p.asnumpy().copy(), 0.0, 0.0) for p in model.trainable_params()}
    for t in (1, 2, 3):
        grads = [rng.normal(size=p.shape).astype(np.float32) for p in model.trainable_params()]
        set_grads(tuple(ms.Tensor(g) for g in grads))
        step.apply(ms.Tensor(0.01, ms.float32), ms.Tensor(0.5, ms.float32))
        for p, g in zip(model.trainable_params(), grads):
            w, m, v = ref[p.name]
            ref[p.name] = numpy_adamw(w, 0.5 * g, m, v, t, 0.01, wd=0.1 if decays_weight(p) else 0.0)
    for p in model.trainable_params():
        np.testing.assert_allclose(p.asnumpy(), ref[p.name][0], rtol=2e-5, atol=1e-6)


def test_clipping_limits_the_effective_gradient(in_tmp):
    b = [batch(np.random.default_rng(5), 4)]
    unclipped, _ = run(b, steps=1, clip=0.0, wd=0.0)
    norm = unclipped[0].grad_norm
    # with Adam the first step is sign-like; the clip shows in the second moment instead
    model = ToyLM()
    opt = AdamW(model.trainable_params(), weight_decay=0.0)
    step = TrainStep(model, opt)
    out = forward_backward(step, b, KEYS, loss_tokens(b), 1.0)
    assert out.grad_norm == pytest.approx(norm, rel=1e-6)
    apply_update(step, 1e-2, out.grad_norm, norm / 4, 1.0)
    v_norm = np.sqrt(sum(float(v.asnumpy().sum()) for v in opt.exp_avg_sq) / (1 - 0.95))
    assert v_norm == pytest.approx(norm / 4, rel=1e-3)


def test_loss_scale_is_removed_from_the_gradient(in_tmp):
    b = [batch(np.random.default_rng(6), 4)]
    model = ToyLM()
    step = TrainStep(model, AdamW(model.trainable_params()))
    plain = forward_backward(step, b, KEYS, loss_tokens(b), 1.0)
    skip_update(step)
    scaled = forward_backward(step, b, KEYS, loss_tokens(b), 1024.0)
    assert scaled.grad_norm == pytest.approx(plain.grad_norm, rel=1e-5)
    assert scaled.loss_sum == pytest.approx(plain.loss_sum, rel=1e-6)


def test_skipped_step_leaves_parameters_and_drops_gradients(in_tmp):
    b = [batch(np.random.default_rng(7), 4)]
    model = ToyLM()
    step = TrainStep(model, AdamW(model.trainable_params()))
    before = params_of(model)
    first = forward_backward(step, b, KEYS, loss_tokens(b), 1.0)
    skip_update(step)
    assert all(np.array_equal(before[k], v) for k, v in params_of(model).items())
    again = forward_backward(step, b, KEYS, loss_tokens(b), 1.0)
    assert again.grad_norm == pytest.approx(first.grad_norm, rel=1e-6)   # not accumulated twice


def _adamw_after_steps(monkeypatch, kernels: str, steps=3):
    """Parameters, moments and gradient buffers after ``steps`` updates from fixed gradients."""
    monkeypatch.setenv("MFCORE_CPU_KERNELS", kernels)
    model = ToyLM()
    opt = AdamW(model.trainable_params(), weight_decay=0.1)
    step = TrainStep(model, opt)
    set_grads = SetGrads(step.grads)
    rng = np.random.default_rng(11)
    for _ in range(steps):
        set_grads(tuple(ms.Tensor(rng.normal(size=p.shape).astype(np.float32)) for p in model.trainable_params()))
        step.apply(ms.Tensor(0.01, ms.float32), ms.Tensor(0.37, ms.float32))
    state = {**params_of(model), **{f"m.{i}": m.asnumpy() for i, m in enumerate(opt.exp_avg)},
             **{f"v.{i}": v.asnumpy() for i, v in enumerate(opt.exp_avg_sq)}}
    return opt.zeroes_grads, state, [g.asnumpy() for g in step.grads]


def test_one_pass_cpu_adamw_equals_mindspore_kernel_and_clears_gradients(in_tmp, monkeypatch):
    from mfcore.models.layers.cpu_kernels import kernel_library
    assert kernel_library() is not None, "libmfcore_kernels.so was not built"
    fused, state, grads = _adamw_after_steps(monkeypatch, "1")
    plain, ref, _ = _adamw_after_steps(monkeypatch, "0")
    assert fused and not plain
    assert all(not g.any() for g in grads)               # cleared in the same pass
    for key, want in ref.items():                        # same arithmetic, to float32 rounding
        np.testing.assert_array_equal(state[key], want, err_msg=key)


class _Totals(nn.Cell):
    def __init__(self, square_sum, tensors):
        super().__init__()
        self.square_sum = square_sum
        self.tensors = tensors

    @ms.jit
    def run(self):
        return self.square_sum.total(self.tensors), self.square_sum.total(self.tensors, (0, 2))


@pytest.mark.parametrize("kernels", ["1", "0"])
def test_square_sum_of_the_grad_norm_equals_a_double_precision_reference(in_tmp, monkeypatch, kernels):
    """The C++ one-pass kernel and the plain ops both give the sum of squares, over tensors
    that do not fill the kernel's chunks or vector lanes (131,075 = 2 x 65,536 + 3 elements)."""
    from mfcore.optim.grad_norm import SquareSum
    monkeypatch.setenv("MFCORE_CPU_KERNELS", kernels)
    rng = np.random.default_rng(5)
    arrays = [rng.normal(size=s).astype(np.float32) * 3 for s in ((131075,), (7, 3), (1,), (256, 512))]
    square_sum = SquareSum()
    assert (square_sum.kernel is not None) == (kernels == "1")
    tensors = ms.ParameterTuple(ms.Parameter(ms.Tensor(a), name=f"t{i}") for i, a in enumerate(arrays))
    every, some = (float(t.asnumpy()) for t in _Totals(square_sum, tensors).run())
    want = [float(np.sum(a.astype(np.float64) ** 2)) for a in arrays]
    assert every == pytest.approx(sum(want), rel=1e-6)
    assert some == pytest.approx(want[0] + want[2], rel=1e-6)
