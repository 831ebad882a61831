"""Model rules of the MindSpore Transformers translation: ``model.model_config`` (Llama and
DeepSeek-V3 fields) and ``moe_config`` → ``model.name`` (the family) + ``model.overrides`` (Hugging
Face names), and the compute dtype."""
from typing import Any, List

from mfcore.migrate.translation import SourceConfig, Translation

MC = "model.model_config"
MOE = "moe_config"
NO_OFFSET = ("mfcore balances the layers over the stages (parallel.pipeline_layers gives explicit per-stage "
             "counts; their offsets count the MTP layers too, so they are not copied)")
LLAMA_SAME = {"vocab_size": "vocab_size", "hidden_size": "hidden_size", "num_layers": "num_hidden_layers",
              "num_heads": "num_attention_heads", "rms_norm_eps": "rms_norm_eps",
              "bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id",
              "max_position_embeddings": "max_position_embeddings", "intermediate_size": "intermediate_size",
              "tie_word_embeddings": "tie_word_embeddings"}
DEEPSEEK_SAME = {"kv_lora_rank": "kv_lora_rank", "q_lora_rank": "q_lora_rank", "qk_rope_head_dim": "qk_rope_head_dim",
                 "v_head_dim": "v_head_dim", "qk_nope_head_dim": "qk_nope_head_dim",
                 "mtp_depth": "num_nextn_predict_layers", "mtp_loss_factor": "mtp_loss_weight"}
MOE_SAME = {"expert_num": "n_routed_experts", "num_experts_chosen": "num_experts_per_tok",
            "shared_expert_num": "n_shared_experts", "routed_scaling_factor": "routed_scaling_factor",
            "norm_topk_prob": "norm_topk_prob", "first_k_dense_replace": "first_k_dense_replace",
            "moe_intermediate_size": "moe_intermediate_size", "n_group": "n_group", "topk_group": "topk_group"}


def _override(t: Translation, name: str, value: Any, src_key: str) -> None:
    t.set(f"model.overrides.{name}", value, src_key)


def model(src: SourceConfig, t: Translation) -> str:
    """model_config (+ moe_config) → model.name (the family) and model.overrides; returns the family."""
    kind = str(src.get(f"{MC}.type", "") or src.get("model.arch.type", ""))
    src.get("model.arch.type")
    deepseek = "deepseek" in kind.lower()
    t.set("model.name", "deepseek-v3-671b" if deepseek else "llama2-7b",
          f"{MC}.type {kind}: the {'DeepSeek-V3' if deepseek else 'Llama'} family; every field below overrides it")
    for ours, theirs in LLAMA_SAME.items():
        if src.has(f"{MC}.{ours}"):
            _override(t, theirs, src.get(f"{MC}.{ours}"), f"{MC}.{ours}")
    heads = src.get(f"{MC}.num_heads", 32)
    kv = src.get(f"{MC}.n_kv_heads")
    _override(t, "num_key_value_heads", kv or heads, f"{MC}.n_kv_heads" + ("" if kv else " (unset: num_heads)"))
    _override(t, "rope_theta", float(src.get(f"{MC}.theta", 10000.0)), f"{MC}.theta")
    if not src.has(f"{MC}.max_position_embeddings") and src.has(f"{MC}.seq_length"):
        _override(t, "max_position_embeddings", src.leaves[f"{MC}.seq_length"], f"{MC}.seq_length")
    _rope_scaling(src, t)
    _offset(src, t)
    _dtypes(src, t)
    if deepseek:
        _deepseek(src, t)
    else:
        hidden = src.leaves.get(f"{MC}.hidden_size", 4096)
        _override(t, "head_dim", hidden // heads, f"{MC}.hidden_size / num_heads")
        if not src.has(f"{MC}.intermediate_size"):
            _override(t, "intermediate_size", _llama_ffn(src, hidden),
                      f"{MC}.multiple_of/ffn_dim_multiplier, as LlamaFeedForward sizes it")
    return "deepseek" if deepseek else "llama"


def _llama_ffn(src: SourceConfig, hidden: int) -> int:
    """MindSpore Transformers' LlamaFeedForward hidden size when intermediate_size is not given."""
    dim = 4 * hidden
    multiplier = src.get(f"{MC}.ffn_dim_multiplier")
    if multiplier is not None:
        dim = int((multiplier + 0.01) * dim)
    dim = int(2 * dim / 3)
    multiple_of = src.get(f"{MC}.multiple_of", 256)
    return multiple_of * ((dim + multiple_of - 1) // multiple_of)


def _rope_scaling(src: SourceConfig, t: Translation) -> None:
    method = str(src.get(f"{MC}.extend_method", "None"))
    factor = src.get(f"{MC}.scaling_factor", 1.0)
    if method == "None":
        _override(t, "rope_scaling", None, f"{MC}.extend_method None: no RoPE scaling")
    elif method == "PI":
        _override(t, "rope_scaling", {"rope_type": "linear", "factor": float(factor)},
                  f"{MC}.extend_method PI with scaling_factor")
    else:
        t.unsupported(f"{MC}.extend_method", method, "only None and PI (linear) RoPE extension are translated")


def _offset(src: SourceConfig, t: Translation) -> None:
    offset = src.get(f"{MC}.offset", 0)
    values = offset if isinstance(offset, list) else [offset]
    if any(flat_values(values)):
        t.unsupported(f"{MC}.offset", offset, "per-stage layer offsets: " + NO_OFFSET)


def flat_values(values) -> List[Any]:
    out: List[Any] = []
    for v in values:
        out.extend(flat_values(v) if isinstance(v, list) else [v])
    return out


def _dtypes(src: SourceConfig, t: Translation) -> None:
    dtype = src.get(f"{MC}.compute_dtype", "float16")
    t.set("precision.compute_dtype", dtype, f"{MC}.compute_dtype")
    for name in ("param_init_type", "layernorm_compute_type", "softmax_compute_type", "rotary_dtype",
                 "router_dense_type"):
        value = src.get(f"{MC}.{name}")
        if value is not None and value != "float32":
            t.unsupported(f"{MC}.{name}", value, "mfcore keeps master weights, norms, softmax, RoPE and the "
                          "router in float32")
        elif value is not None:
            t.ignore(f"{MC}.{name}", value, "float32 is what mfcore uses")


def _deepseek(src: SourceConfig, t: Translation) -> None:
    for ours, theirs in DEEPSEEK_SAME.items():
        if src.has(f"{MC}.{ours}"):
            _override(t, theirs, src.get(f"{MC}.{ours}"), f"{MC}.{ours}")
    if not src.has(f"{MC}.mtp_depth"):
        _override(t, "num_nextn_predict_layers", 0, f"{MC}.mtp_depth unset: no MTP")
    for ours, theirs in MOE_SAME.items():
        if src.has(f"{MOE}.{ours}"):
            _override(t, theirs, src.get(f"{MOE}.{ours}"), f"{MOE}.{ours}")
    _groups(src, t)
    if src.get(f"{MOE}.use_gating_sigmoid", True) is not True:
        t.unsupported(f"{MOE}.use_gating_sigmoid", False, "mfcore's DeepSeek-V3 router scores with a sigmoid")
    balance = src.get(f"{MOE}.balance_via_topk_bias", False)
    rate = src.get(f"{MOE}.topk_bias_update_rate", 0.001)
    _override(t, "bias_update_rate", float(rate) if balance else 0.0,
              f"{MOE}.balance_via_topk_bias / topk_bias_update_rate")
    _aux_loss(src, t)
    cf = src.get(f"{MOE}.capacity_factor")
    if cf is not None:
        t.unsupported(f"{MOE}.capacity_factor", cf, "mfcore's MoE is dropless (no expert capacity limit)")
    z = src.get(f"{MOE}.z_loss_factor", 0.0)
    if z:
        t.unsupported(f"{MOE}.z_loss_factor", z, "mfcore has no router z-loss")


def _groups(src: SourceConfig, t: Translation) -> None:
    """Group-limited routing: MindSpore Transformers without n_group routes over all experts."""
    experts = t.values.get("model.overrides.n_routed_experts", (256, ""))[0]
    group = t.values.get("model.overrides.n_group", (None, ""))[0]
    if group is None or experts % group or experts // group < 2:
        if group is not None:
            t.unsupported(f"{MOE}.n_group", group, f"does not split expert_num {experts} into groups of >= 2 "
                          "experts; translated as one group (no group limit)")
        _override(t, "n_group", 1, f"{MOE}.n_group unset or unusable: one group, no group-limited routing")
        _override(t, "topk_group", 1, f"{MOE}.topk_group: with one group")


def _aux_loss(src: SourceConfig, t: Translation) -> None:
    factors = src.get(f"{MOE}.aux_loss_factors")
    types = src.get(f"{MOE}.aux_loss_types") or []
    legacy = src.get(f"{MOE}.aux_loss_factor")
    if legacy is not None and factors is None:
        factors, types = [legacy], ["expert"]
    elif legacy is not None:
        t.ignore(f"{MOE}.aux_loss_factor", legacy, "superseded by aux_loss_factors")
    alpha = float(sum(f for f, k in zip(factors or [], types) if k == "expert"))
    _override(t, "aux_loss_alpha", alpha, f"{MOE}.aux_loss_factors ({types})")
    _override(t, "seq_aux", True, "mfcore's balance loss is DeepSeek-V3's sequence-wise one")
    if alpha:
        t.unsupported(f"{MOE}.aux_loss_types", types, "their 'expert' balance loss is computed over the batch, "
                      "mfcore's (DeepSeek-V3's) per sequence; translated to aux_loss_alpha with seq_aux")
    for f, k in zip(factors or [], types):
        if k != "expert":
            t.unsupported(f"{MOE}.aux_loss_factors[{k}]", f, f"no {k!r} balance loss in mfcore")
