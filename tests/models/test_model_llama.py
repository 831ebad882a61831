"""The Llama family: contract API, Hugging Face names, training on CPU, precision and recompute."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from mfcore.errors import ConfigError
from mfcore.models import build_model, load_model_config

ms.set_context(mode=ms.GRAPH_MODE)


def _batch(vocab, b=2, s=16, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, (b, s)).astype(np.int32)
    return Tensor(ids), Tensor(np.roll(ids, -1, 1)), Tensor(np.ones((b, s), np.float32))


def train_losses(model, steps, lr=3e-3, batch=None):
    """A plain compiled AdamW step on one fixed batch; returns the per-token losses."""
    ids, labels, mask = batch or _batch(model.config.vocab_size)
    opt = nn.AdamWeightDecay(model.trainable_params(), lr, weight_decay=0.0)
    grad_fn = ms.value_and_grad(model, None, opt.parameters)

    @ms.jit
    def step(ids, labels, mask):
        loss, grads = grad_fn(ids, labels, mask)
        opt(grads)
        return loss

    tokens = float(mask.asnumpy().sum())
    return [float(step(ids, labels, mask).asnumpy()) / tokens for _ in range(steps)]


def test_parameter_names_follow_hugging_face(in_tmp):
    model = build_model("tiny-llama3")
    names = [p.name for p in model.trainable_params()]
    assert names[0] == "model.embed_tokens.weight"
    assert "model.layers.3.self_attn.k_proj.weight" in names
    assert "model.layers.0.mlp.down_proj.weight" in names
    assert names[-2:] == ["model.norm.weight", "lm_head.weight"]
    cfg = model.config
    k_proj = model.model.layers[0].self_attn.k_proj.weight
    assert k_proj.shape == (cfg.hidden_size, cfg.num_key_value_heads * cfg.head_dim)


def test_logits_shape_and_loss_is_sum_over_masked_tokens(in_tmp):
    model = build_model("tiny-llama2")
    ids, labels, _ = _batch(4096, 2, 8)
    logits = model(ids)
    assert logits.shape == (2, 8, 4096) and logits.dtype == ms.float32
    z = logits.asnumpy().astype(np.float64).reshape(-1, 4096)
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    nll = lse - z[np.arange(16), labels.asnumpy().reshape(-1)]
    mask = np.zeros((2, 8), np.float32)
    mask[0, :5] = 1
    mask[1, 3:] = 1
    loss = float(model(ids, labels, Tensor(mask)).asnumpy())
    assert loss == pytest.approx(float((nll * mask.reshape(-1)).sum()), rel=1e-5)


def test_tiny_llama_trains(in_tmp):
    losses = train_losses(build_model("tiny-llama3"), 30)
    assert losses[-1] < 0.5 * losses[0]


def test_float16_compute_and_recompute_modes_train(in_tmp):
    for mode in ("full", "selective"):
        model = build_model("tiny-llama2", compute_dtype=ms.float16, recompute=mode)
        losses = train_losses(model, 8)
        assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_bfloat16_on_cpu_is_refused_clearly():
    with pytest.raises(ConfigError, match="bfloat16 is not available on CPU"):
        build_model("tiny-llama2", compute_dtype=ms.bfloat16)


def test_bad_recompute_mode():
    with pytest.raises(ConfigError, match="recompute"):
        build_model("tiny-llama2", recompute="some")


def test_tied_embeddings_use_the_table(in_tmp):
    cfg = load_model_config({"model_type": "llama", "vocab_size": 64, "hidden_size": 32,
                             "intermediate_size": 48, "num_hidden_layers": 1,
                             "num_attention_heads": 4, "tie_word_embeddings": True})
    model = build_model(cfg)
    names = [p.name for p in model.trainable_params()]
    assert "lm_head.weight" not in names
    ids, _, _ = _batch(64, 1, 4)
    hidden = model.model(ids).asnumpy()
    table = model.model.embed_tokens.weight.asnumpy()
    np.testing.assert_allclose(model(ids).asnumpy(), hidden @ table.T, rtol=1e-5, atol=1e-5)
