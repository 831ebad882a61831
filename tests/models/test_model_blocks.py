"""Each building block against the independent NumPy formulas of ``model_refs`` (fp32, 1e-5)."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, ops

import model_refs as ref
from mfcore.models import load_model_config
from mfcore.models.layers import MLP, Attention, MaskedCrossEntropySum, RMSNorm, RotaryEmbedding
from mfcore.models.layers.attention import AttentionMask
from mfcore.models.layers.mla import MultiLatentAttention
from mfcore.models.layers.moe import MoE, Router
from mfcore.models.layers.rope import Rotate, inverse_frequencies

TOL = dict(rtol=1e-5, atol=1e-5)


EXECUTION_MODE = ms.PYNATIVE_MODE  # single calls: no graph compile needed (see conftest.py)


@pytest.fixture(autouse=True)
def warm_up_pyboost(execution_mode):
    try:  # MindSpore 2.10's pyboost fails the first tensor + Python scalar under NumPy 2 (once)
        _ = Tensor(np.ones(1, np.float32)) + 1.0
    except SystemError:
        pass


def randomize(cell, rng, scale=0.2):
    """Give every parameter of ``cell`` random values (norm weights around 1)."""
    for name, p in cell.parameters_and_names():
        if name.endswith("expert_load"):
            continue
        values = rng.normal(0, scale, p.shape)
        if "norm" in name:
            values = 1.0 + values
        ops.assign(p, Tensor(values.astype(np.float32)))


def w(param):
    return param.asnumpy().astype(np.float64)


def positions(b, s):
    return np.tile(np.arange(s, dtype=np.int32), (b, 1))


def rotary_tables(dim, theta, scaling, pos, deepseek=False):
    cos, sin = RotaryEmbedding(dim, theta, scaling, deepseek)(Tensor(pos))
    return cos, sin


def test_rmsnorm():
    rng = np.random.default_rng(0)
    norm = RMSNorm(32, 1e-6)
    randomize(norm, rng)
    x = rng.normal(0, 3, (2, 5, 32)).astype(np.float32)
    np.testing.assert_allclose(norm(Tensor(x)).asnumpy(), ref.rmsnorm(x, w(norm.weight), 1e-6), **TOL)


def test_llama3_and_yarn_frequencies_match_the_reference_code():
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
    np.testing.assert_allclose(inverse_frequencies(128, 500000.0, scaling),
                               ref.llama3_freqs(128, 500000.0, 8.0, 1.0, 4.0, 8192), rtol=1e-12)
    yarn = {"type": "yarn", "factor": 40, "beta_fast": 32, "beta_slow": 1,
            "original_max_position_embeddings": 4096}
    np.testing.assert_allclose(inverse_frequencies(64, 10000.0, yarn),
                               ref.yarn_freqs(64, 10000.0, 40, 32, 1, 4096), rtol=1e-12)


@pytest.mark.parametrize("interleaved", [False, True])
def test_rotary_rotation(interleaved):
    rng = np.random.default_rng(1)
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16}
    x = rng.normal(0, 1, (2, 7, 3, 16)).astype(np.float32)
    pos = rng.integers(0, 500, (2, 7)).astype(np.int32)
    cos, sin = RotaryEmbedding(16, 10000.0, scaling, interleaved=interleaved)(Tensor(pos))
    ours = Rotate(16, interleaved)(Tensor(x), cos, sin).asnumpy()
    freqs = ref.llama3_freqs(16, 10000.0, 8.0, 1.0, 4.0, 16)
    if interleaved:
        expected = ref.rope_complex(x.astype(np.float64), pos, freqs)
    else:
        expected = ref.rope_half(x.astype(np.float64), pos, freqs)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("interleaved", [False, True])
def test_rotary_rotation_gradient_is_the_inverse_rotation(interleaved):
    """Rotate's hand-written backward (cos/sin broadcast over the heads): the rotation is orthogonal,
    so the gradient of ``sum(dy * rotate(x))`` is ``dy`` rotated back (the reference at -positions)."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (2, 5, 3, 16)).astype(np.float32)
    dy = rng.normal(0, 1, x.shape).astype(np.float32)
    pos = rng.integers(0, 300, (2, 5)).astype(np.int32)
    cos, sin = RotaryEmbedding(16, 10000.0, interleaved=interleaved)(Tensor(pos))
    rotate = Rotate(16, interleaved)

    def objective(t):
        return (rotate(t, cos, sin) * Tensor(dy)).sum()

    dx = ms.grad(objective)(Tensor(x)).asnumpy()
    freqs = 1.0 / 10000.0 ** (np.arange(0, 16, 2) / 16)
    back = ref.rope_complex if interleaved else ref.rope_half
    np.testing.assert_allclose(dx, back(dy.astype(np.float64), -pos, freqs), rtol=1e-5, atol=2e-5)


def _llama_config(**extra):
    base = {"model_type": "llama", "vocab_size": 64, "hidden_size": 48, "intermediate_size": 80,
            "num_hidden_layers": 1, "num_attention_heads": 6, "num_key_value_heads": 2,
            "rope_theta": 10000.0}
    base.update(extra)
    return load_model_config(base)


@pytest.mark.parametrize("extra", [{}, {"attention_bias": True, "qk_norm": True}])
def test_grouped_query_attention_with_document_mask(extra):
    rng = np.random.default_rng(2)
    cfg = _llama_config(**extra)
    attn = Attention(cfg)
    randomize(attn, rng)
    b, s, hd = 2, 6, cfg.head_dim
    x = rng.normal(0, 1, (b, s, 48)).astype(np.float32)
    doc = np.zeros((b, s, s), bool)
    doc[1, 3:, :3] = True  # batch row 1 holds two documents: 0..2 and 3..5
    pos = positions(b, s)
    pos[1, 3:] -= 3
    cos, sin = rotary_tables(hd, 10000.0, None, pos)
    mask = AttentionMask()(s, Tensor(doc))
    ours = attn(Tensor(x), cos, sin, mask).asnumpy()

    def proj(name):
        out = x @ w(getattr(attn, name).weight)
        return out + w(getattr(attn, name).bias) if cfg.attention_bias else out
    q = proj("q_proj").reshape(b, s, 6, hd)
    k = proj("k_proj").reshape(b, s, 2, hd)
    v = proj("v_proj").reshape(b, s, 2, hd)
    if cfg.qk_norm:
        q, k = ref.rmsnorm(q, w(attn.q_norm.weight), 1e-5), ref.rmsnorm(k, w(attn.k_norm.weight), 1e-5)
    freqs = 1.0 / 10000.0 ** (np.arange(0, hd, 2) / hd)
    q, k = ref.rope_half(q, pos, freqs), ref.rope_half(k, pos, freqs)
    ctx = ref.attention(q, k, v, hd ** -0.5, ref.causal(b, s) | doc)
    np.testing.assert_allclose(ours, ctx @ w(attn.o_proj.weight), **TOL)


def test_swiglu_mlp():
    rng = np.random.default_rng(3)
    mlp = MLP(16, 40)
    randomize(mlp, rng)
    x = rng.normal(0, 1, (3, 16)).astype(np.float32)
    expected = ref.swiglu_mlp(x, w(mlp.gate_proj.weight), w(mlp.up_proj.weight), w(mlp.down_proj.weight))
    np.testing.assert_allclose(mlp(Tensor(x)).asnumpy(), expected, **TOL)


def _deepseek_config(**extra):
    base = dict(load_model_config("tiny-deepseek-v3").__dict__)
    base.update(extra)
    return load_model_config(base)


@pytest.mark.parametrize("q_lora_rank", [None, 24])
def test_multi_head_latent_attention(q_lora_rank):
    rng = np.random.default_rng(4)
    scaling = {"type": "yarn", "factor": 4, "beta_fast": 32, "beta_slow": 1, "mscale": 1.0,
               "mscale_all_dim": 1.0, "original_max_position_embeddings": 8}
    cfg = _deepseek_config(q_lora_rank=q_lora_rank, rope_scaling=scaling, hidden_size=40,
                           num_attention_heads=3, num_key_value_heads=3, kv_lora_rank=12,
                           qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=6)
    mla = MultiLatentAttention(cfg)
    randomize(mla, rng)
    b, s, nh = 2, 5, 3
    x = rng.normal(0, 1, (b, s, 40)).astype(np.float32)
    pos = positions(b, s)
    cos, sin = rotary_tables(4, 10000.0, scaling, pos, deepseek=True)
    ours = mla(Tensor(x), cos, sin, AttentionMask()(s)).asnumpy()

    eps = cfg.rms_norm_eps
    if q_lora_rank:
        q = ref.rmsnorm(x @ w(mla.q_a_proj.weight), w(mla.q_a_layernorm.weight), eps) @ w(mla.q_b_proj.weight)
    else:
        q = x @ w(mla.q_proj.weight)
    q = q.reshape(b, s, nh, 12)
    latent = x @ w(mla.kv_a_proj_with_mqa.weight)
    kv = (ref.rmsnorm(latent[..., :12], w(mla.kv_a_layernorm.weight), eps) @ w(mla.kv_b_proj.weight))
    kv = kv.reshape(b, s, nh, 14)
    freqs = ref.yarn_freqs(4, 10000.0, 4, 32, 1, 8)
    q_pe = ref.rope_complex(q[..., 8:], pos, freqs)
    k_pe = np.repeat(ref.rope_complex(latent[..., None, 12:], pos, freqs), nh, axis=2)
    qf = np.concatenate((q[..., :8], q_pe), -1)
    kf = np.concatenate((kv[..., :8], k_pe), -1)
    mscale = 0.1 * 1.0 * np.log(4) + 1.0  # yarn_get_mscale(factor, mscale_all_dim), squared in the scale
    ctx = ref.attention(qf, kf, kv[..., 8:], 12 ** -0.5 * mscale ** 2, ref.causal(b, s))
    np.testing.assert_allclose(ours, ctx @ w(mla.o_proj.weight), **TOL)


def test_router_group_limited_top_k():
    rng = np.random.default_rng(5)
    cfg = _deepseek_config(n_routed_experts=16, n_group=4, topk_group=2, num_experts_per_tok=3,
                           hidden_size=24)
    router = Router(cfg)
    randomize(router, rng, 0.5)
    x = rng.normal(0, 1, (40, 24)).astype(np.float32)
    expert_idx, weights, scores = router(Tensor(x))
    expected, expected_scores = ref.route(x.astype(np.float64), w(router.weight),
                                          w(router.e_score_correction_bias), 4, 2, 3, 2.5)
    np.testing.assert_allclose(scores.asnumpy(), expected_scores, **TOL)
    idx = expert_idx.asnumpy()
    assert idx.dtype == np.int32 and (np.diff(idx, axis=1) > 0).all()   # distinct, ascending
    combine = np.zeros_like(expected)
    np.put_along_axis(combine, idx, weights.asnumpy(), axis=1)
    np.testing.assert_array_equal(combine > 0, expected > 0)
    np.testing.assert_allclose(combine, expected, **TOL)


def test_moe_combine_and_sequence_aux_loss():
    rng = np.random.default_rng(6)
    cfg = _deepseek_config(hidden_size=16, moe_intermediate_size=12, aux_loss_alpha=0.01)
    moe = MoE(cfg)
    randomize(moe, rng, 0.4)
    b, s = 2, 5
    x = rng.normal(0, 1, (b, s, 16)).astype(np.float32)
    out, aux = moe(Tensor(x))
    flat = x.reshape(-1, 16).astype(np.float64)
    combine, scores = ref.route(flat, w(moe.gate.weight), w(moe.gate.e_score_correction_bias),
                                cfg.n_group, cfg.topk_group, cfg.num_experts_per_tok, 2.5)
    e = moe.experts
    routed = sum(combine[:, i:i + 1] * ref.swiglu_mlp(flat, w(e.gate_proj.weight)[i], w(e.up_proj.weight)[i],
                                                      w(e.down_proj.weight)[i]) for i in range(8))
    sh = moe.shared_experts
    shared = ref.swiglu_mlp(flat, w(sh.gate_proj.weight), w(sh.up_proj.weight), w(sh.down_proj.weight))
    np.testing.assert_allclose(out.asnumpy(), (routed + shared).reshape(b, s, 16), **TOL)
    # DeepSeek-V3 eq. 17-20: f_i = N_r/(K_r T) * count_i, P_i = mean_t s'_{i,t}; per sequence
    sel = (combine > 0).reshape(b, s, 8)
    norm_scores = (scores / scores.sum(-1, keepdims=True)).reshape(b, s, 8)
    f = sel.sum(1) * 8 / (2 * s)
    expected_aux = 0.01 * (f * norm_scores.mean(1)).sum(-1).mean()
    assert float(aux.asnumpy()) == pytest.approx(expected_aux, rel=1e-5)
    np.testing.assert_array_equal(moe.expert_load.asnumpy(), sel.sum((0, 1)))


def test_cross_entropy_sum_and_its_gradient():
    rng = np.random.default_rng(7)
    logits = rng.normal(0, 3, (6, 11)).astype(np.float32)
    labels = rng.integers(0, 11, 6).astype(np.int32)
    mask = np.array([1, 0, 1, 1, 0, 1], np.float32)
    ce = MaskedCrossEntropySum()
    loss = ce(Tensor(logits), Tensor(labels), Tensor(mask))
    nll = ref.cross_entropy(logits.astype(np.float64), labels)
    assert float(loss.asnumpy()) == pytest.approx(float((nll * mask).sum()), rel=1e-5)
    grad = ms.grad(ce, grad_position=0)(Tensor(logits), Tensor(labels), Tensor(mask)).asnumpy()
    expected = (ref.softmax(logits.astype(np.float64)) - np.eye(11)[labels]) * mask[:, None]
    np.testing.assert_allclose(grad, expected, **TOL)
