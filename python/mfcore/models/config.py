"""Loading model configurations (each family's dataclass lives in its folder, field names as in
Hugging Face's ``config.json``; ``model_type`` picks the family through :mod:`mfcore.models.registry`).

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
from importlib import resources
from typing import Any, Dict

import yaml

from mfcore.errors import ConfigError
from mfcore.models.deepseek_v3.config import DeepseekV3Config  # noqa: F401  (re-exported)
from mfcore.models.llama.config import LlamaConfig  # noqa: F401  (re-exported)
from mfcore.models.registry import family_for_type, is_model_config

ModelConfig = Any  # the config dataclass of a registered family (LlamaConfig, DeepseekV3Config, ...)


def config_to_dict(cfg) -> Dict[str, Any]:
    """The config as a plain dict (HF ``config.json`` field names)."""
    return dataclasses.asdict(cfg)


def config_from_dict(data: Dict[str, Any], *, strict: bool = True, source: str = "config"):
    """Build the family's dataclass from ``data`` (``model_type`` picks the family, default llama)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of model fields, got {type(data).__name__}")
    data = _legacy_rope_keys(data)
    model_type = data.get("model_type", "llama")
    family = family_for_type(model_type, source)
    cls = family.config_class
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if strict and unknown:
        raise ConfigError(f"{source}: unknown field(s) for {model_type}: {', '.join(unknown)}")
    kwargs = family.adapt_fields(model_type, data, {k: v for k, v in data.items() if k in known}, source)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def apply_overrides(config, overrides: Dict[str, Any], source: str = "model.overrides"):
    """``config`` with ``overrides`` (HF field names) applied, derived fields derived again.

    A field the base derived (``head_dim`` = hidden_size / heads, ``num_key_value_heads`` = heads)
    follows the overridden fields it comes from. A base value that was set explicitly (it differs
    from what its inputs give) is not guessed at: the overrides must restate it."""
    config = load_model_config(config)
    if not overrides:
        return config
    if not isinstance(overrides, dict):
        raise ConfigError(f"{source}: expected a mapping of model fields, got {type(overrides).__name__}")
    base = config_to_dict(config)
    merged = {**base, **overrides}
    derived_fields = getattr(type(config), "DERIVED", {})
    as_derived = config_from_dict({k: v for k, v in base.items() if k not in derived_fields}, source=source)
    for field, inputs in derived_fields.items():
        changed = [i for i in inputs if i in overrides and overrides[i] != base[i]]
        if field in overrides or not changed:
            continue
        if base[field] != getattr(as_derived, field):
            raise ConfigError(
                f"{source}: changes {' and '.join(changed)}, but the base model sets {field}: {base[field]} "
                f"explicitly (not derived from {', '.join(inputs)}); give model.overrides.{field} too")
        merged[field] = None  # derive it again from the new values
    return config_from_dict(merged, strict=True, source=source)


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


def is_explicit_path(text: str) -> bool:
    """Whether a config argument names a file or directory rather than a shipped config: it holds a
    path separator or ends in a config file extension. A bare name means the shipped config."""
    return "/" in text or os.sep in text or text.endswith((".yaml", ".yml", ".json"))


def _shipped_model_config(name: str):
    local = name if os.path.isfile(name) else os.path.join(name, "config.json")
    if os.path.isfile(local):
        raise ConfigError(f"model config {name!r} is ambiguous: it is a shipped model config, and "
                          f"{local} exists here too; write ./{name} for the local one (a bare name "
                          "means the shipped config)")
    ref = resources.files("mfcore.configs").joinpath("models", name + ".yaml")
    with resources.as_file(ref) as path:
        return config_from_dict(_read_yaml(str(path), name), strict=True, source=f"{name}.yaml")


def load_model_config(spec):
    """A model config from a shipped name, a YAML/JSON path, an HF model directory, a dict or a config."""
    if is_model_config(spec):
        return spec
    if isinstance(spec, dict):
        return config_from_dict(dict(spec), strict=True)
    if not isinstance(spec, (str, os.PathLike)):
        raise ConfigError(f"model config must be a name, path or dict, got {type(spec).__name__}")
    spec = os.fspath(spec)
    names = shipped_model_names()
    if spec in names and not is_explicit_path(spec):
        return _shipped_model_config(spec)
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
    raise ConfigError(f"model config {spec!r}: no such file and not a shipped name "
                      f"(shipped: {', '.join(names)})")
