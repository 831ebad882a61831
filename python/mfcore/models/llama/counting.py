"""Llama-family parameter counts, from the config alone (they match the built Cells)."""


def _attention(c):
    hd, nh, nkv, h = c.head_dim, c.num_attention_heads, c.num_key_value_heads, c.hidden_size
    weights = h * nh * hd + 2 * h * nkv * hd + nh * hd * h
    bias = (nh + 2 * nkv) * hd if c.attention_bias else 0
    norms = 2 * hd if c.qk_norm else 0
    return weights, bias + norms


def parameter_breakdown(c):
    """Parameters of a Llama-family model by part (see :func:`mfcore.models.parameter_breakdown`)."""
    h, inter = c.hidden_size, c.intermediate_size
    attn_w, attn_other = _attention(c)
    mlp_w = 3 * h * inter
    mlp_bias = (2 * inter + h) if c.mlp_bias else 0
    layer = attn_w + attn_other + mlp_w + mlp_bias + 2 * h
    embed = c.vocab_size * h
    head = 0 if c.tie_word_embeddings else c.vocab_size * h
    total = embed + c.num_hidden_layers * layer + h + head
    matmul = c.num_hidden_layers * (attn_w + mlp_w) + c.vocab_size * h
    return {"main": total, "mtp": 0, "total": total, "hf_checkpoint": total,
            "active_matmul": matmul, "embedding": embed}


def attention_shape(c):
    """(layers with attention, heads, q/k head dim, v head dim) for the attention FLOPs."""
    return c.num_hidden_layers, c.num_attention_heads, c.head_dim, c.head_dim
