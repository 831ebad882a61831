"""The chunked LM head + cross entropy gives the unchunked loss and gradients (float32, within 1e-6):
Llama with its own head and with tied embeddings, DeepSeek-V3 with MTP heads, the plain (non-kernel)
formulation, a pipeline's last stage; evaluation and micro batches where chunking would not save
memory (tokens <= hidden + chunk) keep the unchunked path."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from mfcore.errors import ConfigError
from mfcore.models import build_model, config_from_dict, config_to_dict, load_model_config, set_loss_chunk_tokens
from mfcore.models.stages import pipeline_stage

LLAMA = {"model_type": "llama", "vocab_size": 160, "hidden_size": 32, "intermediate_size": 64,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
DEEPSEEK = ("tiny-deepseek-v3", {"vocab_size": 160, "num_hidden_layers": 2})


def _config(name, overrides):
    cfg = load_model_config(dict(name) if isinstance(name, dict) else name)
    return config_from_dict({**config_to_dict(cfg), **overrides})


def _pair(name, overrides, chunk, dtype=ms.float32):
    """(unchunked, chunked) models with the same weights, in training mode."""
    models = []
    for tokens in (0, chunk):
        ms.set_seed(0)
        model = build_model(_config(name, overrides), dtype, loss_chunk_tokens=tokens)
        model.set_train(True)
        models.append(model)
    return models


def _batch(vocab, b=2, s=24):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, vocab, (b, s)).astype(np.int32)
    mask = np.ones((b, s), np.float32)
    mask[0, :3] = 0
    return Tensor(ids), Tensor(np.roll(ids, -1, 1)), Tensor(mask)


def _loss_and_grads(net, *inputs):
    params = net.trainable_params()
    loss, grads = ms.value_and_grad(net, None, params)(*inputs)
    return float(loss.asnumpy()), {p.name: g.asnumpy() for p, g in zip(params, grads)}


def _assert_same(got, want, tol=1e-6):
    loss, grads = got
    assert loss == pytest.approx(want[0], rel=tol)
    assert grads.keys() == want[1].keys()
    for name, g in want[1].items():
        scale = max(float(np.abs(g).max()), 1e-30)
        assert float(np.abs(grads[name] - g).max()) <= tol * scale, name


@pytest.mark.parametrize("name,overrides,chunk,seq", [
    (LLAMA, {}, 7, 24),                              # 48 tokens > hidden 32 + 7: chunks 7 x 6, 6
    (LLAMA, {"tie_word_embeddings": True}, 5, 24),
    (DEEPSEEK[0], {**DEEPSEEK[1], "num_nextn_predict_layers": 1}, 5, 70),   # hidden 128
])
def test_chunked_loss_and_gradients_equal_the_unchunked(in_tmp, name, overrides, chunk, seq):
    plain, chunked = _pair(name, overrides, chunk)
    assert chunked.chunked_loss.applies(2 * seq, True) and not plain.chunked_loss.applies(2 * seq, True)
    inputs = _batch(plain.config.vocab_size, s=seq)
    _assert_same(_loss_and_grads(chunked, *inputs), _loss_and_grads(plain, *inputs))


def test_the_plain_formulation_chunks_the_same(in_tmp, monkeypatch):
    monkeypatch.setenv("MFCORE_CPU_KERNELS", "0")   # the path Ascend and GPU take
    plain, chunked = _pair(LLAMA, {}, 4)
    assert not chunked.chunked_loss.fused.cross_entropy.use_cpu_kernel
    inputs = _batch(plain.config.vocab_size)
    _assert_same(_loss_and_grads(chunked, *inputs), _loss_and_grads(plain, *inputs))


def test_float16_products_chunk_to_the_same_result_within_float16_rounding(in_tmp):
    plain, chunked = _pair(LLAMA, {}, 8, ms.float16)
    inputs = _batch(plain.config.vocab_size)
    _assert_same(_loss_and_grads(chunked, *inputs), _loss_and_grads(plain, *inputs), tol=2e-3)


def test_the_last_pipeline_stage_chunks_like_the_model(in_tmp):
    plain, chunked = _pair(LLAMA, {"tie_word_embeddings": True}, 6)
    ids, labels, mask = _batch(plain.config.vocab_size)
    stages = [pipeline_stage(m, range(2), True, True) for m in (plain, chunked)]
    for stage in stages:
        stage.set_train(True)
    assert stages[1].chunked_loss.applies(48, stages[1].training)
    x = Tensor(np.zeros((), np.float32))
    loss_part = [_LossPart(stage) for stage in stages]
    _assert_same(_loss_and_grads(loss_part[1], x, ids, labels, mask),
                 _loss_and_grads(loss_part[0], x, ids, labels, mask))


class _LossPart(ms.nn.Cell):
    def __init__(self, stage):
        super().__init__(auto_prefix=False)
        self.stage = stage

    def construct(self, x, ids, labels, mask):
        return self.stage(x, ids, labels, mask)[1]


def test_chunking_only_where_it_saves_memory_and_never_in_evaluation(in_tmp):
    plain, chunked = _pair(LLAMA, {}, 16)                 # hidden 32
    assert not chunked.chunked_loss.applies(48, True)     # 48 <= 32 + 16: chunk buffers would not be smaller
    assert chunked.chunked_loss.applies(49, True)
    set_loss_chunk_tokens(chunked, 5)
    assert chunked.chunked_loss.applies(48, True) and not chunked.chunked_loss.applies(48, False)
    inputs = _batch(plain.config.vocab_size)
    chunked.set_train(False)
    plain.set_train(False)
    assert float(chunked(*inputs).asnumpy()) == float(plain(*inputs).asnumpy())


@pytest.mark.parametrize("bad", [-1, 2.5, True, "64"])
def test_a_bad_chunk_size_is_refused(bad):
    with pytest.raises(ConfigError, match="loss chunk tokens"):
        build_model(LLAMA, loss_chunk_tokens=bad)
