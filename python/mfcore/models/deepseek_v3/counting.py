"""DeepSeek-V3 parameter counts, from the config alone (they match the built Cells)."""


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


def _layer(c, index):
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


def parameter_breakdown(c):
    """Parameters of DeepSeek-V3 by part; MTP modules share the embedding and head (HF stores copies)."""
    h, vocab = c.hidden_size, c.vocab_size
    layers = [_layer(c, i) for i in range(c.num_hidden_layers)]
    embed = vocab * h
    head = 0 if c.tie_word_embeddings else vocab * h
    main = embed + sum(p for p, _ in layers) + h + head
    mtp_layers = [_layer(c, c.num_hidden_layers + k) for k in range(c.num_nextn_predict_layers)]
    # enorm, hnorm, eh_proj [2h -> h], the decoder layer, shared_head.norm
    mtp = sum(p + 2 * h + 2 * h * h + h for p, _ in mtp_layers)
    active = sum(a for _, a in layers) + vocab * h
    active += sum(a + 2 * h * h + vocab * h for _, a in mtp_layers)
    copies = c.num_nextn_predict_layers * 2 * vocab * h
    return {"main": main, "mtp": mtp, "total": main + mtp, "hf_checkpoint": main + mtp + copies,
            "active_matmul": active, "embedding": embed}


def attention_shape(c):
    """(layers with attention, MTP included; heads, q/k head dim, v head dim) for the attention FLOPs."""
    return c.num_hidden_layers + c.num_nextn_predict_layers, c.num_attention_heads, c.qk_head_dim, c.v_head_dim
