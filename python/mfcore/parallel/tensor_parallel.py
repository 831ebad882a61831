"""Tensor (and sequence) parallelism applied to a model from outside it, Megatron-LM style.

``parallelize_model(model, ctx)`` applies the model family's :class:`~mfcore.models.family.
TensorParallelPlan` (which cells split how: ``models/<family>/parallel_plan.py``); this module knows
the split styles, not the layer names:

- ``vocab_embedding`` → :class:`VocabParallelEmbedding`; ``output`` → column-parallel over the vocab
  (skipped with tied embeddings, which use the vocab-parallel table directly); the loss →
  vocab-parallel cross entropy, so full-vocabulary logits never exist on one rank (the chunked
  head loss of ``training.loss_chunk_tokens`` is switched off).
- ``column`` / ``row`` → :class:`ColumnParallelLinear` / :class:`RowParallelLinear`; the plan's
  ``divided`` head counts are divided by the TP size; ``enter`` makes a norm enter the TP region,
  ``enter_input`` a block's input (:class:`RegionInput`).
- ``sequence`` marks a replicated cell that runs on sequence shards (partial gradients under
  sequence parallelism); ``full_sequence`` runs a block replicated on the whole sequence
  (:class:`FullSequence`, sequence parallelism only), e.g. a MoE whose routed experts are not split;
  with expert parallelism (which needs sequence parallelism with TP) the block is not wrapped: it
  runs on this rank's sequence shard, its entries with sequence parallelism (``sequence`` cells in
  it, e.g. the router, then get partial gradients).
- with ``sequence_parallel`` the residual stream between blocks is split along the sequence, so
  norms (and dropout) run on ``s / tp`` tokens per rank.

The plan is recorded in :mod:`mfcore.parallel.param_layout` (the one owner of layouts) for the
gradient reducer, the norm, the optimizers and checkpoints: the split axis of each sharded
parameter (each rank holds slice ``tp_rank`` of ``tp_size`` along it) and the replicated
parameters whose per-rank gradient is only a partial sum (the plan's ``partial_grads`` always, e.g.
qk-norm weights or MLA's down projections; norms, ``sequence`` cells and
row-parallel biases under sequence parallelism).
"""
from mfcore.errors import ConfigError
from mfcore.models.registry import family_of
from mfcore.parallel.param_layout import record_tp_plan
from mfcore.parallel.tp_layers import (ColumnParallelLinear, FullSequence, RegionInput, RowParallelLinear,
                                       VocabParallelCrossEntropySum, VocabParallelEmbedding, enter_region)


def parallelize_model(model, ctx):
    """Return ``model`` with its projections split over ``ctx``'s TP group (no-op when TP is 1)."""
    if ctx.tp_size == 1:
        return model
    plan = _plan_of(model, ctx.tp_size)
    applier = _Applier(ctx, model)
    applier.apply_all(model, plan.model)
    for layer in model.decoder_layers():
        applier.apply_all(layer, plan.layer + _variant(layer, plan.layer_variants))
        for path in plan.divided:
            parent, attr = _resolve(layer, path)
            setattr(parent, attr, getattr(parent, attr) // ctx.tp_size)
        applier.partial += [p.name for p in (_find(layer, path) for path in plan.partial_grads) if p is not None]
    if plan.vocab_parallel_loss:
        model.loss = VocabParallelCrossEntropySum(ctx, model.config.vocab_size // ctx.tp_size)
    # the chunked head reads the whole head weight; split over the vocab, each rank's logits are
    # already 1/tp of them (and the vocab-parallel loss needs them all at once)
    if hasattr(model, "chunked_loss"):
        model.chunked_loss.set_chunk_tokens(0)
    record_tp_plan(model, applier.sharded, applier.partial)
    return model


def _variant(layer, variants):
    """The entries of the first variant whose marker path ``layer`` has (none: ``()``)."""
    for marker, entries in variants:
        if _find(layer, marker) is not None:
            return entries
    return ()


def _resolve(root, path):
    """(parent object, attribute name) of a dotted ``path`` under ``root``."""
    *parents, attr = path.split(".")
    for name in parents:
        root = getattr(root, name)
    return root, attr


def _find(root, path):
    """The object at ``path`` under ``root``, or None where the model has no such part."""
    for name in path.split("."):
        root = getattr(root, name, None)
        if root is None:
            return None
    return root


class _WithoutSequenceParallel:
    """``ctx`` as seen inside a ``full_sequence`` block: the whole sequence is there."""

    sequence_parallel = False

    def __init__(self, ctx):
        self._ctx = ctx

    def __getattr__(self, name):
        return getattr(self._ctx, name)


class _Applier:
    """Does the swaps, keeps every Parameter's original name, records sharded/partial names."""

    def __init__(self, ctx, model):
        self.ctx, self.model = ctx, model
        self.sharded, self.partial = {}, []

    def apply_all(self, root, entries):
        """Apply ``entries`` under ``root``, skipping paths it lacks; entries inside a
        ``full_sequence`` block see no sequence parallelism, and the block wraps after them."""
        # under expert parallelism the block runs on sequence shards instead (each TP rank routes
        # its own tokens; expert_parallel exchanges them), its entries see sequence parallelism
        shards = getattr(self.ctx, "ep_size", 1) > 1
        whole = ([path for path, style in entries if style == "full_sequence"]
                 if self.ctx.sequence_parallel and not shards else [])
        inner = _WithoutSequenceParallel(self.ctx)
        for path, style in entries:
            if _find(root, path) is None or style == "full_sequence":
                continue
            inside = any(path.startswith(block + ".") for block in whole)
            self.apply(root, path, style, inner if inside else self.ctx)
        for path in whole:
            if _find(root, path) is not None:
                parent, attr = _resolve(root, path)
                self._wrap(parent, attr, FullSequence, self.ctx)

    def apply(self, root, path, style, ctx=None):
        ctx = ctx or self.ctx
        parent, attr = _resolve(root, path)
        cell = getattr(parent, attr)
        if style == "enter":
            enter_region(cell, ctx)
            if ctx.sequence_parallel:
                self.partial.append(cell.weight.name)
        elif style == "enter_input":
            self._wrap(parent, attr, RegionInput, ctx)
        elif style == "sequence":
            if ctx.sequence_parallel:
                self.partial += [p.name for p in cell.trainable_params()]
        elif style == "vocab_embedding":
            self._replace(parent, attr, VocabParallelEmbedding(cell, ctx), ctx)
        elif style == "output":
            if not getattr(self.model, "tie_word_embeddings", False):
                self._replace(parent, attr, ColumnParallelLinear(cell, ctx, attr), ctx)
        elif style == "column":
            self._replace(parent, attr, ColumnParallelLinear(cell, ctx, attr), ctx)
        elif style == "row":
            self._replace(parent, attr, RowParallelLinear(cell, ctx, attr), ctx)
        else:
            raise ConfigError(f"tensor-parallel plan: unknown style {style!r} for {path}")

    def _wrap(self, parent, attr, wrapper, ctx):
        """Put ``wrapper(cell, ctx)`` in ``cell``'s place; its parameters keep their names."""
        cell = getattr(parent, attr)
        names = {id(p): p.name for p in cell.get_parameters()}
        self._replace(parent, attr, wrapper(cell, ctx), ctx, names)

    def _replace(self, parent, attr, new_cell, ctx, names=None):
        names = names or {id(p): p.name for p in new_cell.get_parameters()}
        setattr(parent, attr, new_cell)
        for p in new_cell.get_parameters():  # MindSpore re-prefixes on assignment: restore
            p.name = names[id(p)]
        if isinstance(new_cell, ColumnParallelLinear):
            self.sharded[new_cell.weight.name] = 1
            if new_cell.has_bias:
                self.sharded[new_cell.bias.name] = 0
        elif isinstance(new_cell, (RowParallelLinear, VocabParallelEmbedding)):
            self.sharded[new_cell.weight.name] = 0
            if getattr(new_cell, "has_bias", False) and ctx.sequence_parallel:
                self.partial.append(new_cell.bias.name)


def _plan_of(model, tp):
    """The family's plan, once every dimension it splits is divisible by the TP size."""
    family = family_of(model)
    plan = family.tensor_parallel_plan
    if plan is None:
        raise ConfigError(f"tensor parallelism has no plan for the {family.name} model family yet "
                          f"(models/{family.name}/ defines none); use parallel.tensor=1")
    for field in plan.divisible:
        value = getattr(model.config, field)
        if value % tp:
            raise ConfigError(f"model {field}={value} is not divisible by parallel.tensor={tp}")
    return plan
