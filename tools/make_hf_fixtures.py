"""Write the Hugging Face interop fixtures of ``tests/golden/hf_transformers/`` (run rarely, by hand).

Needs ``torch`` and ``transformers`` (the ``bench`` extra: ``pip install -e .[bench]``)::

    .venv/bin/python tools/make_hf_fixtures.py

For each tiny architecture, ``transformers`` builds a model with seeded random weights (biases and
router corrections made non-zero so that they matter), saves it with ``save_pretrained`` (the
``config.json`` + ``model.safetensors`` a user downloads from the Hub), and stores its float32 logits
on fixed token ids. ``tests/interop/test_hf_transformers.py`` loads the directories with mfcore's
``from_pretrained`` and must reproduce those logits, without needing torch or transformers.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden", "hf_transformers")
VOCAB, SEQ = 256, 24

LLAMA3 = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=False,
              rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 16},
              rope_theta=500000.0)
LLAMA2_TIED = dict(vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=3,
                   num_key_value_heads=3, max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=True,
                   rope_theta=10000.0)
DEEPSEEK_V3 = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
                   num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1,
                   n_routed_experts=8, num_experts_per_tok=2, n_group=4, topk_group=2, first_k_dense_replace=1,
                   routed_scaling_factor=2.5, norm_topk_prob=True, kv_lora_rank=32, q_lora_rank=48,
                   qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16, max_position_embeddings=512,
                   rms_norm_eps=1e-6, tie_word_embeddings=False, rope_theta=10000.0,
                   rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128,
                                 "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0})


def _randomise(model, seed: int) -> None:
    """Weights well away from the init (std 0.08), non-zero router biases: every path must matter."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.05 * torch.randn(b.shape, generator=g))


def make(name: str, kind: str, fields: dict, seed: int) -> dict:
    import torch
    import transformers

    config_cls, model_cls = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "deepseek_v3": (transformers.DeepseekV3Config, transformers.DeepseekV3ForCausalLM),
    }[kind]
    torch.manual_seed(seed)
    model = model_cls(config_cls(**fields)).float().eval()
    _randomise(model, seed)
    out = os.path.join(OUT, name)
    model.save_pretrained(out, safe_serialization=True)
    ids = np.random.default_rng(seed).integers(0, VOCAB, size=(2, SEQ)).astype(np.int64)
    with torch.no_grad():
        logits = model(torch.from_numpy(ids)).logits.float().numpy()
    np.savez_compressed(os.path.join(out, "expected_logits.npz"), input_ids=ids, logits=logits)
    return {"architecture": model_cls.__name__, "seed": seed, "logits_abs_mean": float(np.abs(logits).mean())}


def main() -> int:
    import transformers

    os.makedirs(OUT, exist_ok=True)
    made = {
        "llama3_rope_scaled": make("llama3_rope_scaled", "llama", LLAMA3, 1),
        "llama2_tied": make("llama2_tied", "llama", LLAMA2_TIED, 2),
        "deepseek_v3": make("deepseek_v3", "deepseek_v3", DEEPSEEK_V3, 3),
    }
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"transformers": transformers.__version__, "cases": made}, f, indent=1)
    print(json.dumps(made, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
