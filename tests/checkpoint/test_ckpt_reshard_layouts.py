"""Model and optimizer state saved in one parallel layout (TP slices, ZeRO-1 row shards, or both)
reload in any other, through the trainer's stateful components and checkpoint bridge. The ranks of
each layout are simulated in one process (mfcore.train.layout_check); every reloaded block must
equal the slice of the known global tensor, so the reference is plain numpy slicing."""
from types import SimpleNamespace

import numpy as np
import pytest

from mfcore.checkpoint import CheckpointManager
from mfcore.models import load_model_config
from mfcore.parallel.context import ParallelSection
from mfcore.train.layout_check import (global_value, reload_simulated, save_simulated, simulated_contexts,
                                       tiny_model_config)
from mfcore.config.schema import OptimizerSection

CFG = SimpleNamespace(optimizer=OptimizerSection())
TINY = tiny_model_config(load_model_config("llama3-8b"), 2)   # 1 layer, every split divisible by 2


def layout(tp=1, dp=1, zero=False):
    return simulated_contexts(ParallelSection(data=dp, tensor=tp, optimizer_sharding=zero), max_dp=dp)


@pytest.mark.parametrize("saved,resumed", [
    (dict(tp=2, dp=2, zero=True), dict(tp=1, dp=1)),             # TP x ZeRO-1 -> one process
    (dict(tp=2, dp=2, zero=True), dict(tp=1, dp=3, zero=True)),  # -> other DP, no TP
    (dict(tp=2, dp=2, zero=True), dict(tp=2, dp=2)),             # -> same TP x DP, no ZeRO
    (dict(tp=1, dp=1), dict(tp=2, dp=3, zero=True)),             # one process -> TP x ZeRO-1
    (dict(tp=2, dp=1), dict(tp=1, dp=2, zero=True)),             # TP -> ZeRO-1
])
def test_state_reshards_between_layouts(tmp_path, saved, resumed):
    save_simulated(CFG, TINY, layout(**saved), str(tmp_path))
    reload_simulated(CFG, TINY, layout(**resumed), str(tmp_path))


def test_tp_zero_blocks_are_boxes_written_once(tmp_path):
    """TP=2 x DP=2 x ZeRO-1: a split weight's moment has 4 slices (TP halves cut by rows over DP),
    a replicated norm's moment 2 (rows over DP), its weight 1 (DP rank 0, TP rank 0)."""
    save_simulated(CFG, TINY, layout(tp=2, dp=2, zero=True), str(tmp_path))
    ckpt = CheckpointManager(str(tmp_path)).load("auto")
    from mfcore.checkpoint.load import read_index
    index = read_index(ckpt.path)["tensors"]
    assert len(index["optimizer/model.layers.0.mlp.gate_proj.weight.exp_avg"]["slices"]) == 4
    assert len(index["optimizer/model.layers.0.input_layernorm.weight.exp_avg"]["slices"]) == 2
    assert len(index["model/model.layers.0.input_layernorm.weight"]["slices"]) == 1
    name = "optimizer/model.layers.0.self_attn.o_proj.weight.exp_avg_sq"
    np.testing.assert_array_equal(ckpt.tensors[name], global_value(name, ckpt.tensors[name].shape))
    assert int(ckpt.tensors["optimizer/adam_step"]) == 5


def test_flat_zero_moments_of_older_checkpoints_still_load(tmp_path):
    """Before row shards, ZeRO-1 saved moments as slices of the flat (numel,) tensor: read whole
    and reshaped (mfcore.checkpoint.stateful.block_plan)."""
    from helpers.ckpt_ranks import save_as_ranks
    from mfcore.checkpoint import ShardSpec
    from mfcore.train.layout_check import rank_components
    per_rank = [{}, {}]
    for comp, obj in rank_components(CFG, TINY, layout()[0]).items():
        for key, block in obj.state_dict().items():
            name = f"{comp}/{key}"
            whole = global_value(name, block.spec.global_shape)
            if comp == "model" or key == "adam_step":
                per_rank[0][name] = whole
                continue
            flat, half = whole.reshape(-1), (whole.size + 1) // 2
            for r, part in enumerate((flat[:half], flat[half:])):
                per_rank[r][name] = (part, ShardSpec((whole.size,), (r * half,)))
    save_as_ranks(str(tmp_path), 1, per_rank, {})
    reload_simulated(CFG, TINY, layout(), str(tmp_path))
