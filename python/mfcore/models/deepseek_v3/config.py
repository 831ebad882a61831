"""The DeepSeek-V3 config (multi-head latent attention, sigmoid-routed MoE, multi-token prediction)."""
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, Optional, Tuple

from mfcore.errors import ConfigError
from mfcore.models.config_rules import validate_common

MODEL_TYPES = ("deepseek_v3",)


@dataclass
class DeepseekV3Config:
    """DeepSeek-V3: multi-head latent attention, sigmoid-routed MoE, multi-token prediction.

    Training-only fields that Hugging Face's file does not have: ``bias_update_rate`` (the
    aux-loss-free balancing step, gamma in the paper), ``mtp_loss_weight`` (lambda),
    ``moe_dispatch`` (``dropless``: every routed token is computed; ``capacity``: each expert takes
    at most ``ceil(capacity_factor * tokens * num_experts_per_tok / n_routed_experts)`` tokens of a
    micro batch and drops the rest, as MindSpore Transformers' ``capacity_factor``) and
    ``capacity_factor`` (capacity mode only). ``aux_loss_alpha`` with ``seq_aux`` is the
    sequence-wise balance loss (0 disables it).
    """

    model_type: str = "deepseek_v3"
    vocab_size: int = 129280
    hidden_size: int = 7168
    intermediate_size: int = 18432
    moe_intermediate_size: int = 2048
    num_hidden_layers: int = 61
    num_nextn_predict_layers: int = 1
    num_attention_heads: int = 128
    num_key_value_heads: Optional[int] = None
    n_shared_experts: int = 1
    n_routed_experts: int = 256
    routed_scaling_factor: float = 2.5
    kv_lora_rank: int = 512
    q_lora_rank: Optional[int] = 1536
    qk_rope_head_dim: int = 64
    v_head_dim: int = 128
    qk_nope_head_dim: int = 128
    topk_method: str = "noaux_tc"
    n_group: int = 8
    topk_group: int = 4
    num_experts_per_tok: int = 8
    moe_layer_freq: int = 1
    first_k_dense_replace: int = 3
    norm_topk_prob: bool = True
    scoring_func: str = "sigmoid"
    hidden_act: str = "silu"
    max_position_embeddings: int = 163840
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: Optional[Dict[str, Any]] = None
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    initializer_range: float = 0.02
    aux_loss_alpha: float = 0.0
    seq_aux: bool = True
    bias_update_rate: float = 0.001
    mtp_loss_weight: float = 0.3
    moe_dispatch: str = "dropless"
    capacity_factor: Optional[float] = None
    bos_token_id: Optional[int] = None
    eos_token_id: Optional[Any] = None

    DERIVED: ClassVar[Dict[str, Tuple[str, ...]]] = {"num_key_value_heads": ("num_attention_heads",)}

    def __post_init__(self):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        validate_common(self)
        _validate_moe_dispatch(self.moe_dispatch, self.capacity_factor)
        if self.scoring_func != "sigmoid":
            raise ConfigError(f"scoring_func {self.scoring_func!r} is not supported (DeepSeek-V3 uses 'sigmoid')")
        if self.topk_method != "noaux_tc":
            raise ConfigError(f"topk_method {self.topk_method!r} is not supported (use 'noaux_tc')")
        if self.n_routed_experts % self.n_group:
            raise ConfigError(f"n_routed_experts ({self.n_routed_experts}) must divide into n_group ({self.n_group})")
        per_group = self.n_routed_experts // self.n_group
        if not 1 <= self.topk_group <= self.n_group:
            raise ConfigError(f"topk_group ({self.topk_group}) must be in [1, n_group={self.n_group}]")
        if self.num_experts_per_tok > self.topk_group * per_group:
            raise ConfigError(f"num_experts_per_tok ({self.num_experts_per_tok}) exceeds the experts in "
                              f"topk_group={self.topk_group} groups of {per_group}")
        if per_group < 2:
            raise ConfigError("each expert group needs at least 2 experts (group score = sum of its top 2)")
        if self.qk_rope_head_dim % 2:
            raise ConfigError(f"qk_rope_head_dim must be even, got {self.qk_rope_head_dim}")
        if not 0 <= self.first_k_dense_replace <= self.num_hidden_layers:
            raise ConfigError(f"first_k_dense_replace ({self.first_k_dense_replace}) out of range")

    def is_moe_layer(self, index: int) -> bool:
        """Whether decoder layer ``index`` has a routed MoE block (as in the reference code)."""
        return (self.n_routed_experts > 0 and index >= self.first_k_dense_replace
                and index % self.moe_layer_freq == 0)

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim



def adapt_fields(model_type: str, data: Dict[str, Any], kwargs: Dict[str, Any], source: str) -> Dict[str, Any]:
    """The dataclass arguments ``kwargs`` taken from ``data`` (a ``config.json`` or our YAML); refuses
    what mfcore's layers do not compute."""
    if data.get("rope_interleave", True) is False:
        # mfcore's MLA rotates interleaved pairs, as DeepSeek's own code and transformers' default do
        raise ConfigError(f"{source}: rope_interleave: false is not supported (mfcore's MLA rotates "
                          "interleaved pairs, like DeepSeek-V3's reference code)")
    return kwargs


MOE_DISPATCH_MODES = ("dropless", "capacity")


def expert_capacity(tokens, top_k, num_experts, capacity_factor):
    """Pairs one expert may take from ``tokens`` in capacity mode (at least 1, at most every token):
    ``capacity_factor`` times its even share (MindSpore Transformers' and Megatron's capacity)."""
    return max(1, min(tokens, math.ceil(capacity_factor * tokens * top_k / num_experts)))


def local_expert_rows(local_experts, sources, tokens, top_k, num_experts, capacity_factor=None):
    """Under expert parallelism: the most (token, expert) pairs ``local_experts`` of one rank can
    get from ``sources`` ranks of ``tokens`` tokens each. A token picks ``top_k`` distinct experts,
    so at most ``min(top_k, local_experts)`` of them are here; in capacity mode (``capacity_factor``
    given) each source sends an expert at most its capacity over its own tokens. Static shapes must
    hold this worst case (Megatron's all-gather dispatcher, with dynamic shapes, keeps the actual
    count); the dispatcher and the planner both use it."""
    rows = sources * tokens * min(top_k, local_experts)
    if capacity_factor is not None:
        rows = min(rows, sources * local_experts * expert_capacity(tokens, top_k, num_experts, capacity_factor))
    return rows


def _validate_moe_dispatch(mode, capacity_factor) -> None:
    if mode not in MOE_DISPATCH_MODES:
        raise ConfigError(f"moe_dispatch must be one of {', '.join(MOE_DISPATCH_MODES)}, got {mode!r}")
    if mode == "dropless" and capacity_factor is not None:
        raise ConfigError(f"capacity_factor ({capacity_factor}) only applies to moe_dispatch 'capacity', "
                          "but moe_dispatch is 'dropless' (set moe_dispatch: capacity, or "
                          "capacity_factor: null)")
    if mode == "capacity":
        if isinstance(capacity_factor, bool) or not isinstance(capacity_factor, (int, float)) \
                or not capacity_factor > 0:
            raise ConfigError(f"moe_dispatch 'capacity' needs capacity_factor > 0 (e.g. 1.5), "
                              f"got capacity_factor {capacity_factor!r}")
