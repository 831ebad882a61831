"""MindSpore Transformers run YAML (``run_mindformer.py --config``) → the equivalent mfcore config.

The rules live in :mod:`mfcore.migrate.mindformers_model` (model_config, moe_config) and
:mod:`mfcore.migrate.mindformers_rules` (parallelism, batches, optimizer, data, steps, the rest).

Every leaf key of the source ends up in exactly one place: an mfcore key (with a comment naming the
source key), the *ignored* list (keys that only tune Ascend/MindSpore internals, inference or
evaluation) or the *no equivalent* list (with why); a key no rule knows is reported as not understood,
never dropped. The flags of ``run_mindformer.py`` (``--train_dataset_dir``, ``--use_parallel``,
``--run_mode``, ``--load_checkpoint``, ``--resume_training``) are applied to the source first, as
``run_mindformer.py`` does.
"""
import copy
import fnmatch
import os
from typing import Any, Dict, Optional

from mfcore.errors import ConfigError
from mfcore.migrate.ignored_keys import IGNORED
from mfcore.migrate.translation import SourceConfig, Translation

MARKERS = ("trainer", "parallel_config", "runner_config")
FLAGS = ("train_dataset_dir", "use_parallel", "run_mode", "load_checkpoint", "resume_training")


def looks_like_mindformers(data: Any) -> bool:
    """A MindSpore Transformers run config: ``trainer:``, ``parallel_config`` or ``runner_config``
    sections, or a ``model.model_config``."""
    if not isinstance(data, dict):
        return False
    model = data.get("model")
    return any(k in data for k in MARKERS) or (isinstance(model, dict) and "model_config" in model)


def apply_flags(data: Dict[str, Any], flags: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """``run_mindformer.py``'s command-line flags written into the source config, as it does."""
    data = copy.deepcopy(data)
    for name, value in (flags or {}).items():
        if value is None:
            continue
        if name not in FLAGS:
            raise ConfigError(f"unknown run_mindformer.py flag --{name}; known: {', '.join(FLAGS)}")
        if name == "train_dataset_dir":
            loader = data.setdefault("train_dataset", {}).setdefault("data_loader", {})
            if loader.get("type") == "BlendedMegatronDatasetDataLoader":
                loader.setdefault("config", {})["data_path"] = ["1", value]
            else:
                loader["dataset_dir"] = value
        else:
            data[name] = _flag_value(name, value)
    return data


def _flag_value(name: str, value: Any) -> Any:
    if name in ("use_parallel", "resume_training") and isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise ConfigError(f"--{name} must be True or False, got {value!r}")
        return value.lower() == "true"
    return value


def translate(data: Dict[str, Any], source: str = "<mindformers config>",
              flags: Optional[Dict[str, Any]] = None) -> Translation:
    """The mfcore translation of the MindSpore Transformers config ``data``."""
    src = SourceConfig(apply_flags(data, flags))
    t = Translation(source)
    run_mode = src.get("run_mode", "train")
    if run_mode not in ("train", "finetune"):
        raise ConfigError(f"{source}: run_mode {run_mode!r}: mf-train trains (run_mode train or finetune)")
    from mfcore.migrate import mindformers_model as M
    from mfcore.migrate import mindformers_rules as R
    M.model(src, t)
    R.parallel(src, t)
    R.batches(src, t)
    R.optimizer(src, t)
    R.data(src, t)
    R.steps(src, t)
    R.recompute(src, t)
    R.callbacks(src, t)
    R.run_section(src, t)
    for key, value in src.unread():
        why = _ignored_reason(key)
        if why is not None:
            t.ignore(key, value, why)
        else:
            t.unsupported(key, value, "not understood by the importer (no mfcore equivalent known)")
    return t


def _ignored_reason(key: str) -> Optional[str]:
    for pattern, why in IGNORED:
        if fnmatch.fnmatchcase(key, pattern):
            return why
    return None


def translate_file(path: str, flags: Optional[Dict[str, Any]] = None) -> Translation:
    import yaml
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not looks_like_mindformers(data):
        raise ConfigError(f"{path}: not a MindSpore Transformers config (no trainer:, parallel_config, "
                          "runner_config or model.model_config section)")
    return translate(data, os.fspath(path), flags)


def write_translation(path: str, out: str, flags: Optional[Dict[str, Any]] = None) -> Translation:
    """``mf-train import-config``: the commented mfcore YAML of ``path`` written to ``out``."""
    t = translate_file(path, flags)
    tmp = f"{out}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(t.to_yaml())
        os.replace(tmp, out)
    except OSError as e:
        raise ConfigError(f"{out}: cannot write the translated config: {e.strerror}") from None
    return t
