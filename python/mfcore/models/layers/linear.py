"""Projection and embedding layers.

Weights are stored ``[in_features, out_features]`` and applied as ``x @ W``: on MindSpore's CPU
backend this keeps both backward products untransposed and measured faster than ``nn.Dense``'s
``[out, in]`` layout. Hugging Face stores ``[out, in]``; the conversion in :mod:`mfcore.models.hf`
transposes every parameter of a cell whose class sets ``HF_TRANSPOSED = True``.

Master weights are float32 Parameters; ``compute_dtype`` is what the products run in.
"""
import math

import mindspore as ms
from mindspore import Parameter, nn, ops
from mindspore.common.initializer import Normal, Zero, initializer

from mfcore.models.layers.grouped_matmul import GroupedMatmul


class MatMulFunction(nn.Cell):
    """``x [n, in] @ w [in, out]`` whose backward uses MatMul's transpose flags
    (``dx = dy w^T``, ``dw = x^T dy``): autodiff of ``ops.matmul`` emits explicit Transpose kernels
    for both, which cost ~4% of a CPU training step."""

    def __init__(self):
        super().__init__()
        # primitives, not functional ops (see norm.py: MindSpore 2.10 and ops shared with bprop)
        self.matmul = ops.MatMul()
        self.matmul_nt = ops.MatMul(transpose_b=True)
        self.matmul_tn = ops.MatMul(transpose_a=True)

    def construct(self, x, w):
        return self.matmul(x, w)

    def bprop(self, x, w, out, dout):
        return self.matmul_nt(dout, w), self.matmul_tn(x, dout)


class Linear(nn.Cell):
    """``y = x @ weight (+ bias)`` over the last axis; ``weight`` is ``[in_features, out_features]``.

    Tensor parallelism replaces instances of this class from outside the model; the attributes
    ``in_features``/``out_features`` describe the local (possibly partitioned) shape.
    """

    HF_TRANSPOSED = True

    def __init__(self, in_features, out_features, has_bias=False, compute_dtype=ms.float32,
                 init_std=0.02):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.has_bias = has_bias
        self.compute_dtype = compute_dtype
        self.weight = Parameter(initializer(Normal(init_std), [in_features, out_features], ms.float32),
                                name="weight")
        if has_bias:
            self.bias = Parameter(initializer(Zero(), [out_features], ms.float32), name="bias")
        self.matmul = MatMulFunction()

    def construct(self, x):
        lead = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1]).astype(self.compute_dtype)
        out = self.matmul(flat, self.weight.astype(self.compute_dtype))
        if self.has_bias:
            out = out + self.bias.astype(self.compute_dtype)
        return out.reshape(lead + (self.out_features,))


class GroupedLinear(nn.Cell):
    """One ``[in, out]`` projection per expert, stacked as ``weight [num_experts, in, out]``.

    Hugging Face keeps one tensor per expert (``experts.{e}.gate_proj.weight``, ``[out, in]``); the
    conversion splits and transposes. ``construct`` applies expert ``e``'s weight to its own rows
    of an expert-sorted input (:mod:`mfcore.models.layers.grouped_matmul`).
    """

    HF_TRANSPOSED = True

    def __init__(self, num_experts, in_features, out_features, compute_dtype=ms.float32, init_std=0.02):
        super().__init__()
        self.num_experts = num_experts
        self.in_features = in_features
        self.out_features = out_features
        self.compute_dtype = compute_dtype
        self.weight = Parameter(initializer(Normal(init_std), [num_experts, in_features, out_features],
                                            ms.float32), name="weight")
        self.matmul = GroupedMatmul(compute_dtype)

    def construct(self, x, group_sizes, max_rows):
        """``x [N, in]`` sorted by expert, ``group_sizes [E]`` int32 → ``[N, out]``; ``max_rows``
        bounds one group (used by the static-shape fallback)."""
        return self.matmul(x.astype(self.compute_dtype), self.weight.astype(self.compute_dtype),
                           group_sizes, max_rows)


class Embedding(nn.Cell):
    """Token embedding table ``weight [vocab_size, hidden_size]`` (same layout as Hugging Face)."""

    def __init__(self, vocab_size, hidden_size, compute_dtype=ms.float32, init_std=0.02):
        super().__init__()
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.compute_dtype = compute_dtype
        self.weight = Parameter(initializer(Normal(init_std), [vocab_size, hidden_size], ms.float32),
                                name="weight")

    def construct(self, input_ids):
        return ops.gather(self.weight, input_ids, 0).astype(self.compute_dtype)


def output_init_std(init_std, num_layers):
    """Init scale of projections that write into the residual stream (GPT-2 / Megatron practice)."""
    return init_std / math.sqrt(2.0 * num_layers)
