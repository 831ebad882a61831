"""Sums of squares for the global gradient norm, the one formulation every step uses (dense,
tensor/expert parallel, pipeline stages), so their norms round alike.

On CPU in float32 a C++ kernel (``cpp/kernels/square_sum.cpp``) reads each gradient once and sums
in double precision; MindSpore's ``Square`` + ``ReduceSum`` writes a squared copy of every gradient
and reduces it on one thread (0.8 s of the 160M Llama's step, against about 0.05 s). Elsewhere
(Ascend, other dtypes, ``MFCORE_CPU_KERNELS=0``) the plain ops run.
"""
import mindspore as ms
from mindspore import nn, ops

from mfcore.models.layers.cpu_kernels import custom_op, float32_output, one_element, use_cpu_kernel


class SquareSum(nn.Cell):
    """``square_sum(x)``: the float32 scalar sum of ``x``'s squares (``x`` cast to float32 first)."""

    def __init__(self):
        super().__init__()
        self.kernel = custom_op("MfSquareSum", one_element, float32_output) if use_cpu_kernel(ms.float32) else None

    def construct(self, x):
        return self.one(x)

    def one(self, x):
        """The sum of one tensor's squares."""
        x = x.astype(ms.float32)
        if self.kernel is None:
            return ops.square(x).sum()
        return self.kernel(x).reshape(())

    def total(self, tensors, indices=None):
        """The sum over ``tensors`` (those at ``indices`` when given), a float32 scalar."""
        chosen = range(len(tensors)) if indices is None else indices
        result = ops.zeros((), ms.float32)
        for i in chosen:
            result = result + self.one(tensors[i])
        return result
