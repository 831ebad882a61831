"""The SwiGLU feed-forward block (Shazeer, 2020): ``down(silu(gate(x)) * up(x))``."""
import mindspore as ms
from mindspore import nn, ops

from mfcore.models.layers.cpu_kernels import custom_op, use_cpu_kernel
from mfcore.models.layers.linear import Linear, output_init_std


def _same_shape(gate, up, *rest):
    return gate


def _two_of_shape(gate, up, dout):
    return gate, gate


class SwiGLUCPU(nn.Cell):
    """``silu(gate) * up`` float32 through ``cpp/kernels/swiglu.cpp``: one pass forward, one backward
    (MindSpore's graph spends seven element-wise kernels on the pair)."""

    def __init__(self):
        super().__init__()
        self.forward = custom_op("MfSwiGLUForward", _same_shape, _same_shape)
        self.backward = custom_op("MfSwiGLUBackward", _two_of_shape, _two_of_shape)

    def construct(self, gate, up):
        return self.forward(gate, up)

    def bprop(self, gate, up, out, dout):
        return self.backward(gate, up, dout)


class SwiGLU(nn.Cell):
    """``silu(gate) * up``; its own Cell so selective recompute can cover just the activation. On CPU
    in float32 our C++ kernel computes it (:mod:`mfcore.models.layers.cpu_kernels`)."""

    def __init__(self, compute_dtype=ms.float32):
        super().__init__()
        self.use_cpu_kernel = use_cpu_kernel(compute_dtype)
        if self.use_cpu_kernel:
            self.kernel = SwiGLUCPU()

    def construct(self, gate, up):
        if self.use_cpu_kernel:
            return self.kernel(gate, up)
        return ops.silu(gate) * up


class MLP(nn.Cell):
    """Dense SwiGLU MLP with Hugging Face names ``gate_proj``, ``up_proj``, ``down_proj``."""

    def __init__(self, hidden_size, intermediate_size, compute_dtype=ms.float32, init_std=0.02,
                 num_layers=1, has_bias=False):
        super().__init__()
        self.gate_proj = Linear(hidden_size, intermediate_size, has_bias, compute_dtype, init_std)
        self.up_proj = Linear(hidden_size, intermediate_size, has_bias, compute_dtype, init_std)
        self.down_proj = Linear(intermediate_size, hidden_size, has_bias, compute_dtype,
                                output_init_std(init_std, num_layers))
        self.act = SwiGLU(compute_dtype)

    def construct(self, x):
        return self.down_proj(self.act(self.gate_proj(x), self.up_proj(x)))
