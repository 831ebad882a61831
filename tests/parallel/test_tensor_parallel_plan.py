"""Tensor parallelism applies the model family's plan (models/<family>/parallel_plan.py) without
knowing layer names: the swaps, the split axes, the divided head counts and the partial-gradient
parameters follow the plan (Llama, and DeepSeek-V3's MLA, dense/MoE layer variants and MTP
module), and a family without a plan is refused by name. The split layers are stand-ins here (their collectives
need a launched group); tests/dist runs the real ones on two ranks."""
from dataclasses import replace
from types import SimpleNamespace

import pytest
from mindspore import nn

import mfcore.parallel.tensor_parallel as tp
from mfcore.parallel.param_layout import tp_partial_names, tp_split_axes
from mfcore.errors import ConfigError
from mfcore.models import apply_overrides, build_model
from mfcore.models.registry import FAMILIES, family_of


class _Split(nn.Cell):
    def __init__(self, dense, ctx, name="x"):
        super().__init__()
        self.weight, self.has_bias, self.name_ = dense.weight, False, name


class _Loss(nn.Cell):
    def __init__(self, ctx, local_vocab):
        super().__init__()
        self.local_vocab = local_vocab


class _Column(_Split):
    pass


class _Row(_Split):
    pass


class _Wrap(nn.Cell):
    def __init__(self, cell, ctx):
        super().__init__()
        self.cell = cell


class _RegionInput(_Wrap):
    pass


class _FullSequence(_Wrap):
    pass


@pytest.fixture
def stand_ins(monkeypatch):
    monkeypatch.setattr(tp, "RegionInput", _RegionInput)
    monkeypatch.setattr(tp, "FullSequence", _FullSequence)
    monkeypatch.setattr(tp, "ColumnParallelLinear", _Column)
    monkeypatch.setattr(tp, "RowParallelLinear", _Row)
    monkeypatch.setattr(tp, "VocabParallelEmbedding", _Row)
    monkeypatch.setattr(tp, "VocabParallelCrossEntropySum", _Loss)
    monkeypatch.setattr(tp, "enter_region", lambda norm, ctx: setattr(norm, "entered", True))


def test_llama_plan_is_applied_by_path(stand_ins):
    model = build_model(apply_overrides("tiny-llama3", {"num_hidden_layers": 2, "qk_norm": True}),
                        loss_chunk_tokens=512)
    ctx = SimpleNamespace(tp_size=2, tp_rank=0, sequence_parallel=False)
    tp.parallelize_model(model, ctx)
    assert model.chunked_loss.fused.chunk_tokens == 0   # the split head has no whole weight to chunk
    axes = tp_split_axes(model)
    assert axes["model.embed_tokens.weight"] == 0 and axes["lm_head.weight"] == 1
    for i in range(2):
        base = f"model.layers.{i}"
        for name in ("q_proj", "k_proj", "v_proj"):
            assert axes[f"{base}.self_attn.{name}.weight"] == 1
        assert axes[f"{base}.self_attn.o_proj.weight"] == 0 and axes[f"{base}.mlp.down_proj.weight"] == 0
        layer = model.model.layers[i]
        assert (layer.self_attn.num_heads, layer.self_attn.num_key_value_heads) == (4, 2)
        assert isinstance(layer.mlp.gate_proj, _Column) and isinstance(layer.self_attn.o_proj, _Row)
        assert layer.input_layernorm.entered and layer.post_attention_layernorm.entered
    assert len(axes) == 2 + 2 * 7
    partial = tp_partial_names(model)
    assert sorted(partial) == sorted(f"model.layers.{i}.self_attn.{n}_norm.weight" for i in range(2) for n in "qk")
    assert model.model.norm.entered and model.loss.local_vocab == 2048


def test_every_plan_names_parts_its_family_has():
    for family in FAMILIES:
        plan = family.tensor_parallel_plan
        if plan is None:
            continue
        entries = plan.model + plan.layer + sum((e for _, e in plan.layer_variants), ())
        assert {style for _, style in entries} <= {"column", "row", "vocab_embedding", "output", "enter",
                                                   "enter_input", "sequence", "full_sequence"}
        fields = set(family.config_class.__dataclass_fields__)
        assert set(plan.divisible) <= fields


def test_family_without_a_plan_is_refused_by_name(stand_ins, monkeypatch):
    model = build_model(apply_overrides("tiny-llama3", {"num_hidden_layers": 1}))
    family = family_of(model)
    monkeypatch.setattr(tp, "family_of", lambda m: replace(family, tensor_parallel_plan=None))
    with pytest.raises(ConfigError, match="no plan for the llama model family"):
        tp.parallelize_model(model, SimpleNamespace(tp_size=2, tp_rank=0, sequence_parallel=False))


def test_sizes_the_tp_size_cannot_divide_are_refused(stand_ins):
    model = build_model(apply_overrides("tiny-llama3", {"num_hidden_layers": 1}))
    with pytest.raises(ConfigError, match="num_attention_heads=8 is not divisible by parallel.tensor=3"):
        tp.parallelize_model(model, SimpleNamespace(tp_size=3, tp_rank=0, sequence_parallel=False))


def _deepseek(sequence_parallel):
    model = build_model("tiny-deepseek-v3")
    tp.parallelize_model(model, SimpleNamespace(tp_size=2, tp_rank=0, sequence_parallel=sequence_parallel))
    return model


_MLA_PARTIAL = ("q_a_proj.weight", "q_a_layernorm.weight", "kv_a_proj_with_mqa.weight", "kv_a_layernorm.weight")


def test_deepseek_plan_splits_mla_and_mlps_and_keeps_routed_experts_whole(stand_ins):
    model = _deepseek(sequence_parallel=False)
    axes = tp_split_axes(model)
    assert axes["model.embed_tokens.weight"] == 0 and axes["lm_head.weight"] == 1
    layers = model.model.layers  # tiny: layer 0 dense, 1-2 MoE, 3 the MTP module (MoE)
    for i, layer in enumerate(layers):
        base = f"model.layers.{i}"
        assert axes[f"{base}.self_attn.q_b_proj.weight"] == 1 and axes[f"{base}.self_attn.kv_b_proj.weight"] == 1
        assert axes[f"{base}.self_attn.o_proj.weight"] == 0
        assert layer.self_attn.num_heads == 2 and layer.input_layernorm.entered
        assert not isinstance(layer.self_attn.q_a_proj, _Split)  # replicated down projections
        assert f"{base}.self_attn.q_a_proj.weight" not in axes
    assert layers[0].post_attention_layernorm.entered and axes["model.layers.0.mlp.gate_proj.weight"] == 1
    assert axes["model.layers.0.mlp.down_proj.weight"] == 0
    for i in (1, 2, 3):
        mlp = layers[i].mlp
        assert not getattr(layers[i].post_attention_layernorm, "entered", False)
        assert isinstance(mlp.shared_experts, _RegionInput)  # only the shared experts enter the region
        assert isinstance(mlp.shared_experts.cell.gate_proj, _Column)
        assert axes[f"model.layers.{i}.mlp.shared_experts.down_proj.weight"] == 0
        assert not any(f"model.layers.{i}.mlp.{part}" in name for name in axes for part in ("experts.", "gate."))
    assert layers[3].shared_head.norm.entered and model.model.norm.entered
    # 2 + 4 layers x (q_b, kv_b, o) + dense gate/up/down + 3 MoE layers x shared gate/up/down
    assert len(axes) == 2 + 4 * 3 + 3 + 3 * 3
    assert sorted(tp_partial_names(model)) == sorted(
        f"model.layers.{i}.self_attn.{name}" for i in range(4) for name in _MLA_PARTIAL)
    assert model.loss.local_vocab == 2048


def test_deepseek_plan_under_sequence_parallelism(stand_ins):
    model = _deepseek(sequence_parallel=True)
    for i in (1, 2, 3):  # the MoE runs on the whole sequence, its norm on sequence shards
        assert isinstance(model.model.layers[i].mlp, _FullSequence)
    partial = set(tp_partial_names(model))
    mtp = "model.layers.3"
    sequence_parts = {f"{mtp}.{n}.weight" for n in ("enorm", "hnorm", "eh_proj")}
    norms = {f"model.layers.{i}.{n}.weight" for i in range(4) for n in ("input_layernorm", "post_attention_layernorm")}
    assert sequence_parts | norms | {"model.norm.weight", f"{mtp}.shared_head.norm.weight"} <= partial
    # the replicated routed experts and the router see the whole sequence: full gradients
    assert not any(".mlp.experts." in name or ".mlp.gate." in name for name in partial)
