"""The output projection and the masked cross entropy computed together, in token chunks.

Unchunked, training keeps the logits ``[tokens, vocab]`` (float32) for the backward and then builds
their gradient of the same size: 2 GiB each at vocab 128k and 4k tokens. :class:`ChunkedHeadLoss`
never holds more than one chunk of ``chunk_tokens`` rows: each chunk is projected, its loss summed
and, in the same pass, its logit gradient ``(softmax - onehot) * mask`` pushed through the projection
(the chunk's rows of ``d hidden`` and its share of ``d weight``, summed in float32). The backward only
scales these by the incoming gradient, as Liger-Kernel's fused linear cross entropy does: the
projection is not recomputed, so the step runs the same three matmuls as the unchunked path.

The cost is weight-sized float32 buffers: ``d weight`` held from the forward to the backward, and
while the chunks run, one chunk's product and the running sum beside it. At its peak the chunked
head holds about ``3 vocab hidden + 2 chunk vocab`` floats, the unchunked one ``2 tokens vocab +
vocab hidden`` (logits, their gradient, ``d weight``), so chunking saves memory only when
``tokens > hidden + chunk``: :meth:`ChunkedHeadLoss.applies` takes the chunked path only then, and
only in training (a forward without backward would do the gradient work in vain; evaluation keeps
the unchunked path). Measured at the 160M point (hidden 1024, vocabulary 32k, chunks of 512):
4096 tokens per micro batch peak 0.5 GB lower, 2048 tokens the same (benchmarks/README.md).
"""
import mindspore as ms
from mindspore import nn, ops

from mfcore.models.layers.loss import CrossEntropyWithGrad


class _FusedChunks(nn.Cell):
    """``(loss sum, d hidden, d weight)`` at unit output gradient; ``bprop`` scales the last two.

    ``weight`` is ``[hidden, vocab]`` (a :class:`~mfcore.models.layers.Linear`) or, with
    ``vocab_major``, ``[vocab, hidden]`` (a tied embedding table)."""

    def __init__(self, chunk_tokens, compute_dtype, vocab_major):
        super().__init__()
        self.chunk_tokens = chunk_tokens
        self.compute_dtype = compute_dtype
        self.vocab_major = vocab_major
        self.cross_entropy = CrossEntropyWithGrad()
        self.matmul = ops.MatMul()
        self.matmul_nt = ops.MatMul(transpose_b=True)
        self.matmul_tn = ops.MatMul(transpose_a=True)

    def project(self, x, w):
        """Logits of the rows ``x`` (compute dtype), as float32."""
        if self.vocab_major:
            return self.matmul_nt(x, w).astype(ms.float32)
        return self.matmul(x, w).astype(ms.float32)

    def backproject(self, x, w, g):
        """(d rows, d weight) of the logit gradient ``g`` (compute dtype)."""
        if self.vocab_major:
            return self.matmul(g, w), self.matmul_tn(g, x)
        return self.matmul_nt(g, w), self.matmul_tn(x, g)

    def construct(self, hidden, weight, labels, loss_mask):
        w = weight.astype(self.compute_dtype)
        loss, d_rows, d_weight = self.chunk(hidden, w, labels, loss_mask, 0)
        d_rows = (d_rows,)
        for start in range(self.chunk_tokens, hidden.shape[0], self.chunk_tokens):
            # one chunk at a time: its matmul waits for the previous chunk's d_weight
            chunk_loss, d_x, d_w = self.chunk(ops.depend(hidden, d_weight), w, labels, loss_mask, start)
            loss = loss + chunk_loss
            d_weight = d_weight + d_w
            d_rows = d_rows + (d_x,)
        return loss, ops.concat(d_rows, 0), d_weight

    def chunk(self, hidden, w, labels, loss_mask, start):
        """(loss sum, d rows, d weight) of the rows ``start:start + chunk_tokens``, float32."""
        end = min(start + self.chunk_tokens, hidden.shape[0])
        x = hidden[start:end].astype(self.compute_dtype)
        loss, g = self.cross_entropy(self.project(x, w), labels[start:end], loss_mask[start:end])
        d_x, d_w = self.backproject(x, w, g.astype(self.compute_dtype))
        return loss, d_x.astype(ms.float32), d_w.astype(ms.float32)

    def bprop(self, hidden, weight, labels, loss_mask, out, dout):
        scale = dout[0]
        return (out[1] * scale).astype(hidden.dtype), (out[2] * scale).astype(weight.dtype), \
            ops.zeros_like(labels), ops.zeros_like(loss_mask)


class ChunkedHeadLoss(nn.Cell):
    """``sum_t mask_t * CE(hidden_t @ weight, label_t)`` over chunks of ``chunk_tokens`` tokens.

    ``hidden [..., h]`` float32, ``labels`` and ``loss_mask`` of the same leading shape. Off while
    ``chunk_tokens`` is 0 (:func:`~mfcore.models.build.set_loss_chunk_tokens` sets it)."""

    def __init__(self, hidden_size, compute_dtype=ms.float32, vocab_major=False, chunk_tokens=0):
        super().__init__()
        self.hidden_size = hidden_size
        self.fused = _FusedChunks(chunk_tokens, compute_dtype, vocab_major)

    def set_chunk_tokens(self, tokens):
        self.fused.chunk_tokens = int(tokens)

    def applies(self, tokens, training):
        """Whether a pass over ``tokens`` tokens takes the chunked path: in training, when chunking
        is on and it needs less memory than the unchunked head (``tokens > hidden + chunk``)."""
        chunk = self.fused.chunk_tokens
        return training and chunk > 0 and tokens > self.hidden_size + chunk

    def construct(self, hidden, weight, labels, loss_mask):
        flat = hidden.reshape(-1, hidden.shape[-1])
        loss, _, _ = self.fused(flat, weight, labels.reshape(-1).astype(ms.int32),
                                loss_mask.reshape(-1).astype(ms.float32))
        return loss
