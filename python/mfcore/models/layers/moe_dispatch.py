"""Token dispatch of a mixture-of-experts layer: (token, expert) pairs to contiguous expert groups and back.

The router picks ``k`` experts per token; the ``T * k`` pairs are permuted so each expert's pairs
are contiguous (sorted by expert id, ties in token order), which is what a grouped matrix product
needs; after the experts ran, each row goes back to its token, weighted by its routing weight and
summed. All buffers have static shapes (``[T * k, h]`` plus ``[E]`` group sizes), so graphs compile
once; the work of the experts is ``T * k`` rows whatever the number of experts.

``dispatch`` (route -> permute) and ``combine`` (unpermute -> weighted sum) are the two halves.
Under expert parallelism (:mod:`mfcore.parallel.expert_parallel`) the tokens' own rank only counts
(and, in capacity mode, drops: :meth:`TokenDispatcher.count_and_drop`); the rank holding a window of
experts dispatches the gathered tokens with a *partial* dispatcher (``partial=True``): expert id
``num_experts`` means "an expert of another rank", such pairs go after the last group (like dropped
ones), are not computed and weigh nothing in ``combine``.

Modes (``model.moe_dispatch``):

- ``dropless`` (default): every pair is computed.
- ``capacity``: each expert takes at most ``ceil(capacity_factor * T * k / E)`` pairs (MindSpore
  Transformers' and Megatron's capacity); the pairs over it (later tokens first) are dropped:
  they go after the last group, contribute nothing and are counted.

On Ascend, dropless dispatch uses MindSpore's fused ``moe_token_permute`` / ``moe_token_unpermute``
(written against the MindSpore 2.10 API, not run here: the development machine has no Ascend).
Sort keys are ``expert * T * k + pair`` in int32, so ``(E + 1) * T * k`` must stay below 2**31
(DeepSeek-V3, 256 experts top-8: about a million tokens per micro batch).
"""
import mindspore as ms
from mindspore import nn, ops

from mfcore.models.deepseek_v3.config import MOE_DISPATCH_MODES, expert_capacity, local_expert_rows

INT32_KEYS = 2 ** 31


class TokenDispatcher(nn.Cell):
    """``dispatch(x [T, h], expert_idx [T, k])`` → rows sorted by expert and their group sizes;
    ``combine(y [T*k, h'], route, weights [T, k])`` → ``[T, h']``."""

    def __init__(self, num_experts, top_k, mode="dropless", capacity_factor=None, partial=False):
        super().__init__()
        if mode not in MOE_DISPATCH_MODES:
            raise ValueError(f"moe_dispatch must be one of {MOE_DISPATCH_MODES}, got {mode!r}")
        self.num_experts = num_experts
        self.top_k = top_k
        self.capacity_mode = mode == "capacity"
        self.capacity_factor = capacity_factor
        self.partial = bool(partial)   # ids == num_experts: pairs of experts held elsewhere
        self.fused = ms.get_context("device_target") == "Ascend" and not (self.capacity_mode or self.partial)

    def max_rows(self, tokens):
        """The most rows one expert can own: every token (top-k experts are distinct) or the capacity."""
        if self.capacity_mode:
            return expert_capacity(tokens, self.top_k, self.num_experts, self.capacity_factor)
        return tokens

    def dispatch(self, x, expert_idx, limit=None):
        """``(rows [T*k, h], group_sizes [E] int32, routed [E] float32 pairs per expert before
        dropping, dropped float32 scalar, route)``; ``route`` is what :meth:`combine` needs.
        ``limit`` (a partial dispatcher's): only the first ``limit`` sorted pairs become rows, the
        most that can be this rank's (:meth:`rows_of_local_experts`); the rest are other ranks' anyway."""
        pairs = expert_idx.shape[0] * expert_idx.shape[1]
        flat = expert_idx.reshape(-1).astype(ms.int32)
        if self.partial:   # one more segment: the pairs of other ranks' experts
            routed = ops.unsorted_segment_sum(ops.ones((pairs,), ms.float32), flat,
                                              self.num_experts + 1)[:self.num_experts]
        else:
            routed = ops.unsorted_segment_sum(ops.ones((pairs,), ms.float32), flat, self.num_experts)
        if self.fused:
            rows, destination = ops.moe_token_permute(x, expert_idx.astype(ms.int32))
            return rows, routed.astype(ms.int32), routed, ops.zeros((), ms.float32), destination
        if (self.num_experts + 1 + int(self.partial)) * pairs >= INT32_KEYS:
            raise ValueError(f"{pairs} (token, expert) pairs x {self.num_experts + 1} overflow the int32 "
                             "sort keys of the MoE dispatch; use a smaller micro batch")
        keys, order = ops.sort(flat * pairs + ops.arange(pairs, dtype=ms.int32))
        sizes = routed.astype(ms.int32)
        dropped = ops.zeros((), ms.float32)
        if self.capacity_mode:
            order, sizes = self._drop_over_capacity(keys // pairs, order, sizes, expert_idx.shape[0])
            dropped = pairs - sizes.sum().astype(ms.float32)
        if limit is not None and limit < pairs:
            order = order[:limit]
        rows = ops.gather(x, order // self.top_k, 0)
        return rows, sizes, routed, dropped, order

    def rows_of_local_experts(self, local_experts, sources, tokens):
        """Under expert parallelism: the most pairs ``local_experts`` of this rank's can get from
        ``sources`` ranks of ``tokens`` tokens each, routed by this dispatcher (dropping, in capacity
        mode, in :meth:`count_and_drop` on the source): :func:`local_expert_rows`."""
        return local_expert_rows(local_experts, sources, tokens, self.top_k, self.num_experts,
                                 self.capacity_factor if self.capacity_mode else None)

    def count_and_drop(self, expert_idx):
        """On the tokens' own rank under expert parallelism: ``(routed [E] pairs per expert before
        dropping, dropped pairs, expert_idx)`` where, in capacity mode, a dropped pair's expert id
        becomes ``E`` (no expert: no rank computes it). Capacity is over this rank's ``T`` tokens,
        as without EP: the pairs dropped are those one process drops with the same micro batch size."""
        tokens, pairs = expert_idx.shape[0], expert_idx.shape[0] * expert_idx.shape[1]
        flat = expert_idx.reshape(-1).astype(ms.int32)
        routed = ops.unsorted_segment_sum(ops.ones((pairs,), ms.float32), flat, self.num_experts)
        if not self.capacity_mode:
            return routed, ops.zeros((), ms.float32), expert_idx
        keys, order = ops.sort(flat * pairs + ops.arange(pairs, dtype=ms.int32))
        order, sizes = self._drop_over_capacity(keys // pairs, order, routed.astype(ms.int32), tokens)
        kept_sorted = (ops.arange(pairs, dtype=ms.int32) < sizes.sum()).astype(ms.float32)
        kept = ops.unsorted_segment_sum(kept_sorted, order, pairs)
        idx = ops.where(kept > 0.5, flat, self.num_experts).reshape(expert_idx.shape)
        return routed, pairs - sizes.sum().astype(ms.float32), idx

    def _drop_over_capacity(self, sorted_experts, order, sizes, tokens):
        """Pairs past an expert's capacity are re-keyed after every expert (kept in pair order)."""
        pairs = order.shape[0]
        capacity = self.max_rows(tokens)
        starts = ops.cumsum(sizes, 0) - sizes
        rank = ops.arange(pairs, dtype=ms.int32) - ops.gather(starts, sorted_experts, 0)
        group = ops.where(rank < capacity, sorted_experts, self.num_experts)
        _, regroup = ops.sort(group * pairs + order)
        return ops.gather(order, regroup, 0), ops.minimum(sizes, capacity)

    def combine(self, y, route, weights, group_sizes):
        """Each row back to its token, times its routing weight, summed per token (in expert order)."""
        tokens = weights.shape[0]
        if self.fused:
            return ops.moe_token_unpermute(y, route, weights.astype(y.dtype))
        pair_weights = ops.gather(weights.reshape(-1), route, 0)
        if self.capacity_mode or self.partial:  # rows after the last group must not count, whatever y holds
            kept = ops.arange(route.shape[0], dtype=ms.int32) < group_sizes.sum()
            pair_weights = pair_weights * kept.astype(pair_weights.dtype)
        weighted = y * pair_weights.astype(y.dtype).expand_dims(-1)
        return ops.unsorted_segment_sum(weighted, route // self.top_k, tokens)
