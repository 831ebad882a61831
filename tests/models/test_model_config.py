"""Model configs (shipped names, YAML, HF config.json, dicts), parameter counts and FLOPs."""
import json

import pytest

from mfcore.errors import ConfigError
from mfcore.models import (DeepseekV3Config, LlamaConfig, build_model, count_parameters,
                           flops_per_token, load_model_config, parameter_breakdown, shipped_model_names)


def test_shipped_names():
    assert {"llama2-7b", "llama3-8b", "llama3-70b", "deepseek-v3-671b", "tiny-llama2", "tiny-llama3",
            "tiny-deepseek-v3"} <= set(shipped_model_names())
    assert isinstance(load_model_config("llama3-70b"), LlamaConfig)
    cfg = load_model_config("deepseek-v3-671b")
    assert isinstance(cfg, DeepseekV3Config) and cfg.rope_scaling["type"] == "yarn"
    assert [cfg.is_moe_layer(i) for i in (0, 2, 3, 60)] == [False, False, True, True]


@pytest.mark.parametrize("name, expected", [
    ("llama2-7b", 6_738_415_616),
    ("llama3-8b", 8_030_261_248),
    ("llama3-70b", 70_553_706_496),
])
def test_llama_parameter_counts_match_published_figures(name, expected):
    assert count_parameters(name) == expected


def test_deepseek_v3_parameter_counts():
    parts = parameter_breakdown("deepseek-v3-671b")
    assert parts["main"] == 671_026_419_200          # the paper's 671B
    assert parts["mtp"] == 11_610_068_224            # the MTP module's own layers
    assert parts["total"] == parts["main"] + parts["mtp"]
    # HF stores the MTP module's (shared) embedding and head again: 2 x 129280 x 7168
    assert parts["hf_checkpoint"] == parts["total"] + 2 * 129_280 * 7168
    assert 36e9 < parts["active_matmul"] < 39e9     # ~37B activated per token (+ MTP)


@pytest.mark.parametrize("name", ["tiny-llama2", "tiny-llama3", "tiny-deepseek-v3",
                                  {"model_type": "deepseek_v3", "hidden_size": 32, "intermediate_size": 48,
                                   "moe_intermediate_size": 16, "num_hidden_layers": 2,
                                   "num_attention_heads": 2, "n_routed_experts": 4, "n_group": 2,
                                   "topk_group": 1, "num_experts_per_tok": 2, "q_lora_rank": None,
                                   "kv_lora_rank": 8, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4,
                                   "v_head_dim": 8, "first_k_dense_replace": 1, "vocab_size": 50,
                                   "attention_bias": True, "n_shared_experts": 2},
                                  {"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 48,
                                   "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 50,
                                   "attention_bias": True, "tie_word_embeddings": True}])
def test_counts_equal_the_built_models(name, in_tmp):
    model = build_model(name)
    weights = sum(p.size for n, p in model.parameters_and_names() if not n.endswith("expert_load"))
    assert weights == count_parameters(name)


def test_flops_per_token_for_llama_follows_6n_plus_attention():
    c = load_model_config("llama2-7b")
    seq = 4096
    matmul = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008) + 32000 * 4096
    attention = 12 * 32 * seq * 4096
    assert flops_per_token(c, seq) == 6 * matmul + attention


def test_hf_config_json_loads_and_ignores_runtime_fields(tmp_path):
    hf = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
          "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2,
          "num_key_value_heads": 2, "vocab_size": 100, "torch_dtype": "bfloat16", "use_cache": True,
          "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                           "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}
    (tmp_path / "config.json").write_text(json.dumps(hf))
    cfg = load_model_config(str(tmp_path))
    assert (cfg.head_dim, cfg.num_key_value_heads, cfg.vocab_size) == (16, 2, 100)


def test_our_yaml_is_strict(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("model_type: llama\nhidden_sise: 64\n")
    with pytest.raises(ConfigError, match=r"m\.yaml: unknown field\(s\) for llama: hidden_sise"):
        load_model_config(str(path))


@pytest.mark.parametrize("fields, message", [
    ({"num_attention_heads": 6, "num_key_value_heads": 4}, "multiple of num_key_value_heads"),
    ({"hidden_size": 0}, "hidden_size must be a positive integer"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu' is not supported"),
    ({"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}, "rope_scaling type 'dynamic'"),
    ({"model_type": "gpt2"}, "unknown model_type 'gpt2'"),
])
def test_bad_llama_fields_are_named(fields, message):
    base = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4}
    base.update(fields)
    with pytest.raises(ConfigError, match=message):
        load_model_config(base)


@pytest.mark.parametrize("fields, message", [
    ({"n_routed_experts": 10, "n_group": 4}, "must divide into n_group"),
    ({"num_experts_per_tok": 5}, "exceeds the experts in topk_group"),
    ({"scoring_func": "softmax"}, "scoring_func 'softmax'"),
    ({"moe_dispatch": "dropping"}, "moe_dispatch must be one of dropless, capacity, got 'dropping'"),
    ({"moe_dispatch": "capacity"}, "moe_dispatch 'capacity' needs capacity_factor > 0.*got capacity_factor None"),
    ({"moe_dispatch": "capacity", "capacity_factor": 0}, "needs capacity_factor > 0.*got capacity_factor 0"),
    ({"capacity_factor": 1.5}, r"capacity_factor \(1.5\) only applies to moe_dispatch 'capacity', but "
                               "moe_dispatch is 'dropless'"),
])
def test_bad_deepseek_fields_are_named(fields, message):
    base = dict(load_model_config("tiny-deepseek-v3").__dict__)
    base.update(fields)
    with pytest.raises(ConfigError, match=message):
        load_model_config(base)


def test_moe_dispatch_flows_from_run_overrides_and_through_config_json(tmp_path):
    """``model.overrides`` of a run reach the model config; config.json keeps capacity settings
    (harmless extra keys for transformers) and leaves the default dropless mode unwritten."""
    from mfcore.models.hf import _hf_config
    from mfcore.config.loader import load_config
    from mfcore.train.trainer import model_config_of
    run = load_config("pretrain_tiny_deepseek_v3", ["model.overrides.moe_dispatch=capacity",
                                                   "model.overrides.capacity_factor=1.25"])
    cfg = model_config_of(run)
    assert (cfg.moe_dispatch, cfg.capacity_factor) == ("capacity", 1.25)
    written = _hf_config(cfg)
    assert (written["moe_dispatch"], written["capacity_factor"]) == ("capacity", 1.25)
    (tmp_path / "config.json").write_text(json.dumps(written))
    assert load_model_config(str(tmp_path)) == cfg
    default = _hf_config(load_model_config("tiny-deepseek-v3"))
    assert "moe_dispatch" not in default and "capacity_factor" not in default
    (tmp_path / "config.json").write_text(json.dumps(default))
    assert load_model_config(str(tmp_path)).moe_dispatch == "dropless"


def test_unknown_name_lists_shipped_ones():
    with pytest.raises(ConfigError, match="not a shipped name.*tiny-llama3"):
        load_model_config("llama-9000")


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model_type: [llama\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_model_config(str(path))
