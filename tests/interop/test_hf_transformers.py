"""mfcore against Hugging Face ``transformers`` itself: load what it saved, reproduce its logits.

The fixtures in ``tests/golden/hf_transformers/`` were made by ``tools/make_hf_fixtures.py`` with
transformers 5.23 (see ``cases.json``): tiny Llama 3 (GQA, llama3 RoPE scaling), Llama 2 (tied
embeddings) and DeepSeek-V3 (MLA, yarn RoPE, MoE with shared experts and group-limited routing)
models with random weights, saved by ``save_pretrained``, with their float32 logits on fixed ids.
"""
import json
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from mfcore.models.hf import from_pretrained, save_pretrained

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "golden", "hf_transformers")
with open(os.path.join(FIXTURES, "cases.json")) as _f:
    CASES = json.load(_f)["cases"]


def _logits(model, ids):
    return model(Tensor(ids.astype(np.int32))).asnumpy()


def _expected(name):
    with np.load(os.path.join(FIXTURES, name, "expected_logits.npz")) as z:
        return z["input_ids"], z["logits"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_logits_equal_transformers(name, in_tmp):
    ids, expected = _expected(name)
    model = from_pretrained(os.path.join(FIXTURES, name))
    got = _logits(model, ids)
    assert got.shape == expected.shape
    # float32 on both sides; different summation orders leave ~1e-6 relative differences
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))


@pytest.mark.parametrize("name", sorted(CASES))
def test_export_of_an_import_loads_back_to_the_same_logits(name, in_tmp):
    """HF -> mfcore -> HF layout again -> mfcore: the logits do not move."""
    ids, expected = _expected(name)
    save_pretrained(from_pretrained(os.path.join(FIXTURES, name)), "exported")
    np.testing.assert_array_equal(_logits(from_pretrained("exported"), ids),
                                  _logits(from_pretrained(os.path.join(FIXTURES, name)), ids))


def test_transformers_5_rope_parameters_are_read(tmp_path):
    """transformers >= 5 keeps theta and scaling in ``rope_parameters``; they must not be ignored."""
    from mfcore.models.config import load_model_config

    cfg = load_model_config(os.path.join(FIXTURES, "llama3_rope_scaled"))
    assert cfg.rope_theta == 500000.0
    assert cfg.rope_scaling["rope_type"] == "llama3" and cfg.rope_scaling["factor"] == 8.0
    assert "rope_theta" not in cfg.rope_scaling


def test_deepseek_without_mtp_weights_builds_without_mtp(in_tmp, caplog):
    """transformers saves no MTP weights although its config.json says one MTP layer."""
    with open(os.path.join(FIXTURES, "deepseek_v3", "config.json")) as f:
        assert json.load(f)["num_nextn_predict_layers"] == 1
    with caplog.at_level("WARNING", logger="mfcore.models"):
        model = from_pretrained(os.path.join(FIXTURES, "deepseek_v3"))
    assert model.config.num_nextn_predict_layers == 0
    assert "MTP" in caplog.text


def test_non_interleaved_deepseek_rope_is_refused(tmp_path):
    from mfcore.errors import ConfigError
    from mfcore.models.config import load_model_config

    with open(os.path.join(FIXTURES, "deepseek_v3", "config.json")) as f:
        data = json.load(f)
    data["rope_interleave"] = False
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="rope_interleave"):
        load_model_config(str(tmp_path))
