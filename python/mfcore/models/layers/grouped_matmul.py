"""Grouped matrix product of a mixture-of-experts layer: every expert multiplies only its own rows.

``x [N, in]`` holds rows sorted by expert, ``group_sizes [E]`` (int32) how many rows each expert
owns (expert ``e`` has rows ``[off_e, off_e + group_sizes[e])``, ``off_e`` the sum of the sizes
before it), ``w [E, in, out]`` the stacked weights. ``y[rows of e] = x[rows of e] @ w[e]``; rows
after the last group (tokens dropped over capacity) come out as zeros and get zero gradients.

Three implementations with the same results, chosen when the cell is built:

- **CPU kernel** (CPU target, float32, kernel library built): ``cpp/kernels/grouped_matmul.cpp``
  through ``ops.Custom`` forward and backward; work ``N * in * out`` whatever ``E`` is.
- **Ascend**: MindSpore's ``GroupedMatmul`` (one x, one stacked weight, groups on the rows given as
  cumulative ends; MindSpore derives its backward). Written against the MindSpore 2.10 API and not
  run here (no Ascend device on the development machine).
- **padded** (anything else: float16 on CPU, GPU, no kernel library): rows are gathered into an
  ``[E, max_rows, in]`` buffer (``max_rows`` = the most rows one expert can get: the token count
  when dropless, the capacity otherwise), one batched MatMul, gathered back. Static shapes and exact,
  but it costs ``E * max_rows`` rows, the dense cost in dropless mode.
"""
import mindspore as ms
from mindspore import nn, ops
from mindspore.ops.auto_generate import grouped_matmul  # Ascend kernel only (the function exists everywhere)

from mfcore.models.layers.cpu_kernels import custom_op, use_cpu_kernel


def _rows_by_out(x, w, sizes):
    return (x[0], w[2])


def _dtype_of_x(x, w, sizes):
    return x


def _shapes_of_x_and_w(x, w, sizes, dy):
    return x, w


def _dtypes_of_x_and_w(x, w, sizes, dy):
    return x, w


class GroupedMatmulCPU(nn.Cell):
    """The C++ kernel (float32): forward ``y``, backward ``dx = dy_e w_e^T`` and ``dw_e = x_e^T dy_e``."""

    def __init__(self):
        super().__init__()
        self.forward = custom_op("MfGroupedMatmulForward", _rows_by_out, _dtype_of_x)
        self.backward = custom_op("MfGroupedMatmulBackward", _shapes_of_x_and_w, _dtypes_of_x_and_w)

    def construct(self, x, w, group_sizes):
        return self.forward(x, w, group_sizes)

    def bprop(self, x, w, group_sizes, out, dout):
        dx, dw = self.backward(x, w, group_sizes, dout)
        return dx, dw, ops.zeros_like(group_sizes)


class GroupedMatmulAscend(nn.Cell):
    """MindSpore's fused GroupedMatmul (split_item 3: one x, one y; group_type 0: groups on rows)."""

    def construct(self, x, w, group_sizes):
        ends = ops.cumsum(group_sizes.astype(ms.int64), 0)
        # the last end must be N: rows dropped over capacity join the last group (their combine
        # weight is zero, so they change neither the output nor any gradient)
        ends = ops.concat((ends[:-1], ops.full((1,), x.shape[0], dtype=ms.int64)))
        return grouped_matmul([x], [w], group_list=ends, split_item=3, group_type=0)[0]


def padded_grouped_matmul(x, w, group_sizes, max_rows):
    """The static-shape formulation: ``[E, max_rows, in]`` slots, one ``bmm``, rows gathered back."""
    rows, experts = x.shape[0], w.shape[0]
    sizes = group_sizes.astype(ms.int32)
    ends = ops.cumsum(sizes, 0)
    starts = ends - sizes
    slot = ops.arange(max_rows, dtype=ms.int32)
    source = starts.expand_dims(1) + slot.expand_dims(0)                  # [E, max_rows]
    source = ops.where(slot.expand_dims(0) < sizes.expand_dims(1), source, rows)  # rows = the zero row
    x_ext = ops.concat((x, ops.zeros((1, x.shape[1]), x.dtype)), 0)
    slots = ops.gather(x_ext, source.reshape(-1), 0).reshape(experts, max_rows, x.shape[1])
    y = ops.bmm(slots, w).reshape(experts * max_rows, w.shape[2])
    row = ops.arange(rows, dtype=ms.int32)
    expert = ops.minimum(ops.searchsorted(ends, row, right=True), experts - 1).astype(ms.int32)
    target = expert * max_rows + row - ops.gather(starts, expert, 0)
    target = ops.where(row < ends[-1], target, experts * max_rows)          # dropped rows: zeros
    y_ext = ops.concat((y, ops.zeros((1, y.shape[1]), y.dtype)), 0)
    return ops.gather(y_ext, target, 0)


class GroupedMatmul(nn.Cell):
    """``construct(x [N, in], w [E, in, out], group_sizes [E] int32, max_rows)`` → ``y [N, out]``
    in ``x``'s dtype (see the module for the three implementations)."""

    def __init__(self, compute_dtype=ms.float32):
        super().__init__()
        self.use_cpu_kernel = use_cpu_kernel(compute_dtype)
        self.use_ascend = ms.get_context("device_target") == "Ascend"
        if self.use_cpu_kernel:
            self.kernel = GroupedMatmulCPU()
        elif self.use_ascend:
            self.fused = GroupedMatmulAscend()

    def construct(self, x, w, group_sizes, max_rows):
        if self.use_cpu_kernel:
            return self.kernel(x, w, group_sizes)
        if self.use_ascend:
            return self.fused(x, w, group_sizes)
        return padded_grouped_matmul(x, w, group_sizes, max_rows)
