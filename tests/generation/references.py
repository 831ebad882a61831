"""Helpers of the generation tests: the HF interop models and a compiled full forward."""
import os

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "golden", "hf_transformers")
FAMILIES = {"llama3_rope_scaled": "Llama 3 (GQA)", "deepseek_v3": "DeepSeek-V3 (MLA)"}


class FullForward(nn.Cell):
    """The training forward (no cache) compiled once: ``ids [b, s]`` → logits ``[b, s, vocab]``."""

    def __init__(self, model):
        super().__init__(auto_prefix=False)
        self.model = model

    @ms.jit
    def construct(self, input_ids):
        return self.model(input_ids)


def recompute_logits(forward, tokens, width):
    """Logits after ``tokens``, recomputing the whole sequence: the causal forward over a buffer of
    ``width`` columns (zeros past the end cannot reach earlier positions) keeps one compiled shape."""
    buf = np.zeros((1, width), np.int32)
    buf[0, :len(tokens)] = tokens
    return forward(Tensor(buf)).asnumpy()[0, len(tokens) - 1]
