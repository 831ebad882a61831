"""Rotary position embeddings (Su et al., 2021) with the frequency scalings of Llama 3 and YaRN.

The inverse frequencies are computed once in NumPy (float64, as in the reference implementations);
``cos``/``sin`` are computed in the graph from ``position_ids``, so any positions work (document-reset
positions included) without a table of ``max_position_embeddings`` rows.

Two pairings: ``interleaved=False`` rotates the first half of a head against the second half (Hugging
Face Llama layout); ``interleaved=True`` rotates channel ``2i`` against ``2i+1`` (DeepSeek-V3's
layout). The rotation is ``x * cos + (x @ R) * sin`` with a constant signed permutation ``R``: no
slices or concatenations, whose kernels (and their gradients) were slow on MindSpore's CPU backend.
"""
import math

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops


def _default_inv_freq(dim, theta):
    return 1.0 / (theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))


def _llama3_inv_freq(inv_freq, scaling):
    factor = float(scaling["factor"])
    low = float(scaling.get("low_freq_factor", 1.0))
    high = float(scaling.get("high_freq_factor", 4.0))
    old_len = float(scaling.get("original_max_position_embeddings", 8192))
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return np.where(medium, smoothed, scaled)


def yarn_mscale(scale, mscale=1.0):
    """YaRN's attention temperature factor ``0.1 * mscale * ln(scale) + 1`` (1 when not scaled)."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _yarn_inv_freq(dim, theta, scaling):
    factor = float(scaling["factor"])
    old_len = float(scaling.get("original_max_position_embeddings", 4096))
    beta_fast = float(scaling.get("beta_fast", 32))
    beta_slow = float(scaling.get("beta_slow", 1))

    def correction_dim(rotations):
        return dim * math.log(old_len / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low = max(math.floor(correction_dim(beta_fast)), 0)
    high = min(math.ceil(correction_dim(beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
    extrapolate = 1.0 - ramp
    base = _default_inv_freq(dim, theta)
    return (base / factor) * (1 - extrapolate) + base * extrapolate


def rope_type(scaling):
    if not scaling:
        return "default"
    return scaling.get("rope_type", scaling.get("type", "default"))


def inverse_frequencies(dim, theta, scaling=None):
    """Inverse frequencies ``[dim // 2]`` (float64) for a rotary dimension ``dim``."""
    kind = rope_type(scaling)
    if kind == "default":
        return _default_inv_freq(dim, theta)
    if kind == "linear":
        return _default_inv_freq(dim, theta) / float(scaling["factor"])
    if kind == "llama3":
        return _llama3_inv_freq(_default_inv_freq(dim, theta), scaling)
    if kind == "yarn":
        return _yarn_inv_freq(dim, theta, scaling)
    raise ValueError(f"unknown rope type {kind!r}")


def cos_sin_scale(scaling, deepseek=False):
    """The factor YaRN applies to cos/sin (DeepSeek's ratio of mscales, else HF's attention factor)."""
    if rope_type(scaling) != "yarn":
        return 1.0
    factor = float(scaling["factor"])
    if deepseek:
        return yarn_mscale(factor, scaling.get("mscale", 1.0)) / yarn_mscale(
            factor, scaling.get("mscale_all_dim", 0.0))
    return float(scaling.get("attention_factor") or yarn_mscale(factor))


def rotation_matrix(dim, interleaved):
    """``R`` with ``x @ R`` = the partner channel with sign: ``(-x2, x1)`` for each rotated pair."""
    r = np.zeros((dim, dim), np.float32)
    if interleaved:
        first, second = np.arange(0, dim, 2), np.arange(1, dim, 2)
    else:
        first, second = np.arange(dim // 2), np.arange(dim // 2, dim)
    r[second, first] = -1.0
    r[first, second] = 1.0
    return r


class RotaryEmbedding(nn.Cell):
    """``position_ids [b, s]`` → ``(cos, sin)``, each ``[b, s, 1, dim]`` float32, laid out for the
    pairing (``interleaved``: DeepSeek's channel pairs; else HF Llama's halves)."""

    def __init__(self, dim, theta, scaling=None, deepseek=False, interleaved=None):
        super().__init__()
        self.dim = dim
        self.interleaved = deepseek if interleaved is None else interleaved
        inv = inverse_frequencies(dim, theta, scaling)
        inv = np.repeat(inv, 2) if self.interleaved else np.concatenate([inv, inv])
        self.inv_freq = Tensor(inv.astype(np.float32))
        self.scale = float(cos_sin_scale(scaling, deepseek))

    def construct(self, position_ids):
        angles = position_ids.astype(ms.float32).expand_dims(-1) * self.inv_freq
        angles = angles.expand_dims(2)
        return ops.cos(angles) * self.scale, ops.sin(angles) * self.scale


class Rotate(nn.Cell):
    """``x * cos + (x @ R) * sin`` with its backward written out: ``dx = d * cos + (d * sin) @ R^T``.

    ``cos``/``sin`` (``[b, s, 1, dim]``) are broadcast over the heads explicitly before the products:
    MindSpore 2.10's CPU graph kept ~100 MB per rotation at batch 4 x seq 512 x 16 heads of 64 when the
    multiplications broadcast implicitly (1.6 GB of the 160M Llama's training step), ~25 MB this way;
    the products are the same numbers."""

    def __init__(self, dim, interleaved):
        super().__init__()
        self.dim = dim
        self.rotation = Tensor(rotation_matrix(dim, interleaved))
        self.matmul = ops.MatMul()
        self.matmul_nt = ops.MatMul(transpose_b=True)

    def construct(self, x, cos, sin):
        x32 = x.astype(ms.float32)
        cos, sin = cos.broadcast_to(x.shape), sin.broadcast_to(x.shape)
        partner = self.matmul(x32.reshape(-1, self.dim), self.rotation).reshape(x.shape)
        return (x32 * cos + partner * sin).astype(x.dtype)

    def bprop(self, x, cos, sin, out, dout):
        d = dout.astype(ms.float32)
        cos_full, sin_full = cos.broadcast_to(x.shape), sin.broadcast_to(x.shape)
        back = self.matmul_nt((d * sin_full).reshape(-1, self.dim), self.rotation).reshape(x.shape)
        return (d * cos_full + back).astype(x.dtype), ops.zeros_like(cos), ops.zeros_like(sin)
