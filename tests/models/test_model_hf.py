"""Hugging Face interchange: round trips, sharding, bfloat16 files, and clear errors."""
import json
import struct

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, ops

from mfcore.errors import CheckpointError, ConfigError
from mfcore.io.safetensors import read_safetensors
from mfcore.models import build_model
from mfcore.models.hf import from_pretrained, hf_state_dict, load_hf_state_dict, save_pretrained


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def deepseek():
    model = build_model("tiny-deepseek-v3")
    for layer in model.model.layers[1:]:  # a bias that is not all zeros must survive too
        bias = layer.mlp.gate.e_score_correction_bias
        ops.assign(bias, Tensor(np.linspace(-0.1, 0.1, 8).astype(np.float32)))
    return model


def test_hf_names_and_layouts(deepseek):
    tensors = hf_state_dict(deepseek)
    cfg = deepseek.config
    assert tensors["model.layers.1.mlp.experts.7.down_proj.weight"].shape == (cfg.hidden_size,
                                                                              cfg.moe_intermediate_size)
    assert tensors["model.layers.1.mlp.gate.weight"].shape == (8, cfg.hidden_size)
    q_b = deepseek.model.layers[0].self_attn.q_b_proj.weight.asnumpy()
    np.testing.assert_array_equal(tensors["model.layers.0.self_attn.q_b_proj.weight"], q_b.T)
    # the MTP module (layers.3) carries HF's copies of the shared embedding and head
    np.testing.assert_array_equal(tensors["model.layers.3.shared_head.head.weight"], tensors["lm_head.weight"])
    assert not any("expert_load" in k for k in tensors)


@pytest.mark.parametrize("shard_bytes", [None, 1_000_000])
def test_save_load_round_trip_is_bit_exact(deepseek, tmp_path, shard_bytes, in_tmp):
    kwargs = {} if shard_bytes is None else {"max_shard_bytes": shard_bytes}
    files = save_pretrained(deepseek, str(tmp_path / "out"), **kwargs)
    assert (len(files) == 1) == (shard_bytes is None)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["architectures"] == ["DeepseekV3ForCausalLM"] and config["n_group"] == 4
    loaded = from_pretrained(str(tmp_path / "out"))
    _assert_same(hf_state_dict(deepseek), hf_state_dict(loaded))


def _write_bf16(path, name, values):
    bits = (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    header = json.dumps({name: {"dtype": "BF16", "shape": list(values.shape),
                                "data_offsets": [0, bits.nbytes]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bits.tobytes())


def test_bfloat16_tensors_read_as_float32(tmp_path):
    values = np.array([[1.0, -2.5], [0.15625, 3.0e5]], np.float32)
    _write_bf16(tmp_path / "w.safetensors", "x", values)
    out = read_safetensors(str(tmp_path / "w.safetensors"))["x"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, values, rtol=2 ** -8)


def test_tied_llama_exports_no_lm_head_and_loads_back(tmp_path, in_tmp):
    cfg = {"model_type": "llama", "vocab_size": 40, "hidden_size": 16, "intermediate_size": 24,
           "num_hidden_layers": 1, "num_attention_heads": 2, "tie_word_embeddings": True}
    model = build_model(cfg)
    save_pretrained(model, str(tmp_path))
    loaded = from_pretrained(str(tmp_path))
    assert "lm_head.weight" not in hf_state_dict(loaded)
    _assert_same(hf_state_dict(model), hf_state_dict(loaded))


def test_missing_wrong_shaped_and_unknown_tensors_are_named(in_tmp):
    model = build_model("tiny-llama2")
    good = hf_state_dict(model)
    bad = dict(good)
    del bad["model.layers.2.mlp.up_proj.weight"]
    with pytest.raises(CheckpointError, match="missing 1 tensor.*layers.2.mlp.up_proj"):
        load_hf_state_dict(model, bad)
    bad = dict(good, **{"model.layers.0.self_attn.q_proj.weight": np.zeros((3, 3), np.float32)})
    with pytest.raises(CheckpointError, match=r"q_proj.weight' has shape \(3, 3\).*\(256, 256\)"):
        load_hf_state_dict(model, bad)
    bad = dict(good, **{"model.layers.9.mlp.up_proj.weight": np.zeros(1, np.float32)})
    with pytest.raises(CheckpointError, match="does not have.*layers.9"):
        load_hf_state_dict(model, bad)


def test_unusable_directories(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        from_pretrained(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="has no config.json"):
        from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 16,
                                                      "intermediate_size": 24, "num_hidden_layers": 1,
                                                      "num_attention_heads": 2, "vocab_size": 40}))
    with pytest.raises(CheckpointError, match="neither model.safetensors nor"):
        from_pretrained(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", 10 ** 9) + b"{}")
    with pytest.raises(CheckpointError, match="model.safetensors: header length"):
        from_pretrained(str(tmp_path))
