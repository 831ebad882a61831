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

Expert computation on CPU runs every expert on every token and combines with the (mostly zero)
routing weights: exact and dropless with static shapes, at ``n_routed_experts / num_experts_per_tok``
times the sparse cost, which suits the tiny CPU configurations.
"""
import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, Zero, initializer

from mfcore.models.layers.linear import GroupedLinear, output_init_std
from mfcore.models.layers.mlp import MLP, SwiGLU


class Router(nn.Cell):
    """``x [T, h]`` → combine weights ``[T, E]`` (zero for unchosen experts) and the selection mask."""

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
        """Group-limited top-k on the biased scores → one-hot selection ``[T, E]`` (no gradient)."""
        tokens = scores.shape[0]
        biased = ops.stop_gradient(scores) + self.e_score_correction_bias
        grouped = biased.reshape(tokens, self.n_group, self.num_experts // self.n_group)
        group_scores = ops.topk(grouped, 2)[0].sum(-1)
        group_idx = ops.topk(group_scores, self.topk_group)[1]
        group_keep = ops.one_hot(group_idx, self.n_group, Tensor(1.0, ms.float32),
                                 Tensor(0.0, ms.float32)).sum(1)
        keep = group_keep.expand_dims(-1).broadcast_to(grouped.shape).reshape(tokens, self.num_experts)
        candidates = biased * keep + (keep - 1.0) * 1.0e9
        expert_idx = ops.topk(candidates, self.top_k)[1]
        chosen = ops.one_hot(expert_idx, self.num_experts, Tensor(1.0, ms.float32),
                             Tensor(0.0, ms.float32)).sum(1)
        return ops.stop_gradient(chosen)

    def construct(self, x):
        scores = ops.sigmoid(ops.matmul(x.astype(ms.float32), self.weight))
        chosen = self._select(scores)
        weights = scores * chosen
        if self.norm_topk_prob:
            weights = weights / (weights.sum(-1, keepdims=True) + 1e-20)
        return weights * self.routed_scaling_factor, chosen, scores


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

    def construct(self, x, combine):
        """``x [T, h]``, ``combine [T, E]`` → ``sum_e combine[t, e] * expert_e(x[t])``."""
        tokens, hidden = x.shape
        xe = x.expand_dims(0).broadcast_to((self.num_experts, tokens, hidden))
        y = self.down_proj(self.act(self.gate_proj(xe), self.up_proj(xe)))
        weights = combine.astype(y.dtype).transpose(1, 0).expand_dims(-1)
        return (y * weights).sum(0)


class MoE(nn.Cell):
    """Routed + shared experts; ``construct(x [b, s, h])`` → ``(out [b, s, h], seq_aux_loss)``."""

    def __init__(self, config, compute_dtype=ms.float32):
        super().__init__()
        h = config.hidden_size
        self.num_experts = config.n_routed_experts
        self.top_k = config.num_experts_per_tok
        self.aux_loss_alpha = float(config.aux_loss_alpha) if config.seq_aux else 0.0
        self.bias_update_rate = config.bias_update_rate
        self.gate = Router(config)
        self.experts = GroupedExperts(config, compute_dtype)
        self.has_shared = config.n_shared_experts > 0
        if self.has_shared:
            self.shared_experts = MLP(h, config.moe_intermediate_size * config.n_shared_experts,
                                      compute_dtype, config.initializer_range, config.num_hidden_layers)
        self.expert_load = Parameter(initializer(Zero(), [self.num_experts], ms.float32),
                                     name="expert_load", requires_grad=False)

    def _sequence_aux_loss(self, chosen, scores, batch):
        """alpha * sum_i f_i P_i per sequence, averaged over the batch (DeepSeek-V3 eq. 17-20)."""
        chosen = chosen.reshape(batch, -1, self.num_experts)
        probs = scores.reshape(batch, -1, self.num_experts)
        probs = probs / (probs.sum(-1, keepdims=True) + 1e-20)
        freq = chosen.mean(1) * (self.num_experts / self.top_k)
        return self.aux_loss_alpha * (freq * probs.mean(1)).sum(-1).mean()

    def construct(self, x):
        b, s, h = x.shape
        flat = x.reshape(b * s, h)
        combine, chosen, scores = self.gate(flat)
        ops.assign_add(self.expert_load, chosen.sum(0))
        out = self.experts(flat, combine).astype(ms.float32)
        if self.has_shared:
            out = out + self.shared_experts(flat).astype(ms.float32)
        aux = ops.zeros((), ms.float32)
        if self.aux_loss_alpha > 0:
            aux = self._sequence_aux_loss(chosen, scores, b)
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


def update_expert_bias(model, load=None, rate=None):
    """Aux-loss-free balancing step: ``bias += rate * sign(mean(load) - load)`` per MoE layer, then
    reset the counters. ``load`` defaults to :func:`expert_load`; returns the load used."""
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
    return load
