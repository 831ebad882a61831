"""KV-cache decoding gives the logits of recomputing the whole sequence at every step (float32),
for Llama (GQA: per-head key/value caches) and DeepSeek-V3 (MLA: latent + rotary key caches), in a
batch whose prompts have different lengths (left padding must change nothing)."""
import numpy as np
import pytest

from mfcore.generation import CachedDecoder
from tests.generation.references import FAMILIES, FullForward, recompute_logits

NEW_TOKENS = 8


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_cached_decoding_equals_full_recompute(name, hf_models, in_tmp):
    model = hf_models[name]
    rng = np.random.default_rng(5)
    prompts = [rng.integers(0, 256, n).tolist() for n in (9, 4, 6)]
    decoder = CachedDecoder(model)
    forward = FullForward(model)
    width = max(map(len, prompts)) + NEW_TOKENS
    logits = decoder.prefill(prompts, NEW_TOKENS)
    sequences = [list(p) for p in prompts]
    for step in range(NEW_TOKENS):
        for row, seq in enumerate(sequences):
            expected = recompute_logits(forward, seq, width)
            np.testing.assert_allclose(logits[row], expected, rtol=0, atol=1e-5,
                                       err_msg=f"{name}: row {row}, step {step}")
        tokens = logits.argmax(-1)
        for seq, t in zip(sequences, tokens):
            seq.append(int(t))
        if step < NEW_TOKENS - 1:
            logits = decoder.step(tokens)
    assert decoder.slot == decoder.length - 1


def test_mla_cache_holds_the_latent_and_the_rotary_key(hf_models, in_tmp):
    """DeepSeek-V3's cache per layer: [b, L, kv_lora_rank] and [b, L, qk_rope_head_dim], nothing
    per head (the expanded keys/values would be heads * (nope + rope + v) wide)."""
    model = hf_models["deepseek_v3"]
    cfg = model.config
    decoder = CachedDecoder(model)
    decoder.prefill([[5, 6, 7]], 4)
    shapes = [tuple(c.shape) for c in decoder.caches]
    assert shapes == [(1, 7, cfg.kv_lora_rank), (1, 7, cfg.qk_rope_head_dim)] * cfg.num_hidden_layers


def test_gqa_cache_holds_the_key_value_heads_only(hf_models, in_tmp):
    model = hf_models["llama3_rope_scaled"]
    cfg = model.config
    assert cfg.num_key_value_heads < cfg.num_attention_heads
    decoder = CachedDecoder(model)
    decoder.prefill([[5, 6, 7]], 4)
    assert [tuple(c.shape) for c in decoder.caches] == \
        [(1, 7, cfg.num_key_value_heads, cfg.head_dim)] * (2 * cfg.num_hidden_layers)


def test_a_full_cache_is_refused(hf_models, in_tmp):
    decoder = CachedDecoder(hf_models["llama3_rope_scaled"])
    logits = decoder.prefill([[1, 2]], 2)   # slots for the prompt and two more tokens
    logits = decoder.step(logits.argmax(-1))
    logits = decoder.step(logits.argmax(-1))
    with pytest.raises(RuntimeError, match="cache is full"):
        decoder.step(logits.argmax(-1))
