"""``apply_overrides``: derived fields follow the fields they come from; explicit base values that
the overrides would contradict are refused. And a bare shipped name means the shipped config even
when a local directory has that name."""
import json
import os

import pytest

from mfcore.errors import ConfigError
from mfcore.models import apply_overrides, count_parameters, load_model_config


def test_head_dim_is_derived_again_after_width_overrides():
    # the "160M" recipe: llama2-7b shape with GPT-2 small width
    cfg = apply_overrides("llama2-7b", {"hidden_size": 768, "num_attention_heads": 12,
                                         "num_hidden_layers": 12, "intermediate_size": 2048})
    assert (cfg.head_dim, cfg.num_key_value_heads) == (64, 12)
    h, v, n = 768, 32000, 12
    per_layer = 4 * h * h + 3 * h * 2048 + 2 * h
    assert count_parameters(cfg) == 2 * v * h + n * per_layer + h


def test_unchanged_inputs_keep_the_base_values():
    cfg = apply_overrides("tiny-llama3", {"num_hidden_layers": 2})
    base = load_model_config("tiny-llama3")
    assert (cfg.head_dim, cfg.num_key_value_heads, cfg.num_hidden_layers) == (base.head_dim, 4, 2)


def test_an_explicit_base_value_is_not_guessed():
    # llama3-8b sets num_key_value_heads: 8 (grouped-query attention) explicitly
    with pytest.raises(ConfigError, match=r"num_attention_heads.*num_key_value_heads: 8 explicitly.*"
                                          r"model.overrides.num_key_value_heads"):
        apply_overrides("llama3-8b", {"num_attention_heads": 16})
    cfg = apply_overrides("llama3-8b", {"num_attention_heads": 16, "num_key_value_heads": 4})
    assert (cfg.head_dim, cfg.num_key_value_heads) == (256, 4)
    qwen_like = {"hidden_size": 64, "num_attention_heads": 4, "head_dim": 32, "intermediate_size": 8,
                 "num_hidden_layers": 1, "vocab_size": 10}
    with pytest.raises(ConfigError, match="head_dim: 32 explicitly"):
        apply_overrides(qwen_like, {"hidden_size": 128})
    assert apply_overrides(qwen_like, {"hidden_size": 128, "head_dim": 16}).head_dim == 16


def test_inconsistent_explicit_override_is_refused_by_name():
    with pytest.raises(ConfigError, match="num_attention_heads .12. must be a multiple of num_key_value_heads .8."):
        apply_overrides("llama3-8b", {"num_attention_heads": 12, "num_key_value_heads": 8})
    with pytest.raises(ConfigError, match="unknown field"):
        apply_overrides("tiny-llama3", {"hidden_sise": 64})


def test_deepseek_kv_heads_follow_the_heads():
    cfg = apply_overrides("tiny-deepseek-v3", {"num_attention_heads": 8})
    assert cfg.num_key_value_heads == 8


def test_bare_shipped_name_beats_a_local_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkdir("tiny-llama3")  # e.g. run.output_dir named after the config
    assert load_model_config("tiny-llama3").hidden_size == 256
    with open(os.path.join("tiny-llama3", "config.json"), "w") as f:
        json.dump({"model_type": "llama", "hidden_size": 64, "intermediate_size": 8, "vocab_size": 10,
                   "num_hidden_layers": 1, "num_attention_heads": 4}, f)
    with pytest.raises(ConfigError, match=r"'tiny-llama3' is ambiguous.*write ./tiny-llama3"):
        load_model_config("tiny-llama3")
    assert load_model_config("./tiny-llama3").hidden_size == 64
    assert load_model_config(str(tmp_path / "tiny-llama3")).hidden_size == 64
