"""DeepSeek-V3 mixture of experts: sigmoid router with group-limited top-k, aux-loss-free balancing.

Routing (per token): ``s = sigmoid(x W_r)``; experts are chosen on ``s + b`` (``b`` =
``e_score_correction_bias``, not trained by gradients): each of ``n_group`` groups is scored by the
sum of its two best biased scores, the ``topk_group`` best groups are kept, and the top
``num_experts_per_tok`` experts among them are selected. The combine weights are the UNBIASED
scores of the chosen experts, normalised to sum 1 (``norm_topk_prob``) and multiplied by
``routed_scaling_factor``. Shared experts see every token.

Load balancing without an auxiliary loss: every MoE layer counts the tokens routed to each expert in
a non-trainable Parameter ``expert_load`` (added up over forward passes). Between optimizer steps
call :func:`update_expert_bias`, which moves each bias by ``rate * sign(mean_load - load)`` and resets
the counters, or read :func:`expert_load` first (e.g. to sum it over data-parallel ranks and pass the
sum in). The optional sequence-wise balance loss (``aux_loss_alpha``, the paper's eq. 17-20) is
returned per layer for the model to add.

Expert computation is sparse and dropless by default (:mod:`mfcore.models.layers.moe_dispatch`):
the ``T * k`` (token, expert) pairs are sorted by expert, every expert's SwiGLU MLP runs on its own
rows only (:mod:`mfcore.models.layers.grouped_matmul`: our C++ kernel on CPU, MindSpore's
GroupedMatmul on Ascend) and the rows are summed back into their tokens with the routing weights.
The cost grows with ``num_experts_per_tok``, not ``n_routed_experts``. ``moe_dispatch: capacity``
caps each expert at ``capacity_factor`` times its even share and counts what it drops.
"""
import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, Zero, initializer

from mfcore.models.layers.linear import GroupedLinear, output_init_std
from mfcore.models.layers.mlp import MLP, SwiGLU
from mfcore.models.layers.moe_dispatch import TokenDispatcher


class Router(nn.Cell):
    """``x [T, h]`` → the chosen experts ``[T, k]`` (int32, ascending), their combine weights
    ``[T, k]`` and the sigmoid scores ``[T, E]``."""

    HF_TRANSPOSED = True

    def __init__(self, config):
        super().__init__()
        self.num_experts = config.n_routed_experts
        self.n_group = config.n_group
        self.topk_group = config.topk_group
        self.top_k = config.num_experts_per_tok
        self.norm_topk_prob = config.norm_topk_prob
        self.routed_scaling_factor = config.routed_scaling_factor
        self.weight = Parameter(initializer(Normal(config.initializer_range),
                                            [config.hidden_size, self.num_experts], ms.float32), name="weight")
        self.e_score_correction_bias = Parameter(initializer(Zero(), [self.num_experts], ms.float32),
                                                 name="e_score_correction_bias", requires_grad=False)

    def _select(self, scores):
        """Group-limited top-k on the biased scores → expert ids ``[T, k]`` (no gradient)."""
        tokens = scores.shape[0]
        biased = ops.stop_gradient(scores) + self.e_score_correction_bias
        grouped = biased.reshape(tokens, self.n_group, self.num_experts // self.n_group)
        group_scores = ops.topk(grouped, 2)[0].sum(-1)
        group_idx = ops.topk(group_scores, self.topk_group)[1]
        group_keep = ops.one_hot(group_idx, self.n_group, Tensor(1.0, ms.float32),
                                 Tensor(0.0, ms.float32)).sum(1)
        keep = group_keep.expand_dims(-1).broadcast_to(grouped.shape).reshape(tokens, self.num_experts)
        candidates = biased * keep + (keep - 1.0) * 1.0e9
        expert_idx = ops.topk(candidates, self.top_k)[1].astype(ms.int32)
        # ascending ids: every sum over a token's experts runs in expert order, as a dense sum would
        return ops.stop_gradient(ops.sort(expert_idx)[0])

    def construct(self, x):
        scores = ops.sigmoid(ops.matmul(x.astype(ms.float32), self.weight))
        expert_idx = self._select(scores)
        weights = ops.gather_elements(scores, 1, expert_idx)
        if self.norm_topk_prob:
            weights = weights / (weights.sum(-1, keepdims=True) + 1e-20)
        return expert_idx, weights * self.routed_scaling_factor, scores


class GroupedExperts(nn.Cell):
    """The routed experts' SwiGLU MLPs, stacked: ``gate_proj``/``up_proj``/``down_proj`` are
    :class:`GroupedLinear` (HF: ``experts.{e}.gate_proj.weight`` ...)."""

    def __init__(self, config, compute_dtype=ms.float32):
        super().__init__()
        e, h, inter = config.n_routed_experts, config.hidden_size, config.moe_intermediate_size
        std = config.initializer_range
        self.num_experts = e
        self.gate_proj = GroupedLinear(e, h, inter, compute_dtype, std)
        self.up_proj = GroupedLinear(e, h, inter, compute_dtype, std)
        self.down_proj = GroupedLinear(e, inter, h, compute_dtype,
                                       output_init_std(std, config.num_hidden_layers))
        self.act = SwiGLU(compute_dtype)

    def construct(self, rows, group_sizes, max_rows):
        """``rows [N, h]`` sorted by expert, ``group_sizes [E]`` → each expert's MLP of its rows."""
        gate = self.gate_proj(rows, group_sizes, max_rows)
        up = self.up_proj(rows, group_sizes, max_rows)
        return self.down_proj(self.act(gate, up), group_sizes, max_rows)


class MoE(nn.Cell):
    """Routed + shared experts; ``construct(x [b, s, h])`` → ``(out [b, s, h], seq_aux_loss)``.

    Counters (non-trainable Parameters, added up over forward passes, reset by
    :func:`update_expert_bias`): ``expert_load`` (pairs routed to each expert, before any dropping)
    and, in capacity mode only, ``dropped_tokens`` (pairs dropped over capacity)."""

    def __init__(self, config, compute_dtype=ms.float32):
        super().__init__()
        h = config.hidden_size
        self.num_experts = config.n_routed_experts
        self.top_k = config.num_experts_per_tok
        self.aux_loss_alpha = float(config.aux_loss_alpha) if config.seq_aux else 0.0
        self.bias_update_rate = config.bias_update_rate
        self.gate = Router(config)
        self.dispatcher = TokenDispatcher(self.num_experts, self.top_k, config.moe_dispatch,
                                          config.capacity_factor)
        self.experts = GroupedExperts(config, compute_dtype)
        self.has_shared = config.n_shared_experts > 0
        if self.has_shared:
            self.shared_experts = MLP(h, config.moe_intermediate_size * config.n_shared_experts,
                                      compute_dtype, config.initializer_range, config.num_hidden_layers)
        self.expert_load = Parameter(initializer(Zero(), [self.num_experts], ms.float32),
                                     name="expert_load", requires_grad=False)
        self.counts_drops = self.dispatcher.capacity_mode
        if self.counts_drops:
            self.dropped_tokens = Parameter(initializer(Zero(), [1], ms.float32),
                                            name="dropped_tokens", requires_grad=False)
        # expert parallelism, set from outside (mfcore.parallel.expert_parallel): the token exchange,
        # the partial dispatcher of this rank's experts and the global id of its first one
        self.exchange = None
        self.local_dispatcher = None
        self.first_local_expert = 0
        # with tensor parallelism each rank routes a sequence shard: the sequence aux loss sums its
        # per-sequence statistics over the shards (forward AllReduce, backward identity)
        self.sequence_reduce = None
        self.sequence_shards = 1

    def _sequence_aux_loss(self, expert_idx, scores, batch):
        """alpha * sum_i f_i P_i per sequence, averaged over the batch (DeepSeek-V3 eq. 17-20)."""
        per_sequence = expert_idx.shape[0] // batch * self.top_k
        sequence = ops.arange(batch * per_sequence, dtype=ms.int32) // per_sequence
        slot = sequence * self.num_experts + expert_idx.reshape(-1)
        chosen = ops.unsorted_segment_sum(ops.ones(slot.shape, ms.float32), slot, batch * self.num_experts)
        probs = scores.reshape(batch, -1, self.num_experts)
        probs = probs / (probs.sum(-1, keepdims=True) + 1e-20)
        if self.sequence_reduce is None:
            mean_probs = probs.mean(1)
        else:   # this rank holds 1/shards of every sequence: sum the statistics over the shards
            chosen = self.sequence_reduce(ops.stop_gradient(chosen))
            mean_probs = self.sequence_reduce(probs.sum(1)) / (probs.shape[1] * self.sequence_shards)
            per_sequence = per_sequence * self.sequence_shards
        freq = chosen.reshape(batch, self.num_experts) * (self.num_experts / per_sequence)
        return self.aux_loss_alpha * (freq * mean_probs).sum(-1).mean()

    def routed_experts(self, flat, expert_idx, weights):
        """Route -> permute, every expert on its own rows, unpermute -> combine. Returns
        ``(out [T, h], routed pairs per expert [E], dropped pairs)``."""
        if self.exchange is not None:
            return self._routed_experts_exchanged(flat, expert_idx, weights)
        rows, sizes, routed, dropped, route = self.dispatcher.dispatch(flat, expert_idx)
        y = self.experts(rows, sizes, self.dispatcher.max_rows(flat.shape[0]))
        return self.dispatcher.combine(y, route, weights, sizes), routed, dropped

    def _routed_experts_exchanged(self, flat, expert_idx, weights):
        """Expert parallelism: this rank holds experts ``[first_local_expert, + n)``. The exchange
        brings the tokens and routing of every rank of the expert-parallel group here (gradients go
        back summed), the local experts run on the pairs routed to them, and the partial outputs go
        back summed over the group, each rank keeping its own tokens' rows."""
        routed, dropped, expert_idx = self.dispatcher.count_and_drop(expert_idx)
        k, n = self.top_k, self.local_dispatcher.num_experts
        tokens = self.exchange.gather_tokens(flat)
        routing = self.exchange.gather_routing(ops.concat((weights, expert_idx.astype(weights.dtype)), 1))
        local = ops.stop_gradient(routing[:, k:]).astype(ms.int32) - self.first_local_expert
        local = ops.where((local >= 0) & (local < n), local, n)
        sources = tokens.shape[0] // flat.shape[0]
        limit = self.dispatcher.rows_of_local_experts(n, sources, flat.shape[0])
        rows, sizes, _, _, route = self.local_dispatcher.dispatch(tokens, local, limit)
        y = self.experts(rows, sizes, min(tokens.shape[0], limit))
        partial = self.local_dispatcher.combine(y, route, routing[:, :k], sizes)
        return self.exchange.give_back(partial), routed, dropped

    def construct(self, x):
        b, s, h = x.shape
        flat = x.reshape(b * s, h)
        expert_idx, weights, scores = self.gate(flat)
        routed, load, dropped = self.routed_experts(flat, expert_idx, weights)
        ops.assign_add(self.expert_load, load)
        if self.counts_drops:
            ops.assign_add(self.dropped_tokens, dropped.reshape(1))
        out = routed.astype(ms.float32)
        if self.has_shared:   # [b, s, h]: under sequence parallelism it gathers the sequence axis
            out = out + self.shared_experts(x).astype(ms.float32).reshape(b * s, h)
        aux = ops.zeros((), ms.float32)
        if self.aux_loss_alpha > 0:
            aux = self._sequence_aux_loss(expert_idx, scores, b)
        return out.reshape(b, s, h), aux


def moe_layers(model):
    """The MoE cells of ``model`` in parameter order (MTP modules included)."""
    return [cell for _, cell in model.cells_and_names() if isinstance(cell, MoE)]


def expert_load(model):
    """Tokens routed to each expert since the last reset, numpy ``[moe_layers, experts]``."""
    layers = moe_layers(model)
    if not layers:
        return np.zeros((0, 0), np.float32)
    return np.stack([layer.expert_load.asnumpy() for layer in layers])


def dropped_tokens(model):
    """(token, expert) pairs dropped over capacity since the last reset, numpy ``[moe_layers]``;
    None when no layer runs in capacity mode."""
    layers = moe_layers(model)
    if not any(layer.counts_drops for layer in layers):
        return None
    return np.array([float(layer.dropped_tokens.asnumpy()[0]) if layer.counts_drops else 0.0
                     for layer in layers], np.float32)


def update_expert_bias(model, load=None, rate=None):
    """Aux-loss-free balancing step: ``bias += rate * sign(mean(load) - load)`` per MoE layer, then
    reset the counters (dropped tokens too). ``load`` defaults to :func:`expert_load`; returns the load used."""
    layers = moe_layers(model)
    load = expert_load(model) if load is None else np.asarray(load, np.float32)
    if load.shape != (len(layers), layers[0].num_experts if layers else 0):
        raise ValueError(f"expert load has shape {load.shape}, expected "
                         f"({len(layers)}, {layers[0].num_experts if layers else 0})")
    for layer, counts in zip(layers, load):
        step = layer.bias_update_rate if rate is None else rate
        bias = layer.gate.e_score_correction_bias
        new = bias.asnumpy() + step * np.sign(counts.mean() - counts)
        # in place: set_data would detach the Parameter from graphs that are already compiled
        ops.assign(bias, Tensor(new.astype(np.float32)))
        ops.assign(layer.expert_load, Tensor(np.zeros(layer.num_experts, np.float32)))
        if layer.counts_drops:
            ops.assign(layer.dropped_tokens, Tensor(np.zeros(1, np.float32)))
    return load
