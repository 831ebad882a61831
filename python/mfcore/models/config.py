"""Model configurations: one dataclass per family, field names as in Hugging Face's ``config.json``.

A config is loaded from a shipped name (``llama3-8b``, ``tiny-deepseek-v3``, ...), a YAML file of ours,
a Hugging Face ``config.json`` (or the directory holding it) or a plain dict. Our own YAML and dicts
are strict (an unknown key is a typo and raises :class:`ConfigError`); a Hugging Face ``config.json``
carries many fields that do not shape the network (``torch_dtype``, ``use_cache``, ...), which are
ignored.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from importlib import resources
from typing import Any, Dict, Optional

import yaml

from mfcore.errors import ConfigError

ROPE_TYPES = ("default", "linear", "llama3", "yarn")


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

    def __post_init__(self):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None and self.num_attention_heads > 0:
            self.head_dim = self.hidden_size // self.num_attention_heads
        _validate_common(self)
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                              f"num_key_value_heads ({self.num_key_value_heads})")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")


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

    def __post_init__(self):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        _validate_common(self)
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


ModelConfig = Any  # LlamaConfig | DeepseekV3Config

_FAMILIES = {
    "llama": LlamaConfig,
    "qwen2": LlamaConfig,
    "qwen3": LlamaConfig,
    "mistral": LlamaConfig,
    "deepseek_v3": DeepseekV3Config,
}


def _validate_common(cfg) -> None:
    positive = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "max_position_embeddings")
    for name in positive:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if cfg.hidden_act != "silu":
        raise ConfigError(f"hidden_act {cfg.hidden_act!r} is not supported (only 'silu')")
    if not cfg.rms_norm_eps > 0:
        raise ConfigError(f"rms_norm_eps must be > 0, got {cfg.rms_norm_eps}")
    _validate_rope_scaling(cfg.rope_scaling)


MOE_DISPATCH_MODES = ("dropless", "capacity")


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


def _validate_rope_scaling(scaling) -> None:
    if scaling is None:
        return
    if not isinstance(scaling, dict):
        raise ConfigError(f"rope_scaling must be a mapping or null, got {scaling!r}")
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in ROPE_TYPES:
        raise ConfigError(f"rope_scaling type {kind!r} is not supported (one of {', '.join(ROPE_TYPES)})")
    if kind != "default" and not float(scaling.get("factor", 0)) > 0:
        raise ConfigError(f"rope_scaling {kind!r} needs a positive 'factor'")


def config_to_dict(cfg) -> Dict[str, Any]:
    """The config as a plain dict (HF ``config.json`` field names)."""
    return dataclasses.asdict(cfg)


def config_from_dict(data: Dict[str, Any], *, strict: bool = True, source: str = "config"):
    """Build the family's dataclass from ``data`` (``model_type`` picks the family, default llama)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of model fields, got {type(data).__name__}")
    data = _legacy_rope_keys(data)
    model_type = data.get("model_type", "llama")
    cls = _FAMILIES.get(model_type)
    if cls is None:
        raise ConfigError(f"{source}: unknown model_type {model_type!r} (known: {', '.join(sorted(_FAMILIES))})")
    if model_type == "deepseek_v3" and data.get("rope_interleave", True) is False:
        # mfcore's MLA rotates interleaved pairs, as DeepSeek's own code and transformers' default do
        raise ConfigError(f"{source}: rope_interleave: false is not supported (mfcore's MLA rotates "
                          "interleaved pairs, like DeepSeek-V3's reference code)")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if strict and unknown:
        raise ConfigError(f"{source}: unknown field(s) for {model_type}: {', '.join(unknown)}")
    kwargs = {k: v for k, v in data.items() if k in known}
    if model_type in ("qwen3",):
        kwargs.setdefault("qk_norm", True)
    if cls is LlamaConfig:
        kwargs["model_type"] = model_type
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _legacy_rope_keys(data: Dict[str, Any]) -> Dict[str, Any]:
    """transformers >= 5 writes RoPE settings as one ``rope_parameters`` mapping (theta inside);
    earlier versions, most Hub checkpoints and mfcore use ``rope_theta`` + ``rope_scaling``."""
    params = data.get("rope_parameters")
    if not isinstance(params, dict):
        return data
    data, params = dict(data), dict(params)
    del data["rope_parameters"]
    if "rope_theta" in params:
        data.setdefault("rope_theta", params.pop("rope_theta"))
    if params.get("rope_type", params.get("type", "default")) != "default":
        data.setdefault("rope_scaling", params)
    return data


def shipped_model_names():
    """Names of the model configs shipped in ``mfcore/configs/models``."""
    folder = resources.files("mfcore.configs").joinpath("models")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(path: str, source: str):
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None


def _read_json(path: str):
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None


def load_model_config(spec):
    """A model config from a shipped name, a YAML/JSON path, an HF model directory, a dict or a config."""
    if isinstance(spec, (LlamaConfig, DeepseekV3Config)):
        return spec
    if isinstance(spec, dict):
        return config_from_dict(dict(spec), strict=True)
    if not isinstance(spec, (str, os.PathLike)):
        raise ConfigError(f"model config must be a name, path or dict, got {type(spec).__name__}")
    spec = os.fspath(spec)
    if os.path.isdir(spec):
        path = os.path.join(spec, "config.json")
        if not os.path.isfile(path):
            raise ConfigError(f"{spec}: directory has no config.json")
        return config_from_dict(_read_json(path), strict=False, source=path)
    if os.path.isfile(spec):
        if spec.endswith(".json"):
            return config_from_dict(_read_json(spec), strict=False, source=spec)
        data = _read_yaml(spec, spec)
        return config_from_dict(data, strict=True, source=spec)
    names = shipped_model_names()
    if spec in names:
        ref = resources.files("mfcore.configs").joinpath("models", spec + ".yaml")
        with resources.as_file(ref) as path:
            return config_from_dict(_read_yaml(str(path), spec), strict=True, source=f"{spec}.yaml")
    raise ConfigError(f"model config {spec!r}: no such file and not a shipped name "
                      f"(shipped: {', '.join(names)})")
