"""Llama 2 / Llama 3 as MindSpore Cells, with Hugging Face parameter names.

``LlamaForCausalLM`` holds ``model`` (``embed_tokens``, ``layers.N``, ``norm``) and ``lm_head``
(absent when embeddings are tied), so ``parameters_and_names()`` yields exactly Hugging Face's names
(``model.layers.0.self_attn.q_proj.weight`` ...). The residual stream is kept in float32.
"""
import mindspore as ms
from mindspore import nn, ops

from mfcore.models.layers import (MLP, Attention, AttentionMask, ChunkedHeadLoss, Embedding, Linear,
                                  MaskedCrossEntropySum, RMSNorm, RotaryEmbedding, use_flash_attention)


class LlamaDecoderLayer(nn.Cell):
    """Pre-norm block: ``h = x + attn(norm(x)); out = h + mlp(norm(h))``."""

    def __init__(self, config, compute_dtype=ms.float32, flash=False):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, compute_dtype)
        self.self_attn = Attention(config, compute_dtype, flash)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, compute_dtype)
        self.mlp = MLP(config.hidden_size, config.intermediate_size, compute_dtype,
                       config.initializer_range, config.num_hidden_layers, config.mlp_bias)

    def construct(self, x, cos, sin, mask):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask).astype(ms.float32)
        return h + self.mlp(self.post_attention_layernorm(h)).astype(ms.float32)


def default_positions(input_ids):
    b, s = input_ids.shape
    return ops.arange(s, dtype=ms.int32).expand_dims(0).broadcast_to((b, s))


class LlamaModel(nn.Cell):
    """Embedding, decoder layers and final norm: ``input_ids [b, s]`` → hidden ``[b, s, h]`` fp32."""

    def __init__(self, config, compute_dtype=ms.float32):
        super().__init__()
        flash = use_flash_attention()
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size, compute_dtype,
                                      config.initializer_range)
        self.layers = nn.CellList([LlamaDecoderLayer(config, compute_dtype, flash)
                                   for _ in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, compute_dtype)
        self.rotary = RotaryEmbedding(config.head_dim, config.rope_theta, config.rope_scaling)
        self.attention_mask = AttentionMask(flash)

    def construct(self, input_ids, position_ids=None, attention_mask=None):
        if position_ids is None:
            position_ids = default_positions(input_ids)
        cos, sin = self.rotary(position_ids)
        mask = self.attention_mask(input_ids.shape[1], attention_mask)
        h = self.embed_tokens(input_ids).astype(ms.float32)
        for layer in self.layers:
            h = layer(h, cos, sin, mask)
        return self.norm(h)


def tied_logits(hidden, table, compute_dtype):
    """Logits against the embedding table ``[vocab, h]`` (tied embeddings), float32."""
    flat = hidden.reshape(-1, hidden.shape[-1]).astype(compute_dtype)
    logits = ops.matmul(flat, table.astype(compute_dtype).T)
    return logits.astype(ms.float32).reshape(hidden.shape[:-1] + (table.shape[0],))


class LlamaForCausalLM(nn.Cell):
    """``model(input_ids)`` → logits ``[b, s, vocab]`` fp32; with ``labels``/``loss_mask`` → the
    summed masked cross entropy (the step divides by the global number of loss tokens)."""

    def __init__(self, config, compute_dtype=ms.float32):
        super().__init__()
        self.config = config
        self.compute_dtype = compute_dtype
        self.model = LlamaModel(config, compute_dtype)
        self.tie_word_embeddings = config.tie_word_embeddings
        if not self.tie_word_embeddings:
            self.lm_head = Linear(config.hidden_size, config.vocab_size, False, compute_dtype,
                                  config.initializer_range)
        self.loss = MaskedCrossEntropySum()
        self.chunked_loss = ChunkedHeadLoss(config.hidden_size, compute_dtype,
                                            vocab_major=self.tie_word_embeddings)

    def logits(self, hidden):
        if self.tie_word_embeddings:
            return tied_logits(hidden, self.model.embed_tokens.weight, self.compute_dtype)
        return self.lm_head(hidden).astype(ms.float32)

    def construct(self, input_ids, labels=None, loss_mask=None, position_ids=None, attention_mask=None):
        hidden = self.model(input_ids, position_ids, attention_mask)
        if labels is None:
            return self.logits(hidden)
        return self.head_loss(hidden, labels, loss_mask)

    def head_loss(self, hidden, labels, loss_mask):
        """The summed masked cross entropy of the head's logits (chunked in training when configured)."""
        if self.chunked_loss.applies(labels.size, self.training):
            weight = self.model.embed_tokens.weight if self.tie_word_embeddings else self.lm_head.weight
            return self.chunked_loss(hidden, weight, labels, loss_mask)
        logits = self.logits(hidden)
        vocab = logits.shape[-1]
        return self.loss(logits.reshape(-1, vocab), labels.reshape(-1), loss_mask.reshape(-1))

    def decoder_layers(self):
        """The decoder layers (for recompute and pipeline/tensor-parallel passes)."""
        return list(self.model.layers)
