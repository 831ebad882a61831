"""DeepSeek-V3: training, causality, MTP loss composition, aux-loss-free balancing."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, ops

import model_refs as ref
from mfcore.models import build_model, expert_load, load_model_config, update_expert_bias
from mfcore.models.deepseek_v3.model import DeepseekV3DecoderLayer
from test_model_llama import make_step, train_losses

EXECUTION_MODE = ms.PYNATIVE_MODE  # forward checks op by op; training steps compile with ms.jit
# tiny-deepseek-v3 with one dense and one MoE layer (+ the MTP module, MoE too) and a small vocabulary
SMALL = dict(load_model_config("tiny-deepseek-v3").__dict__, num_hidden_layers=2, vocab_size=512)


def _batch(b=2, s=10, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 512, (b, s)).astype(np.int32)
    return Tensor(ids), Tensor(np.roll(ids, -1, 1)), Tensor(np.ones((b, s), np.float32))


def test_trains_and_records_expert_load_across_bias_updates(in_tmp):
    model = build_model(SMALL)
    batch = _batch()
    step = make_step(model, 1e-2)
    losses = train_losses(model, 20, batch=batch, step=step)
    assert losses[-1] < 0.5 * losses[0]
    # the MoE layer and the MTP module's MoE each saw 20 steps x 20 tokens x top-2
    load = update_expert_bias(model)
    np.testing.assert_array_equal(load.sum(1), [20 * 20 * 2] * 2)
    assert not expert_load(model).any()
    train_losses(model, 1, batch=batch, step=step)  # the compiled step keeps counting after the reset
    np.testing.assert_array_equal(expert_load(model).sum(1), [40] * 2)


def test_bias_update_moves_towards_balance():
    model = build_model(SMALL)
    load = np.array([[10, 0, 5, 5, 5, 5, 5, 5]] * 2, np.float32)
    update_expert_bias(model, load, rate=0.01)
    bias = model.model.layers[1].mlp.gate.e_score_correction_bias.asnumpy()
    np.testing.assert_allclose(bias, 0.01 * np.sign(load[0].mean() - load[0]))
    with pytest.raises(ValueError, match="expected \\(2, 8\\)"):
        update_expert_bias(model, np.zeros((3, 8)))


def test_causality(in_tmp):
    model = build_model(SMALL)
    ids = _batch(seed=1)[0].asnumpy()
    changed = ids.copy()
    changed[:, 6:] = (changed[:, 6:] + 7) % 512
    a, b = model(Tensor(ids)).asnumpy(), model(Tensor(changed)).asnumpy()
    np.testing.assert_array_equal(a[:, :6], b[:, :6])


def test_mtp_module_and_loss_composition():
    cfg = dict(SMALL, aux_loss_alpha=0.01, mtp_loss_weight=0.3)
    model = build_model(cfg)
    ids, labels, _ = _batch(2, 8, seed=2)
    mask = np.ones((2, 8), np.float32)
    mask[1, :3] = 0
    total = float(model(ids, labels, Tensor(mask)).asnumpy())

    inner = model.model
    pos = Tensor(np.tile(np.arange(8, dtype=np.int32), (2, 1)))
    cos, sin = inner.rotary(pos)
    attn_mask = inner.attention_mask(8)
    hidden, aux = inner(ids, cos, sin, attn_mask)
    main = ref.cross_entropy(model.lm_head(inner.norm(hidden)).asnumpy().astype(np.float64), labels.asnumpy())
    # MTP depth 1 at position t sees token t+1 and predicts label t+1 (= token t+2)
    next_ids = np.concatenate([ids.asnumpy()[:, 1:], np.zeros((2, 1), np.int32)], 1)
    mtp = inner.layers[2]
    emb = inner.embed_tokens(Tensor(next_ids))
    h_mtp, mtp_aux = mtp(hidden, emb, cos, sin, attn_mask)
    # the module: eh_proj([enorm(emb); hnorm(h)]) then an ordinary decoder layer
    eps = cfg["rms_norm_eps"]
    joined = np.concatenate([ref.rmsnorm(emb.asnumpy(), mtp.enorm.weight.asnumpy(), eps),
                             ref.rmsnorm(hidden.asnumpy(), mtp.hnorm.weight.asnumpy(), eps)], -1)
    x = Tensor((joined @ mtp.eh_proj.weight.asnumpy().astype(np.float64)).astype(np.float32))
    expected_h, _ = DeepseekV3DecoderLayer.construct(mtp, x, cos, sin, attn_mask)
    np.testing.assert_allclose(h_mtp.asnumpy(), expected_h.asnumpy(), rtol=1e-4, atol=1e-4)
    mtp_logits = model.lm_head(mtp.shared_head(h_mtp)).asnumpy().astype(np.float64)
    next_labels = np.concatenate([labels.asnumpy()[:, 1:], np.zeros((2, 1), np.int32)], 1)
    next_mask = np.concatenate([mask[:, 1:], np.zeros((2, 1), np.float32)], 1)
    mtp_ce = ref.cross_entropy(mtp_logits, next_labels)
    aux_total = float(aux.asnumpy()) + float(mtp_aux.asnumpy())
    assert aux_total > 0
    expected = (main * mask).sum() + 0.3 * (mtp_ce * next_mask).sum() + aux_total * mask.sum()
    assert total == pytest.approx(expected, rel=1e-5)
