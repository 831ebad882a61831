"""RMSNorm, computed in float32 whatever the compute dtype."""
import mindspore as ms
from mindspore import Parameter, nn, ops
from mindspore.common.initializer import One, initializer


class RMSNorm(nn.Cell):
    """``y = x / sqrt(mean(x^2) + eps) * weight`` over the last axis (Zhang & Sennrich, 2019)."""

    def __init__(self, hidden_size, eps=1e-6, compute_dtype=ms.float32):
        super().__init__()
        self.hidden_size = hidden_size
        self.eps = eps
        self.compute_dtype = compute_dtype
        self.weight = Parameter(initializer(One(), [hidden_size], ms.float32), name="weight")

    def construct(self, x):
        x32 = x.astype(ms.float32)
        variance = ops.mean(ops.square(x32), -1, keep_dims=True)
        out = x32 * ops.rsqrt(variance + self.eps) * self.weight
        return out.astype(self.compute_dtype)
