"""MindSpore Transformers checkpoints (``.ckpt`` or safetensors, their parameter names) → mfcore.

Their names and layouts are those their ``convert_weight.py`` scripts write from Hugging Face
weights, undone here into Hugging Face names (which mfcore's models load, see
:mod:`mfcore.models.hf`):

- Llama: ``tok_embeddings.embedding_weight``, ``attention.wq/wk/wv/wo``, ``feed_forward.w1/w2/w3``
  (gate/down/up), ``attention_norm``, ``ffn_norm``, ``norm_out``; the fused ``attention.w_qkv``
  (per KV group: its query heads, then its key, then its value) and ``feed_forward.w_gate_hidden``
  (gate and up rows interleaved) are split.
- DeepSeek-V3: MLA split into ``l2q_nope_proj``/``l2q_pe_proj``, ``kv2l_latent_kv``/``kv2l_k_pe``,
  ``lkv2kv_k_nope``/``lkv2kv_v`` with the RoPE rows of the ``pe`` parts de-interleaved (re-interleaved
  here); routed experts stacked (``ffn.w1`` = gate|up ``[E, in, 2I]`` and ``ffn.w2`` for grouped
  matmul, or ``ffn.w1/w2/w3.weight`` ``[E, out, in]``); the router and its bias under either name;
  MTP fusers ``mtp_hidden_fusers.k`` and ``mtp_norms.k``.

A ``.ckpt`` written by ``mf-ckpt export-ms`` (mfcore's own names, ``model/...``) loads as it is.
"""
import os
import re
from typing import Dict

import numpy as np

from mfcore.errors import CheckpointError

LAYER_RENAMES = [
    (".attention.wq.", ".self_attn.q_proj."), (".attention.wk.", ".self_attn.k_proj."),
    (".attention.wv.", ".self_attn.v_proj."), (".attention.wo.", ".self_attn.o_proj."),
    (".attention.q2l_proj.", ".self_attn.q_a_proj."), (".attention.lq_norm.", ".self_attn.q_a_layernorm."),
    (".attention.lkv_norm.", ".self_attn.kv_a_layernorm."), (".attention.q_proj.", ".self_attn.q_proj."),
    (".attention_norm.", ".input_layernorm."), (".ffn_norm.", ".post_attention_layernorm."),
    (".feed_forward.shared_experts.w1.", ".mlp.shared_experts.gate_proj."),
    (".feed_forward.shared_experts.w2.", ".mlp.shared_experts.down_proj."),
    (".feed_forward.shared_experts.w3.", ".mlp.shared_experts.up_proj."),
    (".feed_forward.routed_experts.router_dense.", ".mlp.gate."),
    (".feed_forward.routed_experts.router.dense.", ".mlp.gate."),
    (".feed_forward.w1.", ".mlp.gate_proj."), (".feed_forward.w2.", ".mlp.down_proj."),
    (".feed_forward.w3.", ".mlp.up_proj."),
]
TOP_RENAMES = {"model.tok_embeddings.embedding_weight": "model.embed_tokens.weight",
               "model.norm_out.weight": "model.norm.weight", "lm_head.weight": "lm_head.weight"}
TOPK_BIAS = re.compile(r"^(model\.layers\.\d+)\.feed_forward\.routed_experts\.(router\.router\.)?topk_bias$")
MTP = re.compile(r"^model\.(mtp_hidden_fusers|mtp_norms)\.(\d+)(?:\.(norm_emb|norm|dense))?\.weight$")


def read_ms_weights(path: str) -> Dict[str, np.ndarray]:
    """``{name: float32 numpy}`` of a ``.ckpt`` file, a ``.safetensors`` file or a directory of them."""
    import mindspore as ms
    files = [path]
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith((".ckpt", ".safetensors")))
        if not files:
            raise CheckpointError(f"{path}: no .ckpt or .safetensors file in the directory")
    out: Dict[str, np.ndarray] = {}
    for f in files:
        fmt = "safetensors" if f.endswith(".safetensors") else "ckpt"
        try:
            params = ms.load_checkpoint(f, format=fmt)
        except (OSError, ValueError, RuntimeError, TypeError) as e:
            raise CheckpointError(f"{f}: cannot read as a MindSpore {fmt} checkpoint: {e}") from None
        for name, p in params.items():
            value = p.float() if p.dtype == ms.bfloat16 else p
            out[name] = value.asnumpy().astype(np.float32)
    return out


def is_mfcore_export(tensors: Dict[str, np.ndarray]) -> bool:
    """Written by ``mf-ckpt export-ms`` (names ``model/<parameter>``)."""
    return any(k.startswith("model/") for k in tensors)


def mindformers_to_hf(tensors: Dict[str, np.ndarray], cfg) -> Dict[str, np.ndarray]:
    """Their names and layouts → Hugging Face's, for the model described by ``cfg`` (an mfcore model config)."""
    rest = dict(tensors)
    out: Dict[str, np.ndarray] = {}
    for layer in sorted({int(m.group(1)) for k in rest for m in [re.match(r"^model\.layers\.(\d+)\.", k)] if m}):
        _fused_llama(rest, out, f"model.layers.{layer}", cfg)
        _mla(rest, out, f"model.layers.{layer}", cfg)
        _experts(rest, out, f"model.layers.{layer}", cfg)
    for name in list(rest):
        value = rest.pop(name)
        out[_rename(name, cfg)] = value
    return out


def _rename(name: str, cfg) -> str:
    if name in TOP_RENAMES:
        return TOP_RENAMES[name]
    m = TOPK_BIAS.match(name)
    if m:
        return f"{m.group(1)}.mlp.gate.e_score_correction_bias"
    m = MTP.match(name)
    if m:
        layer = f"model.layers.{cfg.num_hidden_layers + int(m.group(2))}"
        if m.group(1) == "mtp_norms":
            return f"{layer}.shared_head.norm.weight"
        return f"{layer}.{ {'norm_emb': 'enorm', 'norm': 'hnorm', 'dense': 'eh_proj'}[m.group(3)]}.weight"
    for theirs, ours in LAYER_RENAMES:
        if theirs in name:
            return name.replace(theirs, ours)
    raise CheckpointError(f"tensor {name!r} is not a MindSpore Transformers Llama or DeepSeek-V3 parameter name")


def _fused_llama(rest, out, base, cfg) -> None:
    qkv = rest.pop(f"{base}.attention.w_qkv.weight", None)
    if qkv is not None:
        kv, hd = cfg.num_key_value_heads, cfg.head_dim
        rep = cfg.num_attention_heads // kv
        groups = qkv.reshape(kv, (rep + 2) * hd, -1)
        out[f"{base}.self_attn.q_proj.weight"] = groups[:, :rep * hd].reshape(kv * rep * hd, -1)
        out[f"{base}.self_attn.k_proj.weight"] = groups[:, rep * hd:(rep + 1) * hd].reshape(kv * hd, -1)
        out[f"{base}.self_attn.v_proj.weight"] = groups[:, (rep + 1) * hd:].reshape(kv * hd, -1)
    gate_up = rest.pop(f"{base}.feed_forward.w_gate_hidden.weight", None)
    if gate_up is not None:
        pairs = gate_up.reshape(gate_up.shape[0] // 2, 2, -1)
        out[f"{base}.mlp.gate_proj.weight"] = np.ascontiguousarray(pairs[:, 0])
        out[f"{base}.mlp.up_proj.weight"] = np.ascontiguousarray(pairs[:, 1])


def _interleave_rope(rows: np.ndarray, heads: int, rope: int) -> np.ndarray:
    """Undo their ``reshape(h, rope/2, 2) → (h, 2, rope/2)`` of the RoPE rows."""
    return rows.reshape(heads, 2, rope // 2, -1).transpose(0, 2, 1, 3).reshape(heads, rope, -1)


def _mla(rest, out, base, cfg) -> None:
    a = f"{base}.attention"
    if f"{a}.l2q_nope_proj.weight" in rest or f"{a}.q_nope_proj.weight" in rest:
        kind = "l2q" if f"{a}.l2q_nope_proj.weight" in rest else "q"
        h, nope, rope = cfg.num_attention_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim
        q_nope = rest.pop(f"{a}.{kind}_nope_proj.weight").reshape(h, nope, -1)
        q_pe = _interleave_rope(rest.pop(f"{a}.{kind}_pe_proj.weight"), h, rope)
        name = "q_b_proj" if kind == "l2q" else "q_proj"
        out[f"{base}.self_attn.{name}.weight"] = np.concatenate([q_nope, q_pe], 1).reshape(h * (nope + rope), -1)
    if f"{a}.kv2l_latent_kv.weight" in rest:
        k_pe = _interleave_rope(rest.pop(f"{a}.kv2l_k_pe.weight"), 1, cfg.qk_rope_head_dim)[0]
        out[f"{base}.self_attn.kv_a_proj_with_mqa.weight"] = np.concatenate(
            [rest.pop(f"{a}.kv2l_latent_kv.weight"), k_pe], 0)
    if f"{a}.lkv2kv_k_nope.weight" in rest:
        h = cfg.num_attention_heads
        k = rest.pop(f"{a}.lkv2kv_k_nope.weight").reshape(h, cfg.qk_nope_head_dim, -1)
        v = rest.pop(f"{a}.lkv2kv_v.weight").reshape(h, cfg.v_head_dim, -1)
        out[f"{base}.self_attn.kv_b_proj.weight"] = np.concatenate([k, v], 1).reshape(h * (k.shape[1] + v.shape[1]), -1)


def _experts(rest, out, base, cfg) -> None:
    e = f"{base}.feed_forward.routed_experts.ffn"
    if f"{e}.w1" in rest:  # grouped matmul: [E, in, out], gate|up concatenated on the last axis
        w1, down = rest.pop(f"{e}.w1"), rest.pop(f"{e}.w2").transpose(0, 2, 1)
        inter = w1.shape[2] // 2
        gate, up = w1[:, :, :inter].transpose(0, 2, 1), w1[:, :, inter:].transpose(0, 2, 1)
    elif f"{e}.w1.weight" in rest:  # batched matmul: [E, out, in]
        gate, up, down = rest.pop(f"{e}.w1.weight"), rest.pop(f"{e}.w3.weight"), rest.pop(f"{e}.w2.weight")
    else:
        return
    for k in range(gate.shape[0]):
        for proj, w in (("gate_proj", gate), ("up_proj", up), ("down_proj", down)):
            out[f"{base}.mlp.experts.{k}.{proj}.weight"] = np.ascontiguousarray(w[k])


def load_ms_into(model, path: str) -> None:
    """Fill ``model`` from the MindSpore checkpoint at ``path`` (their names, or mf-ckpt export-ms's)."""
    from mfcore.checkpoint.model_state import MODEL_PREFIX, assign_model_arrays
    from mfcore.models.hf import load_hf_state_dict
    tensors = read_ms_weights(path)
    if is_mfcore_export(tensors):
        assign_model_arrays(model, {k: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}, path)
        return
    load_hf_state_dict(model, mindformers_to_hf(tensors, model.config), source=path)


def import_ms(path: str, root: str, model_cfg) -> str:
    """The weights at ``path`` as checkpoint ``step_00000000`` under ``root`` (train from it with
    ``checkpoint.resume: <root>/step_00000000``); ``model_cfg`` describes the model they belong to."""
    from mfcore.checkpoint.manager import CheckpointManager
    from mfcore.checkpoint.model_state import model_arrays
    from mfcore.models import build_model, config_to_dict
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint file or directory")
    model = build_model(model_cfg)
    load_ms_into(model, path)
    state = {"model_config": config_to_dict(model_cfg), "weights_only": True, "imported_from": os.path.abspath(path)}
    return CheckpointManager(root).save(0, model_arrays(model), state).path
