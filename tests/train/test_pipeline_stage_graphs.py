"""The compiled stage graphs of the pipeline step, in one process: a whole-model stage's backward
graph gives the model's gradients (scaled like the one-process step), and MoE routing counters
count each micro batch once although the backward graph re-runs the forward."""
import mindspore as ms
import numpy as np
from mindspore import Tensor

from mfcore.models import build_model, config_from_dict, config_to_dict, load_model_config
from mfcore.models.stages import pipeline_stage
from mfcore.train.pipeline_step import StageRunner, _expert_loads, _restore_expert_loads


def test_stage_backward_is_the_model_gradient_and_counts_routing_once():
    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = config_from_dict({**config_to_dict(load_model_config("tiny-deepseek-v3")), "vocab_size": 128})
    ms.set_seed(0)
    model = build_model(cfg)
    rng = np.random.default_rng(0)
    ids = Tensor(rng.integers(0, 128, (2, 16)).astype(np.int32))
    labels = Tensor(rng.integers(0, 128, (2, 16)).astype(np.int32))
    mask = Tensor((rng.random((2, 16)) > 0.2).astype(np.float32))
    params = list(model.trainable_params())
    want = ms.grad(model, grad_position=None, weights=params)(ids, labels, mask)
    want = [g.asnumpy() * 0.5 for g in want]
    for layer in _moe(model):   # the reference pass counted its tokens: start from zero
        layer.expert_load.set_data(Tensor(np.zeros(layer.num_experts, np.float32)))

    stage = pipeline_stage(model, range(cfg.num_hidden_layers), True, True)
    stage_params = list(stage.trainable_params())
    grads = ms.ParameterTuple(stage_params).clone(prefix="grad_test", init="zeros")
    runner = StageRunner(stage, stage_params, grads)
    nothing = Tensor(np.zeros((), np.float32))
    _, loss = runner.forward(nothing, ids, labels, mask)
    counted = _expert_loads(runner.moe)
    runner.backward(nothing, Tensor(np.float32(0.5)), nothing, ids, labels, mask)
    grown = sum(float(layer.expert_load.asnumpy().sum()) for layer in runner.moe)
    _restore_expert_loads(runner.moe, counted)

    tokens, top_k = 2 * 16, cfg.num_experts_per_tok
    assert grown == 2 * tokens * top_k * len(runner.moe)    # the backward graph routed again
    assert [float(l.expert_load.asnumpy().sum()) for l in runner.moe] == [tokens * top_k] * len(runner.moe)
    by_name = {p.name: g for p, g in zip(stage_params, grads)}
    for p, w in zip(params, want):
        np.testing.assert_allclose(by_name[p.name].asnumpy(), w, rtol=1e-5, atol=1e-7, err_msg=p.name)


def _moe(model):
    from mfcore.models.layers.moe import moe_layers
    return moe_layers(model)
