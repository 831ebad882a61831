"""Load a run config: YAML (shipped name or path) + ``base_config:`` inheritance + ``key=value``
overrides → a validated, typed :class:`~mfcore.config.schema.RunConfig`.

Every problem is a :class:`~mfcore.errors.ConfigError` that names the file and the key; an unknown
key suggests the nearest valid one. Sizes that cannot work together are refused here, before any
data or model is built.
"""
import dataclasses
import difflib
import math
import os
import typing
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import yaml

from mfcore.config.checks import check_config
from mfcore.config.schema import RunConfig
from mfcore.errors import ConfigError
from mfcore.io.atomic import write_text
from mfcore.models.config import is_explicit_path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"  # the shipped YAML files
BASE_KEY = "base_config"


# ----------------------------------------------------------------------------- shipped configs
def shipped_configs() -> Dict[str, Path]:
    """Shipped run configs by name: ``pretrain_llama3_8b.yaml`` is ``llama3-8b``."""
    out = {}
    for path in sorted(CONFIG_DIR.glob("pretrain_*.yaml")):
        out[path.stem[len("pretrain_"):].replace("_", "-")] = path
    return out


def resolve_config_path(name_or_path: Union[str, Path]) -> Path:
    """A path to an existing file, or the shipped config of that name (with or without ``pretrain_``)."""
    text = str(name_or_path)
    path = Path(text)
    shipped = shipped_configs()
    name = path.stem if path.suffix in (".yaml", ".yml") else text
    name = name.replace("_", "-")
    name = name[len("pretrain-"):] if name.startswith("pretrain-") else name
    explicit = is_explicit_path(text)
    if name in shipped and not explicit:  # a bare name means the shipped config
        if path.is_file():
            raise ConfigError(f"config '{text}' is ambiguous: it is a shipped config name and a file "
                              f"here; write ./{text} for the file")
        return shipped[name]
    if path.is_file():
        return path
    if name in shipped and "/" not in text and os.sep not in text:  # pretrain_x.yaml, not present here
        return shipped[name]
    near = difflib.get_close_matches(name, list(shipped), n=1)
    hint = f"; did you mean '{near[0]}'?" if near else f"; shipped configs: {', '.join(shipped)}"
    raise ConfigError(f"config '{text}' is neither a file nor a shipped config name{hint}")


# ----------------------------------------------------------------------------- YAML + inheritance
def _read_yaml(path: Path) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    return data


def _load_with_bases(path: Path, chain: tuple = ()) -> Dict[str, Any]:
    """The file's mapping merged over its ``base_config`` (a path relative to it, or a shipped name)."""
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path}: base_config cycle: {' -> '.join(str(p) for p in chain + (path,))}")
    data = _read_yaml(path)
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base_config must be a path or a shipped config name")
    base_path = path.parent / base
    if not base_path.is_file():
        base_path = resolve_config_path(base)
    return deep_merge(_load_with_bases(base_path, chain + (path,)), data)


def deep_merge(base: Dict[str, Any], top: Dict[str, Any]) -> Dict[str, Any]:
    """``top`` over ``base``; nested mappings merge key by key, everything else is replaced."""
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# ----------------------------------------------------------------------------- overrides
def parse_overrides(overrides: Sequence[str]) -> Dict[str, Any]:
    """``["training.train_steps=100", "model.overrides.num_hidden_layers=2"]`` → a nested mapping.

    Values are parsed as YAML scalars/lists (``true``, ``3e-4``, ``[a, b]``, ``null``)."""
    out: Dict[str, Any] = {}
    for item in overrides:
        dotted, sep, text = item.partition("=")
        parts = dotted.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise ConfigError(f"override '{item}' must look like section.key=value")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}' conflicts with an earlier override of '{p}'")
        node[parts[-1]] = value
    return out


# ----------------------------------------------------------------------------- typed construction
def _unknown_key(name: str, valid: List[str], where: str, source: str) -> ConfigError:
    near = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{_join(where, near[0])}'?" if near else f"; valid keys: {', '.join(valid)}"
    return ConfigError(f"{source}: unknown key '{_join(where, name)}'{hint}")


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _coerce(value: Any, tp: Any, where: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (converting int→float and '3e-4'→float)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where, source)
    bad = ConfigError(f"{source}: '{where}' must be {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad
        return _build(tp, value, where, source)
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            raise bad
        return [_coerce(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    return _coerce_scalar(value, tp, bad)


def _coerce_scalar(value: Any, tp: Any, bad: ConfigError) -> Any:
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(value) if isinstance(value, str) else _raise(bad)
        except ValueError:
            raise bad from None
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    raise bad


def _raise(err: Exception):
    raise err


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if typing.get_origin(tp) is Union:
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return f"{_type_name(inner[0])} or null"
    if typing.get_origin(tp) in (list, List):
        return "a list"
    if typing.get_origin(tp) in (dict, Dict) or dataclasses.is_dataclass(tp):
        return "a mapping"
    return names.get(tp, str(tp))


def _build(cls: type, data: Dict[str, Any], where: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in data.items():
        if name not in fields:
            raise _unknown_key(str(name), list(fields), where, source)
        path = _join(where, name)
        kwargs[name] = _coerce(value, hints[name], path, source)
        choices = fields[name].metadata.get("choices")
        if choices and kwargs[name] not in choices:
            raise ConfigError(f"{source}: '{path}' must be one of {', '.join(map(str, choices))}, "
                              f"got {kwargs[name]!r}")
    return cls(**kwargs)


# ----------------------------------------------------------------------------- public API
def load_config(path_or_name: Union[str, Path, None] = None, overrides: Sequence[str] = (),
                validate: bool = True) -> RunConfig:
    """The typed run config of a YAML file or shipped name, with ``section.key=value`` overrides."""
    data: Dict[str, Any] = {}
    source = "<defaults>"
    if path_or_name is not None:
        path = resolve_config_path(path_or_name)
        data = _load_with_bases(path)
        source = str(path)
    data = deep_merge(data, parse_overrides(overrides))
    if overrides:
        source = f"{source} (with overrides)"
    cfg = _build(RunConfig, data, "", source)
    if validate:
        check_config(cfg, source)
    return cfg


def config_from_dict(data: Dict[str, Any], source: str = "<dict>", validate: bool = True) -> RunConfig:
    """The typed run config of an in-memory mapping (tests, programmatic use)."""
    cfg = _build(RunConfig, data, "", source)
    if validate:
        check_config(cfg, source)
    return cfg


def config_to_dict(cfg: RunConfig) -> Dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (loadable again by :func:`load_config`)."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)


def write_resolved_config(cfg: RunConfig, output_dir: Union[str, Path]) -> Path:
    """Write ``config.yaml`` (the resolved config) into the output directory atomically."""
    out = Path(output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_text(str(out / "config.yaml"), dump_config(cfg))
    except OSError as e:
        raise ConfigError(f"{out}: cannot write the resolved config: {e.strerror}") from None
    return out / "config.yaml"


# ----------------------------------------------------------------------------- derived sizes
def grad_accum_steps(cfg: RunConfig) -> int:
    t = cfg.training
    return t.global_batch_size // (t.micro_batch_size * cfg.parallel.data)


def tokens_per_step(cfg: RunConfig) -> int:
    return cfg.training.global_batch_size * cfg.data.seq_length


def total_train_steps(cfg: RunConfig) -> int:
    if cfg.training.train_steps is not None:
        return cfg.training.train_steps
    return math.ceil(cfg.training.train_tokens / tokens_per_step(cfg))


def optional_path(value: Optional[str], default: Path) -> Path:
    return Path(value) if value else default
