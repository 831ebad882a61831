"""The Llama family: contract API, Hugging Face names, training on CPU, precision and recompute."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from mfcore.errors import ConfigError
from mfcore.models import build_model, load_model_config

# Forward checks run op by op (no compile); training steps are compiled with ms.jit.
EXECUTION_MODE = ms.PYNATIVE_MODE
SMALL = {"model_type": "llama", "vocab_size": 256, "hidden_size": 64, "intermediate_size": 96,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}


def _batch(vocab, b=2, s=16, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, (b, s)).astype(np.int32)
    return Tensor(ids), Tensor(np.roll(ids, -1, 1)), Tensor(np.ones((b, s), np.float32))


def make_step(model, lr=3e-3):
    """A plain compiled AdamW step: ``step(ids, labels, mask)`` → summed loss."""
    opt = nn.AdamWeightDecay(model.trainable_params(), lr, weight_decay=0.0)
    grad_fn = ms.value_and_grad(model, None, opt.parameters)

    @ms.jit
    def step(ids, labels, mask):
        loss, grads = grad_fn(ids, labels, mask)
        opt(grads)
        return loss

    return step


def train_losses(model, steps, lr=3e-3, batch=None, step=None):
    """Per-token losses of ``steps`` compiled AdamW steps on one fixed batch."""
    ids, labels, mask = batch or _batch(model.config.vocab_size)
    step = step or make_step(model, lr)
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
    losses = train_losses(build_model("tiny-llama3"), 20)
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("dtype, mode", [(ms.float16, "full"), (ms.float32, "selective")])
def test_compute_dtype_and_recompute_modes_train(dtype, mode, in_tmp):
    model = build_model(SMALL, compute_dtype=dtype, recompute=mode)
    losses = train_losses(model, 15, lr=1e-2)
    assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]


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


def _tiny(**extra):
    cfg = {"model_type": "llama", "vocab_size": 48, "hidden_size": 32, "intermediate_size": 40,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
    cfg.update(extra)
    return build_model(cfg)


def test_causality_later_tokens_do_not_change_earlier_logits(in_tmp):
    model = build_model("tiny-llama3")
    ids = np.random.default_rng(3).integers(0, 4096, (2, 12)).astype(np.int32)
    changed = ids.copy()
    changed[:, 7:] = (changed[:, 7:] + 1) % 4096
    a, b = model(Tensor(ids)).asnumpy(), model(Tensor(changed)).asnumpy()
    np.testing.assert_array_equal(a[:, :7], b[:, :7])
    assert np.abs(a[:, 7:] - b[:, 7:]).max() > 1e-3


def test_document_mask_makes_packed_documents_independent(in_tmp):
    model = build_model("tiny-llama3")
    rng = np.random.default_rng(4)
    first, second = rng.integers(0, 4096, 5), rng.integers(0, 4096, 7)
    packed = np.concatenate([first, second]).astype(np.int32)[None]
    mask = np.triu(np.ones((12, 12), bool), 1)
    mask[5:, :5] = True  # the second document does not see the first
    pos = np.concatenate([np.arange(5), np.arange(7)]).astype(np.int32)[None]
    both = model(Tensor(packed), None, None, Tensor(pos), Tensor(mask[None])).asnumpy()
    alone = model(Tensor(second.astype(np.int32)[None])).asnumpy()
    np.testing.assert_allclose(both[0, 5:], alone[0], rtol=1e-5, atol=1e-5)


def test_gradient_matches_finite_differences(in_tmp):
    model = _tiny(attention_bias=True, qk_norm=True)
    ids, labels, _ = _batch(48, 2, 6, seed=5)
    mask = Tensor(np.array([[1, 1, 1, 0, 1, 1], [0, 1, 1, 1, 1, 1]], np.float32))
    params = {p.name: p for p in model.trainable_params()}
    grads = ms.grad(model, grad_position=None, weights=list(params.values()))(ids, labels, mask)
    grads = dict(zip(params, grads))
    rng = np.random.default_rng(6)
    for name in ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                 "model.layers.1.self_attn.k_norm.weight", "model.layers.0.self_attn.v_proj.bias",
                 "model.layers.1.mlp.up_proj.weight"):
        param = params[name]
        base = param.asnumpy().copy()
        direction = rng.normal(0, 1, base.shape).astype(np.float32)
        direction /= np.linalg.norm(direction)
        eps = 1e-2
        values = []
        for sign in (1, -1):
            param.set_data(Tensor(base + sign * eps * direction))
            values.append(float(model(ids, labels, mask).asnumpy()))
        param.set_data(Tensor(base))
        numeric = (values[0] - values[1]) / (2 * eps)
        analytic = float((grads[name].asnumpy() * direction).sum())
        assert analytic == pytest.approx(numeric, rel=2e-2, abs=2e-3), name
