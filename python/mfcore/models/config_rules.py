"""Field rules every model family's config shares: positive sizes, the activation, RoPE scaling."""
from mfcore.errors import ConfigError

ROPE_TYPES = ("default", "linear", "llama3", "yarn")


def validate_common(cfg) -> None:
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
    validate_rope_scaling(cfg.rope_scaling)


def validate_rope_scaling(scaling) -> None:
    if scaling is None:
        return
    if not isinstance(scaling, dict):
        raise ConfigError(f"rope_scaling must be a mapping or null, got {scaling!r}")
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in ROPE_TYPES:
        raise ConfigError(f"rope_scaling type {kind!r} is not supported (one of {', '.join(ROPE_TYPES)})")
    if kind != "default" and not float(scaling.get("factor", 0)) > 0:
        raise ConfigError(f"rope_scaling {kind!r} needs a positive 'factor'")


