"""Pipeline stages of a built model: the slice of it one pipeline (virtual) stage runs.

A stage keeps *references* to the model's own cells (so parameter names stay the model's global
Hugging Face names, ``model.layers.17...`` on whichever stage holds layer 17) and drops the rest:
the first stage embeds, every stage runs its decoder layers, the last stage runs the final norm,
the head, the loss and DeepSeek-V3's MTP modules. ``construct(x, input_ids, labels, loss_mask,
position_ids=None, attention_mask=None)`` returns ``(out, loss_part)``: ``out`` the hidden states
sent to the next stage (a scalar zero on the last), ``loss_part`` this stage's share of the model's
summed loss (the head's cross entropy and MTP terms on the last stage, each stage's MoE auxiliary
terms), so the parts over all stages add up to ``model(input_ids, labels, loss_mask, ...)``.

The first and last stage may both need the embedding table (Llama's tied head; DeepSeek's MTP
modules embed the shifted tokens): each holds a copy under the same name, kept equal by summing
their gradients (:func:`shares_embedding`; the pipeline step does the sum, as Megatron does).
"""
from typing import Sequence

import mindspore as ms
from mindspore import nn, ops

from mfcore.models.deepseek_v3.model import DeepseekV3ForCausalLM, shift_left
from mfcore.models.llama.model import LlamaForCausalLM, default_positions, tied_logits

EMBEDDING = "model.embed_tokens.weight"


def keep_layers(layers: nn.CellList, indices: Sequence[int]) -> nn.CellList:
    """The decoder layers ``indices`` (global numbers) of ``layers``, keeping their global names.

    The names are put back as they were, not rebuilt from the cell paths: a layer parallelized
    before the cut holds wrapper cells (e.g. a tensor-parallel ``RegionInput`` around DeepSeek's
    shared experts) whose paths are not the HF names the parameters keep."""
    chosen = [layers[i] for i in indices]
    names = {id(p): p.name for layer in chosen for p in layer.get_parameters()}
    kept = nn.CellList(chosen)   # renumbers its cells' parameters from 0
    for layer in kept:
        for p in layer.get_parameters():
            p.name = names[id(p)]
    return kept


def shares_embedding(model) -> bool:
    """Whether the last stage needs the embedding table too (tied head, or MTP modules)."""
    if isinstance(model, LlamaForCausalLM):
        return bool(model.tie_word_embeddings)
    return getattr(model, "num_mtp", 0) > 0


class _Stage(nn.Cell):
    """What every family's stage shares: rotary tables and the attention mask of the micro batch."""

    def __init__(self, model, inner, layers, first: bool, last: bool):
        super().__init__(auto_prefix=False)   # keep the model's parameter names
        self.first, self.last = bool(first), bool(last)
        self.layer_ids = tuple(layers)
        self.compute_dtype = model.compute_dtype
        self.rotary, self.attention_mask = inner.rotary, inner.attention_mask
        self.layers = keep_layers(inner.layers, layers)
        if first or (last and shares_embedding(model)):
            self.embed_tokens = inner.embed_tokens
        if last:
            self.norm = inner.norm
            self.loss = model.loss
            self.chunked_loss = model.chunked_loss

    def tables(self, input_ids, position_ids, attention_mask):
        if position_ids is None:
            position_ids = default_positions(input_ids)
        cos, sin = self.rotary(position_ids)
        return cos, sin, self.attention_mask(input_ids.shape[1], attention_mask)

    def cross_entropy(self, logits, labels, loss_mask):
        vocab = logits.shape[-1]
        return self.loss(logits.reshape(-1, vocab), labels.reshape(-1), loss_mask.reshape(-1))


class LlamaStage(_Stage):
    """Layers ``layers`` of a :class:`LlamaForCausalLM` (embedding if ``first``, head if ``last``)."""

    def __init__(self, model, layers, first, last):
        super().__init__(model, model.model, layers, first, last)
        self.tied = bool(model.tie_word_embeddings)
        if last and not self.tied:
            self.lm_head = model.lm_head

    def construct(self, x, input_ids, labels, loss_mask, position_ids=None, attention_mask=None):
        cos, sin, mask = self.tables(input_ids, position_ids, attention_mask)
        h = x
        if self.first:
            h = self.embed_tokens(input_ids).astype(ms.float32)
        for layer in self.layers:
            h = layer(h, cos, sin, mask)
        if not self.last:
            return h, ops.zeros((), ms.float32)
        return ops.zeros((), ms.float32), self.head_loss(self.norm(h), labels, loss_mask)

    def head_loss(self, hidden, labels, loss_mask):
        """As :meth:`LlamaForCausalLM.head_loss`, on this stage's cells."""
        weight = self.embed_tokens.weight if self.tied else self.lm_head.weight
        if self.chunked_loss.applies(labels.size, self.training):
            return self.chunked_loss(hidden, weight, labels, loss_mask)
        if self.tied:
            return self.cross_entropy(tied_logits(hidden, weight, self.compute_dtype), labels, loss_mask)
        return self.cross_entropy(self.lm_head(hidden).astype(ms.float32), labels, loss_mask)


class DeepseekV3Stage(_Stage):
    """Decoder layers ``layers`` of a DeepSeek-V3 model; the last stage adds its MTP modules."""

    def __init__(self, model, layers, first, last):
        num_main = model.num_hidden_layers
        ids = list(layers) + (list(range(num_main, num_main + model.num_mtp)) if last else [])
        super().__init__(model, model.model, ids, first, last)
        self.num_mtp = model.num_mtp if last else 0
        self.num_main = len(ids) - self.num_mtp
        self.mtp_weight = model.mtp_weight
        if last:
            self.lm_head = model.lm_head

    def _ce(self, hidden, labels, loss_mask):
        if self.chunked_loss.applies(labels.size, self.training):
            return self.chunked_loss(hidden, self.lm_head.weight, labels, loss_mask)
        return self.cross_entropy(self.lm_head(hidden).astype(ms.float32), labels, loss_mask)

    def construct(self, x, input_ids, labels, loss_mask, position_ids=None, attention_mask=None):
        cos, sin, mask = self.tables(input_ids, position_ids, attention_mask)
        loss_mask = loss_mask.astype(ms.float32)
        h = x
        if self.first:
            h = self.embed_tokens(input_ids).astype(ms.float32)
        aux = ops.zeros((), ms.float32)
        for i in range(self.num_main):
            h, layer_aux = self.layers[i](h, cos, sin, mask)
            aux = aux + layer_aux
        if not self.last:
            return h, aux * loss_mask.sum()
        loss = self._ce(self.norm(h), labels, loss_mask)
        mtp = ops.zeros((), ms.float32)
        ids, lbl, lmask = input_ids, labels, loss_mask
        for k in range(self.num_mtp):   # DeepseekV3ForCausalLM._mtp_loss, on this stage's cells
            ids, lbl, lmask = shift_left(ids, 0), shift_left(lbl, 0), shift_left(lmask, 0)
            layer = self.layers[self.num_main + k]
            h, layer_aux = layer(h, self.embed_tokens(ids), cos, sin, mask)
            mtp = mtp + self._ce(layer.shared_head(h), lbl, lmask)
            aux = aux + layer_aux
        if self.num_mtp > 0:
            loss = loss + self.mtp_weight * mtp
        return ops.zeros((), ms.float32), loss + aux * loss_mask.sum()


def pipeline_stage(model, layers: Sequence[int], first: bool, last: bool) -> nn.Cell:
    """The stage of ``model`` holding decoder layers ``layers`` (global numbers)."""
    if isinstance(model, LlamaForCausalLM):
        return LlamaStage(model, layers, first, last)
    if isinstance(model, DeepseekV3ForCausalLM):
        return DeepseekV3Stage(model, layers, first, last)
    raise TypeError(f"no pipeline stages for a model of type {type(model).__name__}")
