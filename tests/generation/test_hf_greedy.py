"""Greedy generation equals transformers' ``generate(do_sample=False)`` token for token: 32 new
tokens for two left-padded prompts of different lengths, on the Llama 3 and DeepSeek-V3 interop
models (recorded by ``tools/make_generation_fixtures.py``; this test needs neither torch nor
transformers)."""
import json
import os

import pytest

import mfcore
from tests.generation.references import FAMILIES, FIXTURES


def _recorded(name):
    with open(os.path.join(FIXTURES, name, "greedy_generation.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_greedy_generation_equals_transformers(name, hf_models, in_tmp):
    recorded = _recorded(name)
    assert all(len(row) == 32 for row in recorded["new_tokens"])
    # the recording ignored end-of-sequence: so must we (eod_id=-1 matches no token)
    out = mfcore.generate(hf_models[name], None, recorded["prompts"], max_new_tokens=32, eod_id=-1)
    assert [c.tokens for c in out] == recorded["new_tokens"]
    assert all(c.finish_reason == "length" for c in out)
