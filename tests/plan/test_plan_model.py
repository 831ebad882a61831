"""mfcore.plan's terms against their definitions: parameter counts equal the model's, the 1F1B and
interleaved in-flight counts are Narayanan et al.'s / Megatron's, recompute, TP, ZeRO-1 and EP shrink
the terms they should, and the bubble is (P - 1) / V micro batches."""
import pytest
from hypothesis import given, settings, strategies as st

from mfcore.models import count_parameters, load_model_config
from mfcore.models.config import shipped_model_names
from mfcore.plan import GIB, Layout, Workload, device_for, evaluate, model_shape, stage_layers, total_parameters
from mfcore.plan.memory import chunks_in_flight, stage_activations

ASCEND = device_for("Ascend", memory=64 * GIB)


@pytest.mark.parametrize("name", shipped_model_names())
def test_parameter_count_equals_the_models(name):
    cfg = load_model_config(name)
    assert total_parameters(model_shape(cfg)) == count_parameters(cfg)


@given(layers=st.integers(1, 128), pp=st.integers(1, 16), vpp=st.integers(1, 4))
def test_stage_layers_cover_every_layer_once_balanced(layers, pp, vpp):
    if pp * vpp > layers:
        return
    stages = stage_layers(layers, pp, vpp)
    assert sorted(i for s in stages for i in s) == list(range(layers))
    sizes = [len(s) for s in stages]
    assert max(sizes) - min(sizes) <= vpp
    # the trainer's split (parallel/pipeline_split.py): the planner's stages are the ones that run
    from mfcore.parallel.pipeline_split import rank_of_stage, stage_counts, stage_layers as trainer_layers
    held = [[] for _ in range(pp)]
    for k, ids in enumerate(trainer_layers(stage_counts(layers, pp * vpp))):
        held[rank_of_stage(k, pp)[0]].extend(ids)
    assert stages == held


def test_one_f_one_b_keeps_p_minus_stage_micro_batches():
    lay = Layout(pp=4, micro_batches=8)
    assert [chunks_in_flight(lay, s) for s in range(4)] == [4, 3, 2, 1]
    assert chunks_in_flight(Layout(pp=4, micro_batches=2), 0) == 2
    assert chunks_in_flight(Layout(pp=1, micro_batches=64), 0) == 1


@pytest.mark.parametrize("p,v", [(2, 2), (4, 2), (8, 4), (16, 2)])
def test_interleaved_first_stage_holds_korthikanti_layers(p, v):
    # Korthikanti et al. 2022, 4.2.3: the first stage stores L * (1 + (p - 1) / (p v)) layers' worth
    lay = Layout(pp=p, vpp=v, micro_batches=4 * p)
    layers_per_chunk = 1.0 / (p * v)                     # in units of L
    assert chunks_in_flight(lay, 0) * layers_per_chunk == pytest.approx(1 + (p - 1) / (p * v))


def _work(**kw):
    return Workload(seq_length=4096, global_batch_size=1024, **kw)


def test_recompute_tp_sp_zero_shrink_their_terms():
    cfg = load_model_config("llama2-7b")
    base = Layout(tp=2, dp=4, micro_batch=1, micro_batches=256)
    mem = {mode: evaluate(cfg, base.with_(recompute=mode), _work(), ASCEND).memory.activations
           for mode in ("none", "selective", "full")}
    assert mem["full"] < mem["selective"] < mem["none"]
    plain = evaluate(cfg, base, _work(), ASCEND).memory
    sp = evaluate(cfg, base.with_(sp=True), _work(), ASCEND).memory
    assert sp.activations < plain.activations and sp.weights == plain.weights
    zero = evaluate(cfg, base.with_(zero=True), _work(), ASCEND).memory
    assert zero.optimizer == pytest.approx(plain.optimizer / 4)
    tp4 = evaluate(cfg, Layout(tp=4, dp=2, micro_batches=512), _work(), ASCEND).memory
    assert tp4.weights < 0.55 * plain.weights


def test_expert_parallel_divides_expert_weights_and_dense_dispatch_costs_more():
    cfg = load_model_config("deepseek-v3-671b")
    shape = model_shape(cfg)
    experts = sum(x.experts for x in shape.layers)
    lay = Layout(tp=1, pp=16, dp=64, micro_batches=240)
    ep1 = evaluate(cfg, lay, _work(), ASCEND, shape).memory.weights
    ep8 = evaluate(cfg, lay.with_(ep=8), _work(), ASCEND, shape).memory.weights
    stage_experts = experts / 16          # roughly: experts of one of 16 stages
    assert ep1 - ep8 == pytest.approx(4 * stage_experts * 7 / 8, rel=0.25)
    dense = stage_activations(shape, lay, _work(moe_dispatch="dense"), 5)   # stage 0: dense layers
    sparse = stage_activations(shape, lay, _work(), 5)
    assert dense > 3 * sparse          # 256 experts on every token vs the 8 chosen


@settings(max_examples=30, deadline=None)
@given(p=st.sampled_from([2, 4, 8]), v=st.sampled_from([1, 2]), m_per_p=st.integers(1, 8))
def test_bubble_is_p_minus_one_over_v_micro_batches(p, v, m_per_p):
    cfg = load_model_config("llama3-8b")
    m = p * m_per_p
    plan = evaluate(cfg, Layout(tp=1, pp=p, vpp=v, dp=1, micro_batches=m), _work(), ASCEND)
    t = plan.time
    busy = t.compute + t.tp_comm + t.ep_comm + t.pp_comm
    assert t.bubble == pytest.approx(busy * (p - 1) / (v * m))
    # the share of the step: (P - 1) / (m + P - 1) without interleaving (Narayanan et al. 2021)
    if v == 1:
        assert t.bubble / (t.bubble + busy) == pytest.approx((p - 1) / (m + p - 1))


def test_mtp_and_logits_sit_on_the_last_stage():
    cfg = load_model_config("deepseek-v3-671b")
    from mfcore.plan.memory import stage_memory
    shape = model_shape(cfg)
    lay = Layout(pp=4, dp=8, ep=8, micro_batches=64)
    stages = [stage_memory(shape, lay, _work(), ASCEND, s) for s in range(4)]
    assert [s.logits > 0 for s in stages] == [False, False, False, True]


def test_explicit_pipeline_layers_are_planned_as_the_trainer_splits_them():
    from mfcore.config.loader import load_config
    from mfcore.plan import layout_of
    from mfcore.plan.memory import stage_parameters
    cfg = load_config("llama3-70b", ["parallel.tensor=1", "parallel.sequence_parallel=false", "parallel.pipeline=32",
                                     "parallel.pipeline_layers=[2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, "
                                     "3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1]"])
    layout = layout_of(cfg)
    assert layout.pipeline_layers[-1] == 1 and stage_layers(80, 32, 1, layout.pipeline_layers)[31] == [79]
    shape = model_shape(load_model_config("llama3-70b"))
    lighter = stage_parameters(shape, layout, 31)
    balanced = stage_parameters(shape, layout.with_(pipeline_layers=None), 31)
    assert balanced[0] - lighter[0] == pytest.approx(shape.layers[0].split + shape.layers[0].replicated)
