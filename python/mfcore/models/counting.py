"""Exact parameter counts and training FLOPs per token, computed from a config alone.

Counts match the Cells ``build_model`` creates (and Hugging Face's checkpoints). For DeepSeek-V3 the
multi-token-prediction (MTP) modules share the embedding and output head with the main model, so
they add only their own layers; Hugging Face's checkpoint stores copies of both, which
``parameter_breakdown(...)["hf_checkpoint"]`` includes.

FLOPs follow the PaLM / Megatron convention: ``6 * N_active`` over every matrix product a token goes
through (embedding lookup excluded, output head included) plus ``6 * s * heads * (d_qk + d_v)`` per
layer for attention scores and context, counted without halving for causality.
"""
from mfcore.models.config import DeepseekV3Config, LlamaConfig, load_model_config


def _llama_attention(c):
    hd, nh, nkv, h = c.head_dim, c.num_attention_heads, c.num_key_value_heads, c.hidden_size
    weights = h * nh * hd + 2 * h * nkv * hd + nh * hd * h
    bias = (nh + 2 * nkv) * hd if c.attention_bias else 0
    norms = 2 * hd if c.qk_norm else 0
    return weights, bias + norms


def _llama_breakdown(c):
    h, inter = c.hidden_size, c.intermediate_size
    attn_w, attn_other = _llama_attention(c)
    mlp_w = 3 * h * inter
    mlp_bias = (2 * inter + h) if c.mlp_bias else 0
    layer = attn_w + attn_other + mlp_w + mlp_bias + 2 * h
    embed = c.vocab_size * h
    head = 0 if c.tie_word_embeddings else c.vocab_size * h
    total = embed + c.num_hidden_layers * layer + h + head
    matmul = c.num_hidden_layers * (attn_w + mlp_w) + c.vocab_size * h
    return {"main": total, "mtp": 0, "total": total, "hf_checkpoint": total,
            "active_matmul": matmul, "embedding": embed}


def _mla_weights(c):
    h, nh = c.hidden_size, c.num_attention_heads
    if c.q_lora_rank:
        q = h * c.q_lora_rank + c.q_lora_rank * nh * c.qk_head_dim
        q_norm = c.q_lora_rank
    else:
        q, q_norm = h * nh * c.qk_head_dim, 0
    kv = h * (c.kv_lora_rank + c.qk_rope_head_dim) + c.kv_lora_rank * nh * (c.qk_nope_head_dim + c.v_head_dim)
    out = nh * c.v_head_dim * h
    bias = 0
    if c.attention_bias:  # q_a_proj (with a q LoRA), kv_a_proj_with_mqa and o_proj carry biases
        bias = (c.q_lora_rank or 0) + c.kv_lora_rank + c.qk_rope_head_dim + h
    return q + kv + out, q_norm + c.kv_lora_rank + bias


def _deepseek_layer(c, index):
    """(parameters, matmul parameters a token passes through) of decoder layer ``index``."""
    h = c.hidden_size
    attn_w, attn_norms = _mla_weights(c)
    params = attn_w + attn_norms + 2 * h
    active = attn_w
    if c.is_moe_layer(index):
        expert = 3 * h * c.moe_intermediate_size
        shared = 3 * h * c.moe_intermediate_size * c.n_shared_experts
        router = c.n_routed_experts * h
        params += router + c.n_routed_experts + c.n_routed_experts * expert + shared
        active += router + c.num_experts_per_tok * expert + shared
    else:
        params += 3 * h * c.intermediate_size
        active += 3 * h * c.intermediate_size
    return params, active


def _deepseek_breakdown(c):
    h, vocab = c.hidden_size, c.vocab_size
    layers = [_deepseek_layer(c, i) for i in range(c.num_hidden_layers)]
    embed = vocab * h
    head = 0 if c.tie_word_embeddings else vocab * h
    main = embed + sum(p for p, _ in layers) + h + head
    mtp_layers = [_deepseek_layer(c, c.num_hidden_layers + k) for k in range(c.num_nextn_predict_layers)]
    # enorm, hnorm, eh_proj [2h -> h], the decoder layer, shared_head.norm
    mtp = sum(p + 2 * h + 2 * h * h + h for p, _ in mtp_layers)
    active = sum(a for _, a in layers) + vocab * h
    active += sum(a + 2 * h * h + vocab * h for _, a in mtp_layers)
    copies = c.num_nextn_predict_layers * 2 * vocab * h
    return {"main": main, "mtp": mtp, "total": main + mtp, "hf_checkpoint": main + mtp + copies,
            "active_matmul": active, "embedding": embed}


def parameter_breakdown(config):
    """``main``, ``mtp``, ``total`` (= the built model), ``hf_checkpoint``, ``active_matmul`` (matrix
    parameters one token's forward multiplies by, output head included) and ``embedding``."""
    c = load_model_config(config)
    if isinstance(c, DeepseekV3Config):
        return _deepseek_breakdown(c)
    if isinstance(c, LlamaConfig):
        return _llama_breakdown(c)
    raise TypeError(f"unknown config type {type(c).__name__}")


def count_parameters(config):
    """Exact number of parameters of the model ``build_model(config)`` creates (MTP included)."""
    return parameter_breakdown(config)["total"]


def _attention_dims(c):
    if isinstance(c, DeepseekV3Config):
        return c.num_attention_heads, c.qk_head_dim, c.v_head_dim
    return c.num_attention_heads, c.head_dim, c.head_dim


def flops_per_token(config, seq_length):
    """Training (forward + backward) FLOPs per token at ``seq_length`` (see module docstring)."""
    c = load_model_config(config)
    heads, d_qk, d_v = _attention_dims(c)
    layers = c.num_hidden_layers + getattr(c, "num_nextn_predict_layers", 0)
    attention = 6 * layers * seq_length * heads * (d_qk + d_v)
    return 6 * parameter_breakdown(c)["active_matmul"] + attention
