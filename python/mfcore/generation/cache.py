"""The pieces every cached decoder shares: the attention bias over a static cache, cache writes,
and attention of a few queries against the whole cache.

A cache has a fixed number of slots ``L`` (prompt + new tokens), so the prefill graph and the
one-token decode graph each compile once. Slot ``j`` holds the token at column ``j`` of the
left-padded batch; ``key_valid [b, L]`` (1.0 = a real token) hides the padding, and a query at slot
``i`` sees keys ``j <= i``. Slots not written yet are zeros and always hidden by causality.
"""
import mindspore as ms
from mindspore import ops

MASK_VALUE = -1.0e9  # as the training attention mask: a finite bias, no inf - inf


def attention_bias(query_slots, key_valid):
    """Additive float32 bias ``[b, s, L]``: 0 where query ``i`` (at ``query_slots[i]``) may see key
    ``j`` (``j <= slot`` and a real token), ``MASK_VALUE`` elsewhere."""
    length = key_valid.shape[1]
    keys = ops.arange(length).astype(ms.int32).reshape(1, 1, length)
    causal = keys <= query_slots.astype(ms.int32).reshape(1, -1, 1)
    visible = ops.logical_and(causal, key_valid.astype(ms.bool_).expand_dims(1))
    return (1.0 - visible.astype(ms.float32)) * MASK_VALUE


def fill_cache(new, length):
    """Prefill: a cache of ``length`` slots whose first ``new.shape[1]`` slots hold ``new``."""
    pad = length - new.shape[1]
    if pad == 0:
        return new
    zeros = ops.zeros((new.shape[0], pad) + new.shape[2:], new.dtype)
    return ops.concat((new, zeros), 1)


def write_slot(cache, new, slot):
    """Decode: ``cache`` with slot ``slot`` (int32 scalar tensor) replaced by ``new [b, 1, ...]``.
    A select, not arithmetic, so every other slot keeps its exact bits."""
    length = cache.shape[1]
    hit = ops.arange(length).astype(ms.int32) == slot.astype(ms.int32)
    hit = hit.reshape((1, length) + (1,) * (cache.ndim - 2)).broadcast_to(cache.shape)
    return ops.select(hit, new.astype(cache.dtype).broadcast_to(cache.shape), cache)


def grouped_attention(q, k_cache, v_cache, bias, scale, compute_dtype):
    """``softmax(q k^T * scale + bias) v`` for ``q [b, s, nq, d]`` against ``k_cache [b, L, nkv, d]``,
    ``v_cache [b, L, nkv, dv]`` → ``[b, s, nq * dv]``; query head ``h`` uses key head ``h // g``
    (the training attention's grouping). Scores and softmax in float32."""
    b, s, nq, d = q.shape
    length, nkv, dv = k_cache.shape[1], k_cache.shape[2], v_cache.shape[3]
    g = nq // nkv
    q = q.reshape(b, s, nkv, g, d).transpose(0, 2, 3, 1, 4).reshape(b, nkv, g * s, d)
    k = k_cache.transpose(0, 2, 1, 3).astype(compute_dtype)
    v = v_cache.transpose(0, 2, 1, 3).astype(compute_dtype)
    scores = ops.bmm(q.astype(compute_dtype), k.transpose(0, 1, 3, 2)).astype(ms.float32) * scale
    scores = scores.reshape(b, nkv, g, s, length) + bias.reshape(b, 1, 1, s, length)
    probs = ops.softmax(scores, -1).reshape(b, nkv, g * s, length).astype(compute_dtype)
    ctx = ops.bmm(probs, v).reshape(b, nkv, g, s, dv)
    return ctx.transpose(0, 3, 1, 2, 4).reshape(b, s, nq * dv)
