"""Tensor parallelism applies the model family's plan (models/<family>/parallel_plan.py) without
knowing layer names: the swaps, the split axes and the divided head counts follow the plan, and a
family without a plan is refused by name. The split layers are stand-ins here (their collectives
need a launched group); tests/dist runs the real ones on two ranks."""
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


@pytest.fixture
def stand_ins(monkeypatch):
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
        styles = {style for _, style in plan.model + plan.layer}
        assert styles <= {"column", "row", "vocab_embedding", "output", "enter"}
        fields = set(family.config_class.__dataclass_fields__)
        assert set(plan.divisible) <= fields


def test_family_without_a_plan_is_refused_by_name(stand_ins):
    model = build_model("tiny-deepseek-v3")
    assert family_of(model).tensor_parallel_plan is None
    with pytest.raises(ConfigError, match="no plan for the deepseek_v3 model family"):
        tp.parallelize_model(model, SimpleNamespace(tp_size=2, tp_rank=0, sequence_parallel=False))


def test_sizes_the_tp_size_cannot_divide_are_refused(stand_ins):
    model = build_model(apply_overrides("tiny-llama3", {"num_hidden_layers": 1}))
    with pytest.raises(ConfigError, match="num_attention_heads=8 is not divisible by parallel.tensor=3"):
        tp.parallelize_model(model, SimpleNamespace(tp_size=3, tp_rank=0, sequence_parallel=False))
