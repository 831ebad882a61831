"""The one table of model families. Adding a family: a folder beside ``llama/`` whose package
defines ``FAMILY`` (a :class:`~mfcore.models.family.ModelFamily`), and its name in ``FAMILIES``.
Everything else (config loading, counts, HF interchange, tensor parallelism, build) asks here."""
from mfcore.errors import ConfigError
from mfcore.models import deepseek_v3, llama
from mfcore.models.family import ModelFamily

FAMILIES = (llama.FAMILY, deepseek_v3.FAMILY)
_BY_TYPE = {model_type: family for family in FAMILIES for model_type in family.model_types}


def model_types():
    return sorted(_BY_TYPE)


def family_for_type(model_type: str, source: str = "config") -> ModelFamily:
    """The family of a Hugging Face ``model_type``."""
    family = _BY_TYPE.get(model_type)
    if family is None:
        raise ConfigError(f"{source}: unknown model_type {model_type!r} (known: {', '.join(model_types())})")
    return family


def family_of(config) -> ModelFamily:
    """The family of a config (or of a built model, through its ``config``)."""
    config = getattr(config, "config", config)
    family = _BY_TYPE.get(getattr(config, "model_type", None))
    if family is None or not isinstance(config, family.config_class):
        raise ConfigError(f"no model family for config of type {type(config).__name__}")
    return family


def is_model_config(obj) -> bool:
    return any(type(obj) is family.config_class for family in FAMILIES)
