"""mf-ckpt import-ms: checkpoints written by ``mindspore.save_checkpoint`` in MindSpore Transformers'
naming (produced here the way their convert_weight.py scripts turn Hugging Face weights into theirs)
load and give the logits of the source weights; so does a .ckpt of mf-ckpt export-ms."""
import numpy as np
import pytest

from mfcore.checkpoint import CheckpointManager
from mfcore.checkpoint.model_state import MODEL_PREFIX, assign_model_arrays, model_arrays
from mfcore.cli.ckpt import main
from mfcore.models import build_model, config_to_dict, load_model_config
from mfcore.models.hf import hf_state_dict


def _random_model(name):
    import mindspore as ms
    model = build_model(load_model_config(name))
    rng = np.random.default_rng(0)
    for p in model.get_parameters():
        p.set_data(ms.Tensor((0.05 * rng.standard_normal(p.shape)).astype(np.float32)))
    return model


# ---------------------------------------------------------------- their converter, HF -> theirs
def _their_llama_name(name):
    """mindformers/models/llama/convert_weight.py name_replace."""
    for hf, ms_name in (("embed_tokens.weight", "tok_embeddings.embedding_weight"),
                        (".self_attn.q_proj.", ".attention.wq."), (".self_attn.k_proj.", ".attention.wk."),
                        (".self_attn.v_proj.", ".attention.wv."), (".self_attn.o_proj.", ".attention.wo."),
                        (".mlp.gate_proj.", ".feed_forward.w1."), (".mlp.down_proj.", ".feed_forward.w2."),
                        (".mlp.up_proj.", ".feed_forward.w3."), (".input_layernorm.", ".attention_norm."),
                        (".post_attention_layernorm.", ".ffn_norm."), (".norm.", ".norm_out.")):
        name = name.replace(hf, ms_name)
    return name


def _their_llama(hf, cfg, fused):
    out = {_their_llama_name(k): v for k, v in hf.items()}
    if not fused:
        return out
    heads, kv, hidden = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size
    for i in range(cfg.num_hidden_layers):  # convert_qkv_concat_weight with qkv/ffn_concat_hf2mg
        a, f = f"model.layers.{i}.attention", f"model.layers.{i}.feed_forward"
        q, k, v = out.pop(f"{a}.wq.weight"), out.pop(f"{a}.wk.weight"), out.pop(f"{a}.wv.weight")
        groups = [q.reshape(kv, hidden // kv, -1), k.reshape(kv, hidden // heads, -1), v.reshape(kv, hidden // heads, -1)]
        out[f"{a}.w_qkv.weight"] = np.concatenate(groups, 1).reshape(-1, hidden)
        gate, up = out.pop(f"{f}.w1.weight"), out.pop(f"{f}.w3.weight")
        pairs = np.concatenate([gate.reshape(-1, 1, hidden), up.reshape(-1, 1, hidden)], 1)
        out[f"{f}.w_gate_hidden.weight"] = pairs.reshape(-1, hidden)
    return out


def _their_deepseek(hf, cfg, grouped):
    """research/deepseek3/convert_weight.py: _mla_pt_to_ms, _mlp_pt_to_ms, _mtp_pt_to_ms and the rest."""
    h, nope, rope, vd = cfg.num_attention_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
    out, src = {}, dict(hf)
    out["model.tok_embeddings.embedding_weight"] = src.pop("model.embed_tokens.weight")
    out["model.norm_out.weight"] = src.pop("model.norm.weight")
    out["lm_head.weight"] = src.pop("lm_head.weight")
    for i in range(cfg.num_hidden_layers + cfg.num_nextn_predict_layers):
        b, s = f"model.layers.{i}", f"model.layers.{i}.self_attn"
        q_b = src.pop(f"{s}.q_b_proj.weight").reshape(h, nope + rope, -1)
        q_rope = q_b[:, nope:].reshape(h, rope // 2, 2, -1).transpose(0, 2, 1, 3)
        out[f"{b}.attention.l2q_nope_proj.weight"] = q_b[:, :nope].reshape(h * nope, -1)
        out[f"{b}.attention.l2q_pe_proj.weight"] = q_rope.reshape(h * rope, -1)
        kv_a = src.pop(f"{s}.kv_a_proj_with_mqa.weight")
        lora = kv_a.shape[0] - rope
        out[f"{b}.attention.kv2l_latent_kv.weight"] = kv_a[:lora]
        out[f"{b}.attention.kv2l_k_pe.weight"] = kv_a[lora:].reshape(rope // 2, 2, -1).transpose(1, 0, 2).reshape(rope, -1)
        kv_b = src.pop(f"{s}.kv_b_proj.weight").reshape(h, nope + vd, -1)
        out[f"{b}.attention.lkv2kv_k_nope.weight"] = kv_b[:, :nope].reshape(h * nope, -1)
        out[f"{b}.attention.lkv2kv_v.weight"] = kv_b[:, nope:].reshape(h * vd, -1)
        for hf_name, theirs in (("self_attn.q_a_proj", "attention.q2l_proj"), ("self_attn.o_proj", "attention.wo"),
                                ("self_attn.q_a_layernorm", "attention.lq_norm"),
                                ("self_attn.kv_a_layernorm", "attention.lkv_norm"),
                                ("input_layernorm", "attention_norm"), ("post_attention_layernorm", "ffn_norm")):
            out[f"{b}.{theirs}.weight"] = src.pop(f"{b}.{hf_name}.weight")
        _their_mlp(src, out, b, cfg, grouped)
        if i >= cfg.num_hidden_layers:
            k = i - cfg.num_hidden_layers
            src.pop(f"{b}.embed_tokens.weight"), src.pop(f"{b}.shared_head.head.weight")
            for hf_name, theirs in (("enorm", f"mtp_hidden_fusers.{k}.norm_emb"), ("hnorm", f"mtp_hidden_fusers.{k}.norm"),
                                    ("eh_proj", f"mtp_hidden_fusers.{k}.dense"), ("shared_head.norm", f"mtp_norms.{k}")):
                out[f"model.{theirs}.weight"] = src.pop(f"{b}.{hf_name}.weight")
    assert not src, sorted(src)[:5]
    return out


def _their_mlp(src, out, b, cfg, grouped):
    f = f"{b}.feed_forward"
    if f"{b}.mlp.gate_proj.weight" in src:
        for hf_name, theirs in (("gate_proj", "w1"), ("down_proj", "w2"), ("up_proj", "w3")):
            out[f"{f}.{theirs}.weight"] = src.pop(f"{b}.mlp.{hf_name}.weight")
        return
    router = "router_dense.weight" if grouped else "router.dense.weight"
    bias = "topk_bias" if grouped else "router.router.topk_bias"
    out[f"{f}.routed_experts.{router}"] = src.pop(f"{b}.mlp.gate.weight")
    out[f"{f}.routed_experts.{bias}"] = src.pop(f"{b}.mlp.gate.e_score_correction_bias")
    for hf_name, theirs in (("gate_proj", "w1"), ("down_proj", "w2"), ("up_proj", "w3")):
        out[f"{f}.shared_experts.{theirs}.weight"] = src.pop(f"{b}.mlp.shared_experts.{hf_name}.weight")
    stacked = {p: np.stack([src.pop(f"{b}.mlp.experts.{e}.{p}.weight") for e in range(cfg.n_routed_experts)])
               for p in ("gate_proj", "up_proj", "down_proj")}
    e = f"{f}.routed_experts.ffn"
    if grouped:
        out[f"{e}.w1"] = np.concatenate([stacked["gate_proj"].transpose(0, 2, 1), stacked["up_proj"].transpose(0, 2, 1)], -1)
        out[f"{e}.w2"] = stacked["down_proj"].transpose(0, 2, 1)
    else:
        out[f"{e}.w1.weight"], out[f"{e}.w3.weight"] = stacked["gate_proj"], stacked["up_proj"]
        out[f"{e}.w2.weight"] = stacked["down_proj"]


def _save(tensors, path, fmt="ckpt"):
    import mindspore as ms
    items = [{"name": k, "data": ms.Tensor(np.ascontiguousarray(v))} for k, v in tensors.items()]
    ms.save_checkpoint(items, str(path), format=fmt)
    return str(path)


def _logits(model, tokens):
    import mindspore as ms
    out = model(ms.Tensor(tokens))
    return (out[0] if isinstance(out, tuple) else out).asnumpy()


def _imported_logits(root, tokens):
    ckpt = CheckpointManager(root).load("auto")
    assert ckpt.trainer_state["weights_only"] is True
    model = build_model(load_model_config(ckpt.trainer_state["model_config"]))
    assign_model_arrays(model, ckpt.tensors, str(root))
    return _logits(model, tokens)


def _run_config(tmp, model_name):
    path = tmp / "run.yaml"
    path.write_text(f"model:\n  name: {model_name}\ndata:\n  prefixes: [unused]\ntraining:\n  train_steps: 1\n")
    return str(path)


TOKENS = np.random.default_rng(1).integers(1, 4000, (2, 12)).astype(np.int32)


@pytest.mark.parametrize("name, variant, fmt", [("tiny-llama2", "split", "ckpt"), ("tiny-llama3", "fused", "ckpt"),
                                                ("tiny-llama3", "split", "safetensors"),
                                                ("tiny-deepseek-v3", "grouped", "ckpt"),
                                                ("tiny-deepseek-v3", "batched", "safetensors")])
def test_their_checkpoint_gives_the_source_logits(in_tmp, capsys, name, variant, fmt):
    source = _random_model(name)
    hf = hf_state_dict(source)
    cfg = source.config
    theirs = (_their_deepseek(hf, cfg, variant == "grouped") if "deepseek" in name
              else _their_llama(hf, cfg, variant == "fused"))
    assert not set(theirs) & set(hf) - {"lm_head.weight"}  # really their names
    path = _save(theirs, in_tmp / f"theirs.{fmt}", fmt)
    assert main(["import-ms", path, "-c", str(in_tmp / "ckpts"), "--config", _run_config(in_tmp, name)]) == 0
    assert "step_00000000" in capsys.readouterr().out
    np.testing.assert_array_equal(_imported_logits(in_tmp / "ckpts", TOKENS), _logits(source, TOKENS))


def test_export_ms_ckpt_loads_back(in_tmp, capsys):
    source = _random_model("tiny-llama2")
    CheckpointManager(in_tmp / "run").save(3, model_arrays(source), {"model_config": config_to_dict(source.config)})
    assert main(["export-ms", str(in_tmp / "out.ckpt"), "-c", str(in_tmp / "run"), "--prefix", MODEL_PREFIX]) == 0
    assert main(["import-ms", str(in_tmp / "out.ckpt"), "-c", str(in_tmp / "ckpts"),
                 "--config", _run_config(in_tmp, "tiny-llama2")]) == 0
    np.testing.assert_array_equal(_imported_logits(in_tmp / "ckpts", TOKENS), _logits(source, TOKENS))


def test_unknown_names_and_missing_files_are_clear_errors(in_tmp, capsys):
    path = _save({"model.something.else": np.zeros(3, np.float32)}, in_tmp / "x.ckpt")
    assert main(["import-ms", path, "-c", str(in_tmp / "c"), "--config", _run_config(in_tmp, "tiny-llama2")]) == 2
    assert "'model.something.else' is not a MindSpore Transformers" in capsys.readouterr().err
    assert main(["import-ms", str(in_tmp / "none.ckpt"), "-c", str(in_tmp / "c"),
                 "--config", _run_config(in_tmp, "tiny-llama2")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
