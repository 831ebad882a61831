"""Choosing the next token from float32 logits ``[b, vocab]`` on the host: greedy, or sampling with
temperature, top-k and top-p (nucleus) from a seeded NumPy generator.

Greedy takes the first maximum, as ``torch.argmax`` and ``transformers`` do. With sampling the
filters apply in transformers' order: temperature, then top-k, then top-p; top-p keeps the smallest
set of most likely tokens whose probability reaches ``p`` (at least one token).
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from mfcore.errors import ConfigError


@dataclass
class SamplingOptions:
    temperature: float = 0.0   # 0: greedy
    top_k: int = 0             # 0: no top-k filter
    top_p: float = 1.0         # 1: no nucleus filter
    seed: Optional[int] = None

    def __post_init__(self):
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def filtered_probabilities(logits: np.ndarray, options: SamplingOptions) -> np.ndarray:
    """Softmax of ``logits / temperature`` with everything outside top-k / top-p set to 0."""
    scaled = logits.astype(np.float64) / options.temperature
    if 0 < options.top_k < scaled.shape[-1]:
        kth = np.sort(scaled, axis=-1)[:, -options.top_k][:, None]
        scaled = np.where(scaled < kth, -np.inf, scaled)
    probs = np.exp(scaled - scaled.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    if options.top_p < 1.0:
        order = np.argsort(-probs, axis=-1, kind="stable")
        sorted_probs = np.take_along_axis(probs, order, -1)
        before = np.cumsum(sorted_probs, -1) - sorted_probs   # mass of the more likely tokens
        keep_sorted = before < options.top_p                 # the first token is always kept
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, -1)
        probs = np.where(keep, probs, 0.0)
        probs /= probs.sum(-1, keepdims=True)
    return probs


class Sampler:
    """``sampler(logits [b, vocab])`` → next token ids ``[b]`` (int64)."""

    def __init__(self, options: SamplingOptions):
        self.options = options
        self.rng = np.random.default_rng(options.seed)

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        if self.options.greedy:
            return np.argmax(logits, axis=-1).astype(np.int64)
        probs = filtered_probabilities(logits, self.options)
        cdf = np.cumsum(probs, -1)
        draws = self.rng.random(probs.shape[0])[:, None] * cdf[:, -1:]   # below the total: never past it
        return (cdf <= draws).sum(-1).astype(np.int64)
