"""DeepSeek-V3's tensor-parallel plan (Megatron-LM's and MindSpore Transformers' split).

MLA: the low-rank down projections (``q_a_proj``, ``kv_a_proj_with_mqa``) and their norms are
replicated inside the TP region; the up projections (``q_b_proj``, ``kv_b_proj``, or ``q_proj``
without a q LoRA) are column-parallel by heads, ``o_proj`` row-parallel; ``num_heads`` is divided
from outside. The decoupled RoPE key comes out of the replicated ``kv_a_proj_with_mqa``, so every
rank holds it and broadcasts it to its own heads. Each rank back-propagates through its heads only,
so the replicated down projections and norms get partial gradients (summed over the TP group).

Dense layers (the first ``first_k_dense_replace``): the MLP split like Llama's (gate/up column,
down row). MoE layers: the router and the routed experts are replicated whole (expert tensor
parallelism 1) and see the full hidden state, so their gradients are full on every rank: the
post-attention norm does NOT enter the TP region (its backward AllReduce would add the routed
experts' input gradient once per rank); only the shared experts' input enters it, and they are
split like a Llama MLP. Under sequence parallelism the MoE runs on the gathered sequence
(``full_sequence``) and the norm in front of it on sequence shards. With expert parallelism
(Megatron's layout, sequence parallelism required) the MoE runs on the sequence shard instead: the
router (``sequence``: partial gradients) routes this rank's tokens, the routed experts are spread over
the expert-parallel group (:mod:`mfcore.parallel.expert_parallel`), and the shared experts gather the
sequence on entry and reduce-scatter it on exit like any sequence-parallel MLP.

MTP modules are decoder layers with ``enorm``/``hnorm``/``eh_proj`` (replicated, on the residual
stream) and ``shared_head.norm`` (enters the region in front of the shared, vocabulary-split head).
"""
from mfcore.models.family import TensorParallelPlan

_MLA = (("input_layernorm", "enter"),
        ("self_attn.q_proj", "column"), ("self_attn.q_b_proj", "column"),
        ("self_attn.kv_b_proj", "column"), ("self_attn.o_proj", "row"))

_MTP = (("enorm", "sequence"), ("hnorm", "sequence"), ("eh_proj", "sequence"),
        ("shared_head.norm", "enter"))

_DENSE = (("post_attention_layernorm", "enter"),
          ("mlp.gate_proj", "column"), ("mlp.up_proj", "column"), ("mlp.down_proj", "row"))

_MOE = (("post_attention_layernorm", "sequence"),
        ("mlp.shared_experts.gate_proj", "column"), ("mlp.shared_experts.up_proj", "column"),
        ("mlp.shared_experts.down_proj", "row"), ("mlp.shared_experts", "enter_input"),
        ("mlp.gate", "sequence"), ("mlp", "full_sequence"))

PLAN = TensorParallelPlan(
    model=(("model.embed_tokens", "vocab_embedding"), ("model.norm", "enter"), ("lm_head", "output")),
    layer=_MLA + _MTP,
    layer_variants=(("mlp.experts", _MOE), ("mlp.gate_proj", _DENSE)),
    divided=("self_attn.num_heads",),
    partial_grads=tuple(f"self_attn.{name}" for name in (
        "q_a_proj.weight", "q_a_proj.bias", "q_a_layernorm.weight",
        "kv_a_proj_with_mqa.weight", "kv_a_proj_with_mqa.bias", "kv_a_layernorm.weight")),
    divisible=("num_attention_heads", "vocab_size"),
)
