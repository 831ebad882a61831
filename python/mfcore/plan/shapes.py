"""What one decoder layer (and the model around the layers) holds, in the units the planner needs.

Parameters are split by how they shard: ``split`` (divided by tensor parallelism: Megatron's
column/row-parallel projections), ``replicated`` (kept whole on every TP rank: norms, the MoE router,
MLA's down projections ``q_a_proj``/``kv_a_proj`` as in Megatron-Core's MLA) and ``experts`` (the
routed experts, divided by expert parallelism and expert-TP). Activations are elements stored per
token for the backward pass, in the same three kinds (``seq`` is sharded by sequence parallelism,
``tp`` by tensor parallelism, ``routed`` per routed token copy). See docs/planning.md for every term.
"""
from dataclasses import dataclass
from typing import List

from mfcore.models.config import DeepseekV3Config


@dataclass(frozen=True)
class LayerShape:
    split: int           # parameters divided by TP
    replicated: int      # parameters whole on every TP rank
    experts: int         # routed-expert parameters (all experts of the layer)
    matmul_active: int   # matrix parameters one token multiplies by (FLOPs = 6 x this)
    attn_flop_dims: int  # heads * (d_qk + d_v): attention FLOPs per token per key = 6 x this
    act_seq: int         # activation elements per token, sharded by sequence parallelism
    act_tp: int          # activation elements per token, divided by TP
    act_core: int        # of act_tp: the attention core's own (freed by selective recompute)
    act_fp32: int        # activation elements per token always kept in float32 (router, lse)
    act_routed: int      # activation elements per routed (token, expert) copy, expert part / etp
    act_routed_whole: int  # per routed copy, not divided by expert-TP (dispatched hidden states)
    moe: bool


@dataclass(frozen=True)
class ModelShape:
    layers: List[LayerShape]     # the decoder layers in order
    mtp: List[LayerShape]        # DeepSeek's multi-token-prediction layers (on the last stage)
    hidden: int
    vocab: int
    embedding: int               # vocab x hidden (split by TP, first stage; copy on the last for MTP)
    head: int                    # output head (0 when tied: the embedding serves)
    final_norm: int
    mtp_extra: int               # per MTP module: enorm, hnorm, eh_proj [2h -> h], shared head norm
    routed_experts: int
    experts_per_token: int
    mla: bool = False            # DeepSeek-V3's layers (MLA, MoE): a backend may store more for them


def _llama_layer(c) -> LayerShape:
    h, f, hd = c.hidden_size, c.intermediate_size, c.head_dim
    q, kv = c.num_attention_heads * hd, c.num_key_value_heads * hd
    attn = h * q + 2 * h * kv + q * h
    split = attn + 3 * h * f + ((q + 2 * kv) if c.attention_bias else 0) + ((2 * f + h) if c.mlp_bias else 0)
    replicated = 2 * h + (2 * hd if c.qk_norm else 0)
    # stored: two norm inputs and two projection inputs (seq); q, k, v after RoPE and the attention
    # output (tp); gate, up and silu(gate)*up (tp); log-sum-exp per head (fp32)
    act_tp = q + 2 * kv + q + 3 * f
    return LayerShape(split, replicated, 0, attn + 3 * h * f, c.num_attention_heads * 2 * hd,
                      act_seq=4 * h, act_tp=act_tp, act_core=q, act_fp32=c.num_attention_heads,
                      act_routed=0, act_routed_whole=0, moe=False)


def _mla(c):
    """(split params, replicated params, matmul params, act_seq, act_tp, act_core, act_fp32 part,
    replicated activations per token) of multi-head latent attention (DeepSeek-V3 report, 2.1.1)."""
    h, nh = c.hidden_size, c.num_attention_heads
    dqk, dv, dn, dr, rkv = c.qk_head_dim, c.v_head_dim, c.qk_nope_head_dim, c.qk_rope_head_dim, c.kv_lora_rank
    rq = c.q_lora_rank or 0
    down = h * (rkv + dr) + (h * rq if rq else 0)
    up = (rq * nh * dqk if rq else h * nh * dqk) + rkv * nh * (dn + dv)
    out = nh * dv * h
    norms = rkv + rq + (h if c.attention_bias else 0)
    bias = (rq + rkv + dr) if c.attention_bias else 0
    # per token: q (after RoPE), kv_b's output (k_nope | v), the assembled k, the attention output
    act_tp = nh * dqk + nh * (dn + dv) + nh * dqk + nh * dv
    # replicated latents: c_q and its normed copy, c_kv and its normed copy, the shared rope key
    latents = 2 * rq + 2 * rkv + dr
    return up + out, down + norms + bias, down + up + out, latents, act_tp, nh * dv, nh


def _deepseek_layer(c: DeepseekV3Config, index: int) -> LayerShape:
    h = c.hidden_size
    split, replicated, matmul, latents, act_tp, core, lse = _mla(c)
    replicated += 2 * h
    act_fp32, routed, routed_whole, experts = lse, 0, 0, 0
    moe = c.is_moe_layer(index)
    if moe:
        fe, ne = c.moe_intermediate_size, c.n_routed_experts
        shared = 3 * h * fe * c.n_shared_experts
        split += shared
        replicated += ne * h + ne                      # router weight and its balancing bias
        experts = ne * 3 * h * fe
        matmul += ne * h + shared + c.num_experts_per_tok * 3 * h * fe
        act_tp += 3 * fe * c.n_shared_experts
        act_fp32 += 2 * ne                             # router logits and sigmoid scores
        routed, routed_whole = 3 * fe, 2 * h           # gate, up, product | dispatched in, expert out
    else:
        split += 3 * h * c.intermediate_size
        matmul += 3 * h * c.intermediate_size
        act_tp += 3 * c.intermediate_size
    return LayerShape(split, replicated, experts, matmul, c.num_attention_heads * (c.qk_head_dim + c.v_head_dim),
                      act_seq=4 * h + latents, act_tp=act_tp, act_core=core, act_fp32=act_fp32,
                      act_routed=routed, act_routed_whole=routed_whole, moe=moe)


def model_shape(c) -> ModelShape:
    """The :class:`ModelShape` of a Llama-family or DeepSeek-V3 config."""
    h, vocab = c.hidden_size, c.vocab_size
    head = 0 if c.tie_word_embeddings else vocab * h
    if isinstance(c, DeepseekV3Config):
        layers = [_deepseek_layer(c, i) for i in range(c.num_hidden_layers)]
        mtp = [_deepseek_layer(c, c.num_hidden_layers + k) for k in range(c.num_nextn_predict_layers)]
        return ModelShape(layers, mtp, h, vocab, vocab * h, head, h, 2 * h + 2 * h * h + h,
                          c.n_routed_experts, c.num_experts_per_tok, mla=True)
    layers = [_llama_layer(c)] * c.num_hidden_layers
    return ModelShape(layers, [], h, vocab, vocab * h, head, h, 0, 0, 0)


def total_parameters(shape: ModelShape) -> int:
    """Every parameter once (equals :func:`mfcore.models.count_parameters`)."""
    per_layer = sum(x.split + x.replicated + x.experts for x in shape.layers + shape.mtp)
    return shape.embedding + shape.head + shape.final_norm + per_layer + len(shape.mtp) * shape.mtp_extra
