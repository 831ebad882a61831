"""The EP exchange timing behind ``ep_comm_share``: the per-step count of exchanges, and the probe
compiled and timed on a real MoE layer's exchange (a group the test plays alone, so the collectives
are identities: the real group's timing is checked in tests/dist/test_expert_parallel_dist.py)."""
from types import SimpleNamespace

import mindspore as ms
import pytest
from mindspore import nn

from mfcore.models import load_model_config
from mfcore.models.layers.moe import MoE
from mfcore.parallel import RankGrid
from mfcore.parallel.expert_parallel import parallelize_experts
from mfcore.parallel.expert_timing import (ExchangeTiming, exchange_seconds_per_step, exchanging_layer_count,
                                           forward_runs_per_step, measure_exchange_per_step, time_exchange)


def test_forward_runs_count_recompute_and_the_pipelines_backward_graph():
    assert forward_runs_per_step("none", False) == 1
    assert forward_runs_per_step("selective", False) == 1   # the MoE exchange is not in a recomputed cell
    assert forward_runs_per_step("full", False) == 2
    assert forward_runs_per_step("none", True) == 2
    assert forward_runs_per_step("full", True) == 3


def test_seconds_per_step_multiply_layers_micro_batches_and_directions():
    timing = ExchangeTiming(forward_s=0.002, backward_s=0.003)
    # 3 layers x 4 micro batches x (2 forward runs x 2 ms + 3 ms backward)
    assert exchange_seconds_per_step(timing, 3, 4, 2) == pytest.approx(3 * 4 * 0.007)


class _TwoMoE(nn.Cell):
    def __init__(self, config, dtype):
        super().__init__()
        self.first, self.second = MoE(config, dtype), MoE(config, dtype)


def _model(ep, dtype=ms.float32):
    config = load_model_config(dict(load_model_config("tiny-deepseek-v3").__dict__, hidden_size=16,
                                    moe_intermediate_size=8, n_routed_experts=8, num_experts_per_tok=2))
    model = _TwoMoE(config, dtype)
    if ep > 1:   # an EP rank whose group has no name: the exchange cells exist, their collectives are identities
        ctx = SimpleNamespace(ep_size=ep, ep_rank=0, ep_group=None, ep_ranks=tuple(range(ep)),
                              device_target="CPU", world_group=None, rank=0, grid=RankGrid(dp=ep, ep=ep),
                              tp_size=1, tp_rank=0)
        parallelize_experts(model, ctx)
    return model


@pytest.mark.parametrize("dtype", [ms.float32, ms.float16])
def test_probe_times_a_layers_exchange_forward_and_backward(dtype):
    model = _model(2, dtype)
    assert exchanging_layer_count(model) == 2
    timing = time_exchange(model, tokens=24, repeats=3)
    assert 0 < timing.forward_s < 5 and 0 < timing.backward_s < 5
    seconds, line = measure_exchange_per_step(model, 24, micro_batches=4, recompute_mode="full", pipelined=False)
    assert 0 < seconds < 60
    assert "x 2 MoE layers x 4 micro batches (forward run 2x)" in line and "ep_comm_share" in line


def test_without_expert_parallelism_nothing_is_measured():
    model = _model(1)
    assert exchanging_layer_count(model) == 0
    assert time_exchange(model, tokens=24) is None
    assert measure_exchange_per_step(model, 24, 1, "none", False) is None
