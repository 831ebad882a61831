"""Incremental decoding for DeepSeek-V3 (MLA): the cache holds what the papers cache, per layer the
normalised compressed latent ``c_kv [b, L, kv_lora_rank]`` and the rotated shared key
``k_rope [b, L, qk_rope_head_dim]``, not per-head keys and values.

Attention runs on the latent directly (DeepSeek-V2 §2.1.3, "absorbed" weights): with ``kv_b_proj``
split into ``W_UK [rank, heads, nope]`` and ``W_UV [rank, heads, v]``, the no-position score is
``(q_nope W_UK^T) · c_kv`` and the output is ``(probs · c_kv) W_UV``, so no step expands the cache
into per-head keys. Only the main head predicts (the MTP modules are for training).
"""
import mindspore as ms
from mindspore import nn, ops

from mfcore.generation.cache import attention_bias, fill_cache, write_slot


class DeepseekV3CachedForward(nn.Cell):
    """Same contract as :class:`~mfcore.generation.llama_decode.LlamaCachedForward`, with
    ``caches`` = ``(c_kv_0, k_rope_0, c_kv_1, k_rope_1, ...)``."""

    def __init__(self, model, prefill):
        super().__init__(auto_prefix=False)  # keep the model's parameter names
        self.model = model
        self.prefill = prefill
        self.compute_dtype = model.compute_dtype
        self.num_layers = model.num_hidden_layers

    def _absorbed_scores(self, attn, q_nope, q_rope, c_cache, r_cache, w_uk):
        """Scores ``[b, s * heads, L]`` float32 from the latent and rotary caches."""
        b, s, nh, nope = q_nope.shape
        dt = self.compute_dtype
        q_lat = ops.bmm(q_nope.reshape(b * s, nh, nope).transpose(1, 0, 2).astype(dt),
                        w_uk.transpose(1, 2, 0).astype(dt))                  # [nh, b*s, rank]
        q_lat = q_lat.transpose(1, 0, 2).reshape(b, s * nh, -1)
        nope_part = ops.bmm(q_lat, c_cache.astype(dt).transpose(0, 2, 1))
        rope_part = ops.bmm(q_rope.reshape(b, s * nh, -1).astype(dt), r_cache.astype(dt).transpose(0, 2, 1))
        return (nope_part.astype(ms.float32) + rope_part.astype(ms.float32)) * attn.core.scale

    def _attention(self, attn, x, cos, sin, bias, c_cache, r_cache, slot):
        b, s, _ = x.shape
        nh, nope, rope = attn.num_heads, attn.qk_nope_head_dim, attn.qk_rope_head_dim
        rank = attn.kv_lora_rank
        q = attn._queries(x).reshape(b, s, nh, nope + rope)
        q_rope = attn.rotate(q[..., nope:], cos, sin)
        latent = attn.kv_a_proj_with_mqa(x)
        c_kv = attn.kv_a_layernorm(latent[..., :rank]).astype(ms.float32)
        k_rope = attn.rotate(latent[..., rank:].reshape(b, s, 1, rope), cos, sin).reshape(b, s, rope)
        if self.prefill:
            c_cache = fill_cache(c_kv, c_cache.shape[1])
            r_cache = fill_cache(k_rope.astype(ms.float32), r_cache.shape[1])
        else:
            c_cache = write_slot(c_cache, c_kv, slot)
            r_cache = write_slot(r_cache, k_rope, slot)
        w = attn.kv_b_proj.weight.reshape(rank, nh, nope + attn.v_head_dim)
        scores = self._absorbed_scores(attn, q[..., :nope], q_rope, c_cache, r_cache, w[..., :nope])
        length = c_cache.shape[1]
        scores = scores.reshape(b, s, nh, length) + bias.expand_dims(2)
        probs = ops.softmax(scores, -1).reshape(b, s * nh, length).astype(self.compute_dtype)
        ctx_lat = ops.bmm(probs, c_cache.astype(self.compute_dtype))               # [b, s*nh, rank]
        ctx_lat = ctx_lat.reshape(b * s, nh, rank).transpose(1, 0, 2)
        ctx = ops.bmm(ctx_lat, w[..., nope:].transpose(1, 0, 2).astype(self.compute_dtype))
        ctx = ctx.transpose(1, 0, 2).reshape(b, s, nh * attn.v_head_dim)
        return attn.o_proj(ctx), c_cache, r_cache

    def _mlp(self, layer, h):
        if layer.is_moe:
            y, _ = layer.mlp(layer.post_attention_layernorm(h))
            return y
        return layer.mlp(layer.post_attention_layernorm(h))

    @ms.jit
    def construct(self, input_ids, positions, query_slots, key_valid, *caches):
        inner = self.model.model
        cos, sin = inner.rotary(positions)
        bias = attention_bias(query_slots, key_valid)
        h = inner.embed_tokens(input_ids).astype(ms.float32)
        out = ()
        for i in range(self.num_layers):
            layer = inner.layers[i]
            a, c, r = self._attention(layer.self_attn, layer.input_layernorm(h), cos, sin, bias,
                                      caches[2 * i], caches[2 * i + 1], query_slots)
            h = h + a.astype(ms.float32)
            h = h + self._mlp(layer, h).astype(ms.float32)
            out = out + (c, r)
        last = inner.norm(h[:, -1:, :])
        return self.model.lm_head(last).astype(ms.float32)[:, 0, :], out


def deepseek_cache_shapes(model, batch, length):
    """Shapes of the ``(c_kv, k_rope)`` caches of every decoder layer, in order."""
    config = model.config
    return [(batch, length, config.kv_lora_rank), (batch, length, config.qk_rope_head_dim)] * \
        config.num_hidden_layers
