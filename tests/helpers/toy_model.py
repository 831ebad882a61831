"""A tiny causal LM of the tests' own (embedding → tanh MLP mixing the previous token → head, and an
RMS norm) returning the masked loss sum, so the step and the loop are tested without mfcore.models."""
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
import mindspore.common.dtype as mstype


class ToyLM(nn.Cell):
    def __init__(self, vocab=32, hidden=16, seed=0, compute_dtype=mstype.float32):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.embed = Parameter(Tensor(rng.normal(0, 0.3, (vocab, hidden)).astype(np.float32)), name="embed.weight")
        self.mix = Parameter(Tensor(rng.normal(0, 0.3, (2 * hidden, hidden)).astype(np.float32)), name="mix.weight")
        self.mix_bias = Parameter(Tensor(np.zeros(hidden, np.float32)), name="mix.bias")
        self.norm = Parameter(Tensor(np.ones(hidden, np.float32)), name="norm.weight")
        self.head = Parameter(Tensor(rng.normal(0, 0.3, (hidden, vocab)).astype(np.float32)), name="head.weight")
        self.vocab = vocab
        self.dtype = compute_dtype

    def construct(self, input_ids, labels=None, loss_mask=None, position_ids=None, attention_mask=None):
        x = ops.gather(self.embed, input_ids, 0)
        prev = ops.concat((ops.zeros_like(x[:, :1]), x[:, :-1]), 1)
        h = ops.concat((x, prev), -1).astype(self.dtype)
        h = ops.tanh(ops.matmul(h, self.mix.astype(self.dtype)) + self.mix_bias.astype(self.dtype))
        h = h.astype(mstype.float32)
        h = h * ops.rsqrt((h * h).mean(-1, keep_dims=True) + 1e-6) * self.norm
        logits = ops.matmul(h.astype(self.dtype), self.head.astype(self.dtype)).astype(mstype.float32)
        if labels is None:
            return logits
        ce = ops.cross_entropy(logits.reshape(-1, self.vocab), labels.reshape(-1), reduction="none")
        return (ce * loss_mask.reshape(-1)).sum()
