"""Record ``transformers``' greedy generations on the HF interop fixtures (run rarely, by hand).

Needs ``torch`` and ``transformers`` (the ``bench`` extra) and the models that
``tools/make_hf_fixtures.py`` saved in ``tests/golden/hf_transformers/``::

    .venv/bin/python tools/make_generation_fixtures.py

For Llama 3 and DeepSeek-V3 it loads the saved directory with ``from_pretrained``, runs
``generate(do_sample=False)`` for 32 new tokens (end-of-sequence ignored, so all 32 are compared) on
a batch of two prompts of different lengths (left-padded, with the attention mask, as transformers
batches them), and writes ``greedy_generation.json`` beside the weights.
``tests/generation/test_hf_greedy.py`` must reproduce the tokens without torch or transformers.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden", "hf_transformers")
CASES = {"llama3_rope_scaled": 11, "deepseek_v3": 13}
NEW_TOKENS = 32
PAD = 0


def record(name: str, seed: int) -> dict:
    import torch
    import transformers

    path = os.path.join(FIXTURES, name)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(2, 256, size=n).tolist() for n in (12, 7)]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=NEW_TOKENS,
                             min_new_tokens=NEW_TOKENS, eos_token_id=None, pad_token_id=PAD, use_cache=True)
    new = out[:, width:].tolist()
    assert all(len(row) == NEW_TOKENS for row in new), new
    record = {"transformers": transformers.__version__, "torch": torch.__version__,
              "prompts": prompts, "new_tokens": new}
    with open(os.path.join(path, "greedy_generation.json"), "w") as f:
        json.dump(record, f, indent=1)
    return record


def main() -> int:
    for name, seed in CASES.items():
        print(name, json.dumps(record(name, seed)["new_tokens"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
