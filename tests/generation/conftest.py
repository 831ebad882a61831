"""Fixtures of the generation tests."""
import os

import pytest

from tests.generation.references import FAMILIES, FIXTURES


@pytest.fixture(scope="module")
def hf_models():
    from mfcore.models.hf import from_pretrained
    return {name: from_pretrained(os.path.join(FIXTURES, name)) for name in FAMILIES}
