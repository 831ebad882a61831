"""Multi-head latent attention (DeepSeek-V2/V3).

Queries go through an optional low-rank bottleneck (``q_a_proj`` → ``q_a_layernorm`` → ``q_b_proj``);
keys and values share one compressed latent (``kv_a_proj_with_mqa`` → ``kv_a_layernorm`` →
``kv_b_proj``). Position is carried by a decoupled rotary part: ``qk_rope_head_dim`` channels per
query head and ONE rotary key shared by all heads, both with DeepSeek's interleaved pairing.
"""
import mindspore as ms
from mindspore import nn, ops

from mfcore.models.layers.attention import CoreAttention
from mfcore.models.layers.linear import Linear, output_init_std
from mfcore.models.layers.norm import RMSNorm
from mfcore.models.layers.rope import Rotate, rope_type, yarn_mscale


def mla_softmax_scale(config):
    """``1/sqrt(d_qk)``, times YaRN's ``mscale(factor, mscale_all_dim)^2`` when YaRN is on."""
    scale = config.qk_head_dim ** -0.5
    scaling = config.rope_scaling
    if rope_type(scaling) == "yarn" and scaling.get("mscale_all_dim"):
        m = yarn_mscale(float(scaling["factor"]), float(scaling["mscale_all_dim"]))
        scale = scale * m * m
    return scale


class MultiLatentAttention(nn.Cell):
    """MLA with Hugging Face names; ``num_heads`` is read at construct time (tensor parallelism)."""

    def __init__(self, config, compute_dtype=ms.float32, flash=False):
        super().__init__()
        h, std = config.hidden_size, config.initializer_range
        bias = config.attention_bias
        self.num_heads = config.num_attention_heads
        self.q_lora_rank = config.q_lora_rank
        self.kv_lora_rank = config.kv_lora_rank
        self.qk_nope_head_dim = config.qk_nope_head_dim
        self.qk_rope_head_dim = config.qk_rope_head_dim
        self.v_head_dim = config.v_head_dim
        qk_dim = config.qk_head_dim
        if self.q_lora_rank:
            self.q_a_proj = Linear(h, self.q_lora_rank, bias, compute_dtype, std)
            self.q_a_layernorm = RMSNorm(self.q_lora_rank, config.rms_norm_eps, compute_dtype)
            self.q_b_proj = Linear(self.q_lora_rank, self.num_heads * qk_dim, False, compute_dtype, std)
        else:
            self.q_proj = Linear(h, self.num_heads * qk_dim, False, compute_dtype, std)
        self.kv_a_proj_with_mqa = Linear(h, self.kv_lora_rank + self.qk_rope_head_dim, bias,
                                         compute_dtype, std)
        self.kv_a_layernorm = RMSNorm(self.kv_lora_rank, config.rms_norm_eps, compute_dtype)
        self.kv_b_proj = Linear(self.kv_lora_rank,
                                self.num_heads * (self.qk_nope_head_dim + self.v_head_dim),
                                False, compute_dtype, std)
        self.o_proj = Linear(self.num_heads * self.v_head_dim, h, bias, compute_dtype,
                             output_init_std(std, config.num_hidden_layers))
        self.rotate = Rotate(self.qk_rope_head_dim, interleaved=True)
        self.core = CoreAttention(mla_softmax_scale(config), compute_dtype, flash)

    def _queries(self, x):
        if self.q_lora_rank:
            return self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
        return self.q_proj(x)

    def construct(self, x, cos, sin, mask):
        b, s, _ = x.shape
        nope, rope = self.qk_nope_head_dim, self.qk_rope_head_dim
        q = self._queries(x).reshape(b, s, self.num_heads, nope + rope)
        latent = self.kv_a_proj_with_mqa(x)
        kv = self.kv_b_proj(self.kv_a_layernorm(latent[..., :self.kv_lora_rank]))
        kv = kv.reshape(b, s, self.num_heads, nope + self.v_head_dim)
        k_rope = self.rotate(latent[..., self.kv_lora_rank:].reshape(b, s, 1, rope), cos, sin)
        q = ops.concat((q[..., :nope], self.rotate(q[..., nope:], cos, sin)), -1)
        k = ops.concat((kv[..., :nope], k_rope.broadcast_to((b, s, self.num_heads, rope))), -1)
        return self.o_proj(self.core(q, k, kv[..., nope:], mask))
