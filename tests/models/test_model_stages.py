"""Pipeline stages cut from a built model: global parameter names, only the stage's layers, and
loss parts that add up to the whole model's loss (Llama 3, tied Llama, DeepSeek-V3 with MTP)."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from mfcore.models import build_model, load_model_config
from mfcore.models.stages import EMBEDDING, pipeline_stage, shares_embedding

EXECUTION_MODE = ms.PYNATIVE_MODE
LLAMA = {"model_type": "llama", "vocab_size": 128, "hidden_size": 32, "intermediate_size": 64,
         "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2}


def _model(name, **overrides):
    cfg = load_model_config(name) if isinstance(name, str) else load_model_config(dict(name))
    if overrides:
        from mfcore.models import config_from_dict, config_to_dict
        cfg = config_from_dict({**config_to_dict(cfg), **overrides})
    ms.set_seed(0)
    return build_model(cfg)


def _batch(vocab, b=2, s=8):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, vocab, (b, s)).astype(np.int32)
    mask = np.ones((b, s), np.float32)
    mask[0, :3] = 0
    return Tensor(ids), Tensor(np.roll(ids, -1, 1)), Tensor(mask)


def _cut(model, counts):
    stages, start = [], 0
    for k, n in enumerate(counts):
        stages.append(pipeline_stage(model, range(start, start + n), k == 0, k == len(counts) - 1))
        start += n
    return stages


CASES = [(LLAMA, {}, [2, 2]), (LLAMA, {"tie_word_embeddings": True}, [1, 2, 1]),
         ("tiny-deepseek-v3", {"vocab_size": 128, "num_hidden_layers": 3}, [1, 2]),
         ("tiny-deepseek-v3", {"vocab_size": 128, "num_hidden_layers": 3}, [2, 0, 1])]


@pytest.mark.parametrize("name,overrides,counts", CASES)
def test_stage_loss_parts_add_up_to_the_model_loss(name, overrides, counts):
    model = _model(name, **overrides)
    ids, labels, mask = _batch(model.config.vocab_size)
    want = float(model(ids, labels, mask).asnumpy())
    full_names = {p.name for p in model.get_parameters()}
    stages = _cut(model, counts)
    x, total = Tensor(np.zeros((), np.float32)), 0.0
    for stage in stages:
        x, part = stage(x, ids, labels, mask)
        total += float(part.asnumpy())
    assert total == pytest.approx(want, rel=1e-6)
    names = [[p.name for p in s.get_parameters()] for s in stages]
    assert set().union(*map(set, names)) == full_names   # global names, nothing lost
    for k, own in enumerate(names):                      # each stage holds its layers only
        layers = {int(n.split(".")[2]) for n in own if n.startswith("model.layers.")}
        start = sum(counts[:k])
        extra = set(range(model.config.num_hidden_layers, model.config.num_hidden_layers + 1)) \
            if k == len(counts) - 1 and hasattr(model, "num_mtp") else set()
        assert layers == set(range(start, start + counts[k])) | extra
    shared = [EMBEDDING in own for own in names]
    assert shared == [True] + [False] * (len(counts) - 2) + [shares_embedding(model)]
