"""The Llama family's config (Llama 2/3, and Qwen2/3 and Mistral, which share its shape)."""
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, Optional, Tuple

from mfcore.errors import ConfigError
from mfcore.models.config_rules import validate_common

MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral")


@dataclass
class LlamaConfig:
    """Llama 2 / Llama 3 (and Qwen2/3-style options: ``attention_bias``, ``qk_norm``)."""

    model_type: str = "llama"
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: Optional[int] = None
    head_dim: Optional[int] = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: Optional[Dict[str, Any]] = None
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    initializer_range: float = 0.02
    bos_token_id: Optional[int] = None
    eos_token_id: Optional[Any] = None

    #: fields that default to a value derived from others (field -> the fields it is derived from)
    DERIVED: ClassVar[Dict[str, Tuple[str, ...]]] = {
        "num_key_value_heads": ("num_attention_heads",),
        "head_dim": ("hidden_size", "num_attention_heads")}

    def __post_init__(self):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None and self.num_attention_heads > 0:
            self.head_dim = self.hidden_size // self.num_attention_heads
        validate_common(self)
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                              f"num_key_value_heads ({self.num_key_value_heads})")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")

def adapt_fields(model_type: str, data: Dict[str, Any], kwargs: Dict[str, Any], source: str) -> Dict[str, Any]:
    """The dataclass arguments ``kwargs`` taken from ``data`` of ``model_type``: the model type is kept
    (it picks the HF architecture on export), and Qwen3 normalises q and k per head by default."""
    kwargs = dict(kwargs, model_type=model_type)
    if model_type == "qwen3":
        kwargs.setdefault("qk_norm", True)
    return kwargs
