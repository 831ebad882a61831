"""The host side of cached decoding: one object per generation that owns the caches and feeds the
two compiled graphs (prefill over the padded prompts, then one token per step).

Prompts are left-padded to one length so every row writes the same cache slot at each step;
``key_valid`` hides the padding and positions count real tokens only, so a padded row computes what
it would alone.
"""
import os

import mindspore as ms
import numpy as np
from mindspore import Tensor

from mfcore.errors import ConfigError


def _family(model):
    """(cached forward cell class, cache shape function) for the model's family."""
    from mfcore.models.config import DeepseekV3Config, LlamaConfig
    config = getattr(model, "config", None)
    if isinstance(config, DeepseekV3Config):
        from mfcore.generation.deepseek_decode import DeepseekV3CachedForward, deepseek_cache_shapes
        return DeepseekV3CachedForward, deepseek_cache_shapes
    if isinstance(config, LlamaConfig):
        from mfcore.generation.llama_decode import LlamaCachedForward, llama_cache_shapes
        return LlamaCachedForward, llama_cache_shapes
    raise ConfigError(f"no cached decoder for model {type(model).__name__} (Llama and DeepSeek-V3 only)")


class CachedDecoder:
    """``prefill(prompts)`` → logits of each prompt's next token; ``step(tokens)`` → logits of the
    token after ``tokens``. Both return numpy float32 ``[b, vocab]``."""

    def __init__(self, model):
        cell, self._shapes = _family(model)
        if ms.get_context("device_target") == "CPU":
            # graphs on the calling thread, as the trainer runs them (mfcore.train.trainer.
            # host_blocking_run): else the Python thread spin-waits and takes a core from the kernels
            os.environ.setdefault("MS_DEV_HOST_BLOCKING_RUN", "1")
        self.model = model
        self._prefill = cell(model, prefill=True)
        self._decode = cell(model, prefill=False)
        self.caches = None

    def prefill(self, prompts, max_new_tokens):
        """Left-pad ``prompts`` (lists of token ids) and run them; the cache has room for
        ``max_new_tokens`` more tokens."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ConfigError("every prompt needs at least one token")
        b, width = len(prompts), max(len(p) for p in prompts)
        self.length = width + max_new_tokens
        ids = np.zeros((b, width), np.int32)
        valid = np.zeros((b, self.length), np.float32)
        for row, p in enumerate(prompts):
            ids[row, width - len(p):] = p
            valid[row, width - len(p):] = 1.0
        valid[:, width:] = 1.0
        self.lengths = np.array([len(p) for p in prompts], np.int64)
        positions = np.maximum(np.arange(width)[None, :] - (width - self.lengths)[:, None], 0)
        self.key_valid = Tensor(valid)
        self.slot = self.width = width
        empty = tuple(Tensor(np.zeros(s, np.float32)) for s in self._shapes(self.model, b, self.length))
        logits, self.caches = self._prefill(Tensor(ids), Tensor(positions.astype(np.int32)),
                                            Tensor(np.arange(width, dtype=np.int32)), self.key_valid, *empty)
        return logits.asnumpy()

    def step(self, tokens):
        """Append one token per row (``tokens [b]``) and return the next logits."""
        if self.caches is None:
            raise RuntimeError("prefill() first")
        if self.slot >= self.length:
            raise RuntimeError(f"the cache is full ({self.length} slots)")
        b = len(self.lengths)
        ids = np.asarray(tokens, np.int32).reshape(b, 1)
        positions = (self.lengths + (self.slot - self.width)).reshape(b, 1)  # real tokens before it
        logits, self.caches = self._decode(Tensor(ids), Tensor(positions.astype(np.int32)),
                                           Tensor(np.array([self.slot], np.int32)), self.key_valid,
                                           *self.caches)
        self.slot += 1
        return logits.asnumpy()
