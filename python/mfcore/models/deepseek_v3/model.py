"""DeepSeek-V3 as MindSpore Cells: MLA attention, dense then MoE layers, multi-token prediction.

Hugging Face layout, 1:1: ``model.embed_tokens``, ``model.layers.N`` (N < num_hidden_layers: decoder
layers; the next ``num_nextn_predict_layers`` entries are the MTP modules, exactly where Hugging
Face's checkpoint keeps them), ``model.norm``, ``lm_head``. An MTP module is a decoder layer plus
``enorm``, ``hnorm``, ``eh_proj`` and ``shared_head.norm``; it shares the embedding and the output
head with the main model (the HF checkpoint's copies are written on export and not read back).

Loss (with labels): ``sum(mask * CE)`` of the main head + ``mtp_loss_weight / D * sum_k sum(mask_k *
CE_k)`` where module ``k`` predicts token ``t + k + 1`` + ``(sum of the layers' sequence aux losses) *
sum(mask)``, so dividing by the loss-token count gives the paper's objective.
"""
import mindspore as ms
from mindspore import nn, ops

from mfcore.models.layers import (MLP, AttentionMask, ChunkedHeadLoss, Embedding, Linear, MaskedCrossEntropySum,
                                  RMSNorm, RotaryEmbedding, use_flash_attention)
from mfcore.models.layers.mla import MultiLatentAttention
from mfcore.models.layers.moe import MoE
from mfcore.models.llama.model import default_positions


class DeepseekV3DecoderLayer(nn.Cell):
    """Pre-norm block with MLA and a dense MLP or an MoE; returns ``(hidden, aux_loss)``."""

    def __init__(self, config, index, compute_dtype=ms.float32, flash=False):
        super().__init__()
        h, eps = config.hidden_size, config.rms_norm_eps
        self.input_layernorm = RMSNorm(h, eps, compute_dtype)
        self.self_attn = MultiLatentAttention(config, compute_dtype, flash)
        self.post_attention_layernorm = RMSNorm(h, eps, compute_dtype)
        self.is_moe = config.is_moe_layer(index)
        if self.is_moe:
            self.mlp = MoE(config, compute_dtype)
        else:
            self.mlp = MLP(h, config.intermediate_size, compute_dtype, config.initializer_range,
                           config.num_hidden_layers)

    def construct(self, x, cos, sin, mask):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask).astype(ms.float32)
        if self.is_moe:
            y, aux = self.mlp(self.post_attention_layernorm(h))
        else:
            y = self.mlp(self.post_attention_layernorm(h))
            aux = ops.zeros((), ms.float32)
        return h + y.astype(ms.float32), aux


class SharedHead(nn.Cell):
    """The MTP module's own final norm (its output head is the main model's ``lm_head``)."""

    def __init__(self, config, compute_dtype):
        super().__init__()
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, compute_dtype)

    def construct(self, x):
        return self.norm(x)


class MultiTokenPredictionLayer(DeepseekV3DecoderLayer):
    """``h_k = Layer(eh_proj([enorm(Emb(t_{i+k})); hnorm(h_{k-1})]))`` (DeepSeek-V3 eq. 21-22)."""

    def __init__(self, config, index, compute_dtype=ms.float32, flash=False):
        super().__init__(config, index, compute_dtype, flash)
        h = config.hidden_size
        self.enorm = RMSNorm(h, config.rms_norm_eps, compute_dtype)
        self.hnorm = RMSNorm(h, config.rms_norm_eps, compute_dtype)
        self.eh_proj = Linear(2 * h, h, False, compute_dtype, config.initializer_range)
        self.shared_head = SharedHead(config, compute_dtype)

    def construct(self, previous, embedded, cos, sin, mask):
        joined = ops.concat((self.enorm(embedded), self.hnorm(previous)), -1)
        return super().construct(self.eh_proj(joined).astype(ms.float32), cos, sin, mask)


class DeepseekV3Model(nn.Cell):
    """Embedding, decoder layers (+ MTP modules, run by the causal-LM wrapper) and final norm."""

    def __init__(self, config, compute_dtype=ms.float32):
        super().__init__()
        flash = use_flash_attention()
        self.num_hidden_layers = config.num_hidden_layers
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size, compute_dtype,
                                      config.initializer_range)
        layers = [DeepseekV3DecoderLayer(config, i, compute_dtype, flash)
                  for i in range(config.num_hidden_layers)]
        layers += [MultiTokenPredictionLayer(config, config.num_hidden_layers + k, compute_dtype, flash)
                   for k in range(config.num_nextn_predict_layers)]
        self.layers = nn.CellList(layers)
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, compute_dtype)
        self.rotary = RotaryEmbedding(config.qk_rope_head_dim, config.rope_theta, config.rope_scaling,
                                      deepseek=True)
        self.attention_mask = AttentionMask(flash)

    def construct(self, input_ids, cos, sin, mask):
        """Hidden states after the last decoder layer, BEFORE the final norm, and the aux loss sum."""
        h = self.embed_tokens(input_ids).astype(ms.float32)
        aux = ops.zeros((), ms.float32)
        for i in range(self.num_hidden_layers):
            h, layer_aux = self.layers[i](h, cos, sin, mask)
            aux = aux + layer_aux
        return h, aux


def shift_left(x, fill):
    """``x[:, 1:]`` followed by one column of ``fill`` (static shape, for the MTP targets)."""
    pad = ops.full((x.shape[0], 1), fill, dtype=x.dtype)
    return ops.concat((x[:, 1:], pad), 1)


class DeepseekV3ForCausalLM(nn.Cell):
    """``model(input_ids)`` → main-head logits; with labels → the summed training loss (see module)."""

    def __init__(self, config, compute_dtype=ms.float32):
        super().__init__()
        self.config = config
        self.compute_dtype = compute_dtype
        self.num_hidden_layers = config.num_hidden_layers
        self.num_mtp = config.num_nextn_predict_layers
        self.mtp_weight = float(config.mtp_loss_weight) / max(self.num_mtp, 1)
        self.model = DeepseekV3Model(config, compute_dtype)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, False, compute_dtype,
                              config.initializer_range)
        self.loss = MaskedCrossEntropySum()
        self.chunked_loss = ChunkedHeadLoss(config.hidden_size, compute_dtype)

    def decoder_layers(self):
        """Decoder layers and MTP modules (for recompute and parallel passes)."""
        return list(self.model.layers)

    def _ce(self, hidden, labels, loss_mask):
        if self.chunked_loss.applies(labels.size, self.training):
            return self.chunked_loss(hidden, self.lm_head.weight, labels, loss_mask)
        logits = self.lm_head(hidden).astype(ms.float32)
        vocab = logits.shape[-1]
        return self.loss(logits.reshape(-1, vocab), labels.reshape(-1), loss_mask.reshape(-1))

    def _mtp_loss(self, hidden, input_ids, labels, loss_mask, cos, sin, mask):
        total = ops.zeros((), ms.float32)
        aux = ops.zeros((), ms.float32)
        for k in range(self.num_mtp):
            input_ids = shift_left(input_ids, 0)
            labels = shift_left(labels, 0)
            loss_mask = shift_left(loss_mask, 0)
            layer = self.model.layers[self.num_hidden_layers + k]
            hidden, layer_aux = layer(hidden, self.model.embed_tokens(input_ids), cos, sin, mask)
            total = total + self._ce(layer.shared_head(hidden), labels, loss_mask)
            aux = aux + layer_aux
        return total, aux

    def construct(self, input_ids, labels=None, loss_mask=None, position_ids=None, attention_mask=None):
        if position_ids is None:
            position_ids = default_positions(input_ids)
        cos, sin = self.model.rotary(position_ids)
        mask = self.model.attention_mask(input_ids.shape[1], attention_mask)
        hidden, aux = self.model(input_ids, cos, sin, mask)
        if labels is None:
            return self.lm_head(self.model.norm(hidden)).astype(ms.float32)
        loss_mask = loss_mask.astype(ms.float32)
        loss = self._ce(self.model.norm(hidden), labels, loss_mask)
        if self.num_mtp > 0:
            mtp, mtp_aux = self._mtp_loss(hidden, input_ids, labels, loss_mask, cos, sin, mask)
            loss = loss + self.mtp_weight * mtp
            aux = aux + mtp_aux
        return loss + aux * loss_mask.sum()
