"""Incremental decoding for the Llama family (GQA): per layer a key and a value cache
``[b, L, kv_heads, head_dim]``, filled by the prefill graph and extended by one slot per decode step.

The cells reuse the trained model's own sub-cells (projections, norms, rotary, MLP) and only replace
the attention's key/value source, so the numbers are the training forward's up to summation order.
"""
import mindspore as ms
from mindspore import nn

from mfcore.generation.cache import attention_bias, fill_cache, grouped_attention, write_slot


class LlamaCachedForward(nn.Cell):
    """``(input_ids [b, s], positions [b, s], query_slots [s], key_valid [b, L], caches)`` →
    ``(last-position logits [b, vocab] fp32, caches)``; ``caches`` = ``(k_0, v_0, k_1, v_1, ...)``.

    ``prefill=True``: ``s`` prompt columns written to slots ``0..s-1`` of empty caches (``caches`` is
    only read for its shapes); ``prefill=False``: one token written to slot ``query_slots[0]``."""

    def __init__(self, model, prefill):
        super().__init__(auto_prefix=False)  # keep the model's parameter names
        self.model = model
        self.prefill = prefill
        self.compute_dtype = model.compute_dtype
        self.num_layers = model.config.num_hidden_layers

    def _attention(self, attn, x, cos, sin, bias, k_cache, v_cache, slot):
        b, s, _ = x.shape
        q = attn.q_proj(x).reshape(b, s, attn.num_heads, attn.head_dim)
        k = attn.k_proj(x).reshape(b, s, attn.num_key_value_heads, attn.head_dim)
        v = attn.v_proj(x).reshape(b, s, attn.num_key_value_heads, attn.head_dim)
        if attn.qk_norm:
            q = attn.q_norm(q)
            k = attn.k_norm(k)
        q = attn.rotate(q, cos, sin)
        k = attn.rotate(k, cos, sin)
        if self.prefill:
            k_cache = fill_cache(k.astype(ms.float32), k_cache.shape[1])
            v_cache = fill_cache(v.astype(ms.float32), v_cache.shape[1])
        else:
            k_cache = write_slot(k_cache, k, slot)
            v_cache = write_slot(v_cache, v, slot)
        ctx = grouped_attention(q, k_cache, v_cache, bias, attn.core.scale, self.compute_dtype)
        return attn.o_proj(ctx), k_cache, v_cache

    @ms.jit
    def construct(self, input_ids, positions, query_slots, key_valid, *caches):
        inner = self.model.model
        cos, sin = inner.rotary(positions)
        bias = attention_bias(query_slots, key_valid)
        h = inner.embed_tokens(input_ids).astype(ms.float32)
        out = ()
        for i in range(self.num_layers):
            layer = inner.layers[i]
            a, k, v = self._attention(layer.self_attn, layer.input_layernorm(h), cos, sin, bias,
                                      caches[2 * i], caches[2 * i + 1], query_slots)
            h = h + a.astype(ms.float32)
            h = h + layer.mlp(layer.post_attention_layernorm(h)).astype(ms.float32)
            out = out + (k, v)
        last = inner.norm(h[:, -1:, :])
        return self.model.logits(last)[:, 0, :], out


def llama_cache_shapes(model, batch, length):
    """Shapes of the ``(k, v)`` caches of every layer, in order."""
    config = model.config
    shape = (batch, length, config.num_key_value_heads, config.head_dim)
    return [shape] * (2 * config.num_hidden_layers)
