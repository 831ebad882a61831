"""Tensor (and sequence) parallelism applied to a model from outside it, Megatron-LM style.

``parallelize_model(model, ctx)`` swaps a Llama-family model's layers in place:

- ``embed_tokens`` → :class:`VocabParallelEmbedding`; ``lm_head`` → column-parallel over the vocab
  (tied embeddings use the vocab-parallel table directly); the loss → vocab-parallel cross entropy,
  so full-vocabulary logits never exist on one rank.
- per layer: ``q/k/v_proj``, ``gate/up_proj`` column-parallel (heads and KV groups split across
  ranks, ``num_heads``/``num_key_value_heads`` divided), ``o_proj``/``down_proj`` row-parallel, and
  the norms in front of them made to enter the TP region once per block.
- with ``sequence_parallel`` the residual stream between blocks is split along the sequence, so
  norms (and dropout) run on ``s / tp`` tokens per rank.

The plan is recorded in :mod:`mfcore.parallel.param_layout` (the one owner of layouts) for the
gradient reducer, the norm, the optimizers and checkpoints: the split axis of each sharded
parameter (each rank holds slice ``tp_rank`` of ``tp_size`` along it) and the replicated
parameters whose per-rank gradient is only a partial sum (qk-norm weights always, norms and
row-parallel biases under sequence parallelism).
"""
from mfcore.errors import ConfigError
from mfcore.parallel.param_layout import record_tp_plan
from mfcore.parallel.tp_layers import (ColumnParallelLinear, RowParallelLinear, VocabParallelCrossEntropySum,
                                       VocabParallelEmbedding, enter_region)


def parallelize_model(model, ctx):
    """Return ``model`` with its projections split over ``ctx``'s TP group (no-op when TP is 1)."""
    if ctx.tp_size == 1:
        return model
    _check_supported(model, ctx.tp_size)
    plan = _Plan(ctx)
    inner = model.model
    plan.replace(inner, "embed_tokens", VocabParallelEmbedding(inner.embed_tokens, ctx))
    for layer in model.decoder_layers():
        _parallelize_layer(plan, layer)
    plan.enter(inner.norm)
    if not model.tie_word_embeddings:
        plan.replace(model, "lm_head", ColumnParallelLinear(model.lm_head, ctx, "lm_head"))
    model.loss = VocabParallelCrossEntropySum(ctx, model.config.vocab_size // ctx.tp_size)
    record_tp_plan(model, plan.sharded, plan.partial)
    return model


def _parallelize_layer(plan, layer):
    attn, mlp, ctx = layer.self_attn, layer.mlp, plan.ctx
    plan.enter(layer.input_layernorm)
    for name in ("q_proj", "k_proj", "v_proj"):
        plan.replace(attn, name, ColumnParallelLinear(getattr(attn, name), ctx, name))
    plan.replace(attn, "o_proj", RowParallelLinear(attn.o_proj, ctx, "o_proj"))
    attn.num_heads //= ctx.tp_size
    attn.num_key_value_heads //= ctx.tp_size
    if getattr(attn, "qk_norm", False):  # shared over heads, each rank sees only its heads
        plan.partial += [attn.q_norm.weight.name, attn.k_norm.weight.name]
    plan.enter(layer.post_attention_layernorm)
    for name in ("gate_proj", "up_proj"):
        plan.replace(mlp, name, ColumnParallelLinear(getattr(mlp, name), ctx, name))
    plan.replace(mlp, "down_proj", RowParallelLinear(mlp.down_proj, ctx, "down_proj"))


class _Plan:
    """Does the swaps, keeps every Parameter's original name, records sharded/partial names."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.sharded, self.partial = {}, []

    def replace(self, parent, attr, new_cell):
        names = {id(p): p.name for p in new_cell.get_parameters()}
        setattr(parent, attr, new_cell)
        for p in new_cell.get_parameters():  # MindSpore re-prefixes on assignment: restore
            p.name = names[id(p)]
        self.sharded[new_cell.weight.name] = 1 if isinstance(new_cell, ColumnParallelLinear) else 0
        if isinstance(new_cell, RowParallelLinear) and new_cell.has_bias and self.ctx.sequence_parallel:
            self.partial.append(new_cell.bias.name)
        elif isinstance(new_cell, ColumnParallelLinear) and new_cell.has_bias:
            self.sharded[new_cell.bias.name] = 0

    def enter(self, norm):
        enter_region(norm, self.ctx)
        if self.ctx.sequence_parallel:
            self.partial.append(norm.weight.name)


def _check_supported(model, tp):
    """Llama-family structure, and every split dimension divisible by the TP size."""
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(model, "decoder_layers") or not hasattr(model, "model"):
        raise ConfigError(f"tensor parallelism supports Llama-family models; got {type(model).__name__}")
    for layer in model.decoder_layers():
        if not (hasattr(layer, "self_attn") and hasattr(layer.self_attn, "q_proj") and hasattr(layer, "mlp")
                and hasattr(layer.mlp, "gate_proj")):
            raise ConfigError(f"tensor parallelism supports Llama-family layers; got {type(layer).__name__}")
    for field in ("num_attention_heads", "num_key_value_heads", "intermediate_size", "vocab_size"):
        value = getattr(cfg, field)
        if value % tp:
            raise ConfigError(f"model {field}={value} is not divisible by parallel.tensor={tp}")
