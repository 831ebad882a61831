"""Independent NumPy (float64) implementations of the published formulas, for the model tests.

Written from the papers / reference code, not from mfcore: Meta's Llama reference (complex-number
rotary, ``apply_scaling`` for Llama 3), DeepSeek-V3's paper and inference code (MLA, sigmoid router
with group-limited top-k, MTP).
"""
import math

import numpy as np


def rmsnorm(x, w, eps):
    x = np.asarray(x, np.float64)
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def swiglu_mlp(x, wg, wu, wd):
    """Weights in math layout ``y = x @ W``."""
    return (silu(x @ wg) * (x @ wu)) @ wd


def llama3_freqs(dim, theta, factor, low_freq_factor, high_freq_factor, old_context_len):
    """Meta's ``apply_scaling`` (llama-models), one frequency at a time."""
    freqs = [1.0 / theta ** (i / dim) for i in range(0, dim, 2)]
    low_wavelen = old_context_len / low_freq_factor
    high_wavelen = old_context_len / high_freq_factor
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < high_wavelen:
            out.append(f)
        elif wavelen > low_wavelen:
            out.append(f / factor)
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            out.append((1 - smooth) * f / factor + smooth * f)
    return np.array(out)


def yarn_freqs(dim, theta, factor, beta_fast, beta_slow, original_len):
    """DeepSeek-V3 inference code's ``precompute_freqs_cis`` (long-context branch)."""
    def corr(rot):
        return dim * math.log(original_len / (rot * 2 * math.pi)) / (2 * math.log(theta))
    low, high = max(math.floor(corr(beta_fast)), 0), min(math.ceil(corr(beta_slow)), dim - 1)
    high = high + 0.001 if low == high else high
    freqs = 1.0 / theta ** (np.arange(0, dim, 2) / dim)
    smooth = 1 - np.clip((np.arange(dim // 2) - low) / (high - low), 0, 1)
    return freqs / factor * (1 - smooth) + freqs * smooth


def rope_complex(x, positions, freqs):
    """Rotate consecutive pairs ``(2i, 2i+1)`` as complex numbers (Meta / DeepSeek reference).
    ``x [b, s, h, d]``, ``positions [b, s]`` → same shape, interleaved layout."""
    angles = positions[..., None].astype(np.float64) * freqs  # [b, s, d/2]
    rot = np.exp(1j * angles)[:, :, None, :]
    xc = x[..., 0::2] + 1j * x[..., 1::2]
    yc = xc * rot
    out = np.empty(x.shape, np.float64)
    out[..., 0::2], out[..., 1::2] = yc.real, yc.imag
    return out


def rope_half(x, positions, freqs):
    """Hugging Face Llama layout: channel ``i`` pairs with ``i + d/2``."""
    d = x.shape[-1]
    perm = np.stack([np.arange(d // 2), np.arange(d // 2) + d // 2], -1).reshape(-1)
    inter = rope_complex(x[..., perm], positions, freqs)
    out = np.empty_like(inter)
    out[..., perm] = inter
    return out


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def attention(q, k, v, scale, masked):
    """``q [b, s, nq, d]``, ``k/v [b, s, nkv, *]``, ``masked [b, s, s]`` True = hidden; GQA by
    repeating each key/value head for its ``nq / nkv`` query heads."""
    g = q.shape[2] // k.shape[2]
    k, v = np.repeat(k, g, axis=2), np.repeat(v, g, axis=2)
    scores = np.einsum("bqhd,bkhd->bhqk", q, k) * scale
    scores = np.where(masked[:, None], -np.inf, scores)
    ctx = np.einsum("bhqk,bkhd->bqhd", softmax(scores), v)
    return ctx.reshape(q.shape[0], q.shape[1], -1)


def causal(b, s):
    return np.broadcast_to(np.triu(np.ones((s, s), bool), 1), (b, s, s))


def route(x, w, bias, n_group, topk_group, top_k, scale, norm=True):
    """DeepSeek-V3 routing, token by token → dense combine weights ``[T, E]``."""
    scores = 1.0 / (1.0 + np.exp(-(x @ w)))
    tokens, experts = scores.shape
    per_group = experts // n_group
    combine = np.zeros_like(scores)
    for t in range(tokens):
        biased = scores[t] + bias
        group_score = [np.sort(biased[g * per_group:(g + 1) * per_group])[-2:].sum() for g in range(n_group)]
        groups = np.argsort(group_score)[::-1][:topk_group]
        allowed = [e for e in range(experts) if e // per_group in groups]
        chosen = sorted(allowed, key=lambda e: biased[e], reverse=True)[:top_k]
        weights = scores[t, chosen]
        if norm:
            weights = weights / weights.sum()
        combine[t, chosen] = weights * scale
    return combine, scores


def cross_entropy(logits, labels):
    z = logits - logits.max(-1, keepdims=True)
    lse = np.log(np.exp(z).sum(-1))
    return lse - np.take_along_axis(z, labels[..., None], -1)[..., 0]
