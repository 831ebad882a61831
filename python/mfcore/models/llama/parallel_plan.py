"""The Llama family's tensor-parallel plan, Megatron-LM style: attention heads and KV groups split
across ranks (q/k/v column-parallel, o row-parallel), the MLP's hidden features split (gate/up
column, down row), the embedding and the output head split over the vocabulary, and each norm in
front of a split block entering the TP region once per block."""
from mfcore.models.family import TensorParallelPlan

PLAN = TensorParallelPlan(
    model=(("model.embed_tokens", "vocab_embedding"), ("model.norm", "enter"), ("lm_head", "output")),
    layer=(("input_layernorm", "enter"),
           ("self_attn.q_proj", "column"), ("self_attn.k_proj", "column"), ("self_attn.v_proj", "column"),
           ("self_attn.o_proj", "row"),
           ("post_attention_layernorm", "enter"),
           ("mlp.gate_proj", "column"), ("mlp.up_proj", "column"), ("mlp.down_proj", "row")),
    divided=("self_attn.num_heads", "self_attn.num_key_value_heads"),
    partial_grads=("self_attn.q_norm.weight", "self_attn.k_norm.weight"),
    divisible=("num_attention_heads", "num_key_value_heads", "intermediate_size", "vocab_size"),
)
