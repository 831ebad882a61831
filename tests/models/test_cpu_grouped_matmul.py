"""The C++ grouped matmul kernel (ops.Custom AOT on CPU) against NumPy, value and both gradients: groups
of uneven sizes including empty ones, rows past the last group (dropped tokens), sizes that fill no
register tile evenly; and equal to the padded static-shape path that float16 and kernel-less
builds use."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from mfcore.models.layers.grouped_matmul import GroupedMatmul

pytestmark = pytest.mark.usefixtures("kernels_built")
TOL = dict(rtol=1e-5, atol=1e-5)


class WeightedSum(nn.Cell):
    """``sum(gmm(x, w, sizes) * weights)``: its gradients are ``dy = weights`` pushed back."""

    def __init__(self, gmm, max_rows):
        super().__init__()
        self.gmm = gmm
        self.max_rows = max_rows

    def construct(self, x, w, sizes, weights):
        return (self.gmm(x, w, sizes, self.max_rows) * weights).sum()


def reference(x, w, sizes, dy):
    """float64 forward and gradients of the grouped product, group by group."""
    y, dx, dw = np.zeros((x.shape[0], w.shape[2])), np.zeros(x.shape), np.zeros(w.shape)
    start = 0
    for e, size in enumerate(sizes):
        rows = slice(start, start + size)
        y[rows] = x[rows] @ w[e]
        dx[rows] = dy[rows] @ w[e].T
        dw[e] = x[rows].T @ dy[rows]
        start += size
    return y, dx, dw


def _case(rng, sizes, rows, k, m):
    x = rng.normal(0, 1, (rows, k))
    w = rng.normal(0, 0.3, (len(sizes), k, m))
    dy = rng.normal(0, 1, (rows, m))
    return x, w, np.asarray(sizes, np.int32), dy


def _run(gmm, x, w, sizes, dy, max_rows):
    args = [Tensor(x.astype(np.float32)), Tensor(w.astype(np.float32)), Tensor(sizes),
            Tensor(dy.astype(np.float32))]
    y = gmm(*args[:3], max_rows)
    dx, dw = ms.grad(WeightedSum(gmm, max_rows), (0, 1))(*args)
    return y.asnumpy(), dx.asnumpy(), dw.asnumpy()


@pytest.mark.parametrize("sizes, rows, k, m", [
    ([3, 0, 7, 1, 0, 11], 25, 13, 19),          # empty groups, 3 dropped rows at the end
    ([250, 0, 300], 550, 300, 270),             # several KC slices and row tasks, edge tiles
    ([0, 0, 0], 4, 5, 6),                        # nothing kept: zeros everywhere
])
def test_value_and_gradients_match_numpy(sizes, rows, k, m):
    x, w, sizes, dy = _case(np.random.default_rng(0), sizes, rows, k, m)
    gmm = GroupedMatmul()
    assert gmm.use_cpu_kernel
    got = _run(gmm, x, w, sizes, dy, max(sizes.max(), 1))
    for ours, expected in zip(got, reference(x, w, sizes, dy)):
        np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)
    assert not got[0][sizes.sum():].any() and not got[1][sizes.sum():].any()


def test_kernel_equals_the_padded_path(monkeypatch):
    x, w, sizes, dy = _case(np.random.default_rng(1), [5, 9, 0, 4], 20, 24, 40)
    fused = GroupedMatmul()
    monkeypatch.setenv("MFCORE_CPU_KERNELS", "0")
    padded = GroupedMatmul()
    assert fused.use_cpu_kernel and not padded.use_cpu_kernel and not padded.use_ascend
    for a, b in zip(_run(fused, x, w, sizes, dy, 9), _run(padded, x, w, sizes, dy, 9)):
        np.testing.assert_allclose(a, b, **TOL)
    assert not GroupedMatmul(ms.float16).use_cpu_kernel


def test_bad_group_sizes_are_refused():
    """Groups that overrun the rows would read past the buffer: the kernel refuses to run."""
    x, w, sizes, _ = _case(np.random.default_rng(2), [6, 6], 10, 4, 4)
    with pytest.raises(RuntimeError):
        GroupedMatmul()(Tensor(x.astype(np.float32)), Tensor(w.astype(np.float32)), Tensor(sizes), 6)
