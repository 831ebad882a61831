"""The SwiGLU feed-forward block (Shazeer, 2020): ``down(silu(gate(x)) * up(x))``."""
import mindspore as ms
from mindspore import nn, ops

from mfcore.models.layers.linear import Linear, output_init_std


class SwiGLU(nn.Cell):
    """``silu(gate) * up``; its own Cell so selective recompute can cover just the activation."""

    def construct(self, gate, up):
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
        self.act = SwiGLU()

    def construct(self, x):
        return self.down_proj(self.act(self.gate_proj(x), self.up_proj(x)))
