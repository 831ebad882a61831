"""Expert parallelism without communication: the EP/expert-DP groups of the rank grid, the config
validation naming the inconsistent sizes, the layout record of the experts' rows, and the MoE's
partial dispatch: with the exchange an identity (a group the test plays by hand), the outputs and
gradients of the EP ranks' expert windows add up to the whole layer's."""
import itertools
from types import SimpleNamespace

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from mfcore.config.checks import check_model_fit
from mfcore.config.loader import config_from_dict, load_config
from mfcore.errors import ConfigError
from mfcore.models import load_model_config
from mfcore.models.layers.moe import MoE
from mfcore.models.layers.moe_dispatch import TokenDispatcher
from mfcore.parallel import RankGrid, init_parallel
from mfcore.parallel.expert_parallel import local_expert_range, parallelize_experts
from mfcore.parallel.param_layout import ep_split_names, param_layouts
from mfcore.plan import Layout, unrunnable

H, FFN, EXPERTS, TOP_K = 16, 12, 8, 3


# ---------------------------------------------------------------- grid and groups
@pytest.mark.parametrize("tp,dp,ep", [(1, 2, 2), (1, 4, 2), (2, 4, 2), (1, 8, 4), (2, 6, 3),
                                      (2, 1, 2), (2, 2, 4), (4, 2, 2), (2, 3, 3)])
def test_expert_groups_are_consecutive_stage_ranks_and_replicas_an_ep_apart(tp, dp, ep):
    """Megatron's expert grid ep x edp = tp x dp: number a stage's ranks i = dp_rank * tp + tp_rank;
    an EP group is ep consecutive i, expert-DP the i an ep apart."""
    grid = RankGrid(tp=tp, dp=dp, ep=ep)
    assert grid.edp == tp * dp // ep
    for rank in range(grid.world_size):
        c, e = grid.coords(rank), grid.expert_coords(rank)
        index = c["dp"] * tp + c["tp"]
        assert e == {"ep": index % ep, "edp": index // ep}
        ep_group, edp_group = grid.group_of("ep", rank), grid.group_of("edp", rank)
        assert rank in ep_group and rank in edp_group and set(ep_group) & set(edp_group) == {rank}
        # an EP group: consecutive ranks (TP innermost), in EP-rank order
        assert list(ep_group) == list(range(ep_group[0], ep_group[0] + ep))
        assert [grid.expert_coords(r)["ep"] for r in ep_group] == list(range(ep))
        # expert-DP: the ranks holding the same experts
        assert {grid.expert_coords(r)["ep"] for r in edp_group} == {e["ep"]}
        assert len(edp_group) == tp * dp // ep
        if tp == 1:   # without TP the groups are made of DP ranks of one TP coordinate
            assert all(grid.coords(r)["tp"] == c["tp"] for r in ep_group + edp_group)
    for dim, size in (("ep", ep), ("edp", tp * dp // ep)):
        groups = grid.groups(dim)
        assert sorted(r for g in groups for r in g) == list(range(grid.world_size))
        assert all(len(g) == size for g in groups)


def test_four_ranks_tp2_dp2_expert_groups():
    """The brief's example: TP2 x DP2 with EP2 has EP groups {0,1},{2,3} (the TP pairs) and expert-DP
    groups {0,2},{1,3}; with EP4 all four ranks share their tokens and nothing is replicated."""
    grid = RankGrid(tp=2, dp=2, ep=2)
    assert grid.groups("ep") == [(0, 1), (2, 3)]
    assert grid.groups("edp") == [(0, 2), (1, 3)]
    grid = RankGrid(tp=2, dp=2, ep=4)
    assert grid.groups("ep") == [(0, 1, 2, 3)]
    assert grid.groups("edp") == [(0,), (1,), (2,), (3,)]


def test_four_ranks_dp4_ep2_groups():
    grid = RankGrid(dp=4, ep=2)
    assert grid.groups("ep") == [(0, 1), (2, 3)]
    assert grid.groups("edp") == [(0, 2), (1, 3)]


@pytest.mark.parametrize("dp,pp,ep", [(2, 2, 2), (4, 2, 2), (4, 3, 4)])
def test_expert_groups_stay_inside_their_pipeline_stage(dp, pp, ep):
    """EP and expert-DP groups are made of one stage's DP ranks: each stage has its own."""
    grid = RankGrid(dp=dp, pp=pp, ep=ep)
    for dim in ("ep", "edp"):
        for group in grid.groups(dim):
            assert len({grid.coords(r)["pp"] for r in group}) == 1
            assert set(group) <= set(grid.group_of("dp", group[0]))
    assert len(grid.groups("ep")) == pp * dp // ep
    if (dp, pp, ep) == (2, 2, 2):   # the composition matrix's PP2xEP2xDP2
        assert grid.groups("ep") == [(0, 1), (2, 3)]
        assert grid.groups("edp") == [(0,), (1,), (2,), (3,)]


def test_grid_and_section_refuse_ep_not_dividing_tp_times_dp():
    with pytest.raises(ValueError, match=r"ep=3 must divide tp \* dp = 4"):
        RankGrid(dp=4, ep=3)
    with pytest.raises(ConfigError, match=r"parallel.expert \(3\) must divide parallel.data \(4\)"):
        init_parallel({"data": 4, "expert": 3})
    with pytest.raises(ConfigError, match=r"parallel.expert \(3\) must divide parallel.data \(4\)"):
        load_config("tiny-deepseek-v3", ["parallel.data=4", "parallel.expert=3"])
    with pytest.raises(ConfigError, match=r"parallel.expert \(8\) must divide parallel.data x parallel.tensor"):
        load_config("tiny-deepseek-v3", ["parallel.data=2", "parallel.tensor=2", "parallel.expert=8",
                                         "parallel.sequence_parallel=true"])
    # EP carved out of tensor x data: loads with sequence parallelism, refused naming it without
    load_config("tiny-deepseek-v3", ["parallel.data=2", "parallel.tensor=2", "parallel.expert=4",
                                     "parallel.sequence_parallel=true"])
    with pytest.raises(ConfigError, match=r"parallel.expert = 4 with parallel.tensor = 2 needs "
                                          r"parallel.sequence_parallel: true"):
        load_config("tiny-deepseek-v3", ["parallel.data=2", "parallel.tensor=2", "parallel.expert=4"])


def _run_config(**parallel):
    return config_from_dict({"run": {"name": "t"}, "model": {"name": "tiny-deepseek-v3"},
                             "data": {"prefixes": ["x"], "seq_length": 16},
                             "training": {"global_batch_size": 4, "micro_batch_size": 1, "train_steps": 1},
                             "parallel": parallel}, "test", validate=False)


def test_model_checks_name_experts_not_divisible_and_models_without_experts():
    model_cfg = load_model_config("tiny-deepseek-v3")
    cfg = _run_config(data=3, expert=3)
    with pytest.raises(ConfigError, match=rf"n_routed_experts \({model_cfg.n_routed_experts}\) must be "
                                          r"divisible by parallel.expert \(3\)"):
        check_model_fit(cfg, model_cfg)
    check_model_fit(_run_config(data=2, expert=2), model_cfg)   # accepted
    with pytest.raises(ConfigError, match=r"parallel.expert \(2\) needs a model with routed experts"):
        check_model_fit(_run_config(data=2, expert=2), load_model_config("tiny-llama3"))


def test_support_runs_ep_alone_with_tp_and_sp_and_in_pipeline_stages_and_names_what_it_refuses():
    assert unrunnable(Layout(dp=4, ep=2)) == []
    assert unrunnable(Layout(dp=4, ep=2, zero=True)) == []   # ZeRO-1 shards experts over expert-DP
    assert unrunnable(Layout(dp=2, ep=2, pp=2, zero=True)) == []   # EP inside each pipeline stage
    assert unrunnable(Layout(dp=2, ep=2, tp=2, pp=2, sp=True, zero=True)) == []   # EP x TP with SP
    assert unrunnable(Layout(dp=2, ep=4, tp=2, sp=True)) == []
    problems = unrunnable(Layout(dp=2, ep=2, tp=2, pp=2, zero=True))
    assert problems == ["parallel.expert = 2 with parallel.tensor = 2 needs parallel.sequence_parallel: "
                        "true: expert parallelism over tensor-parallel ranks routes each rank's own "
                        "sequence shard (Megatron's layout)"]
    assert unrunnable(Layout(tp=2, ep=2, etp=2, sp=True))[0].startswith("parallel.expert_tensor = 2: ")
    from mfcore.plan.report import runnable_line   # mf-train plan's line names the keys
    assert runnable_line(SimpleNamespace(runnable=False, unrunnable=problems)) == (
        "runs today: no (parallel.expert = 2 with parallel.tensor = 2 needs parallel.sequence_parallel)")


def test_planner_carves_expert_sizes_by_the_support_rule():
    from mfcore.plan.search import _expert_sizes
    from mfcore.plan.support import expert_parallel_sizes
    model_cfg = load_model_config("tiny-deepseek-v3")
    assert _expert_sizes(model_cfg, 2, 4) == expert_parallel_sizes(model_cfg.n_routed_experts, 2, 4)
    assert expert_parallel_sizes(256, 8, 64)[-1] == 256 and expert_parallel_sizes(0, 8, 8) == [1]
    assert expert_parallel_sizes(8, 2, 3) == [1, 2]
    # the planner tries exactly the sizes the trainer accepts (grid, validation, expert split)
    from mfcore.parallel.context import ParallelSection, expert_size_problem
    for tp, dp, ep in itertools.product((1, 2, 4), (1, 2, 3, 4), range(1, 17)):
        section = ParallelSection(data=dp, tensor=tp, expert=ep, sequence_parallel=tp > 1)
        trainer = expert_size_problem(section) is None and 8 % ep == 0
        assert (ep in expert_parallel_sizes(8, tp, dp)) == trainer, (tp, dp, ep)
        if trainer:
            assert RankGrid(tp=tp, dp=dp, ep=ep).edp * ep == tp * dp


def test_zero1_shards_experts_over_their_expert_dp_group_and_the_rest_over_dp():
    """DP=4 x EP=2, rank 3 (dp 3, ep 1, edp 1): a dense (5, 3) parameter is cut into 4 parts of 2
    rows over DP (dp 3's rows 6-7 are past the end: an empty block), the EP rank's (4, 2) expert rows
    (global rows 4-7) into 2 parts over its expert-DP pair (edp 1: local rows 2-3 = global 6-7)."""
    from mfcore.checkpoint.layout import ShardSpec
    from mfcore.config.schema import OptimizerSection
    from mfcore.parallel.context import ParallelContext, ParallelSection
    from mfcore.parallel.param_layout import ParamLayout
    from mfcore.parallel.zero import ZeroAdamW
    from mfcore.train.optim import build_optimizer
    from mindspore import Parameter
    ctx = ParallelContext(config=ParallelSection(data=4, expert=2, optimizer_sharding=True), rank=3,
                          world_size=4, grid=RankGrid(dp=4, ep=2))
    assert (ctx.ep_rank, ctx.edp_rank, ctx.edp_size) == (1, 1, 2)
    dense = Parameter(Tensor(np.ones((5, 3), np.float32)), name="w.weight")
    expert = Parameter(Tensor(np.ones((4, 2), np.float32)), name="experts.weight")
    layouts = {"w.weight": ParamLayout(ShardSpec.whole((5, 3)), (5, 3)),
               "experts.weight": ParamLayout(ShardSpec((8, 2), (4, 0)), (4, 2), frozenset({"ep"}))}
    opt = build_optimizer(OptimizerSection(), [dense, expert], ctx, layouts)
    assert type(opt) is ZeroAdamW and opt.dims == ("dp", "edp") and opt.parts == (4, 2)
    assert opt.buckets == ((0,),) and opt.expert_buckets == ((1,),)
    blocks = opt.state_dict()
    moment = blocks["experts.weight.exp_avg"]
    assert moment.spec.global_shape == (8, 2) and moment.spec.offsets == (6, 0) and moment.data.shape == (2, 2)
    assert moment.write   # the only holder of these rows
    assert blocks["w.weight.exp_avg"].data.shape == (0, 3) and not blocks["w.weight.exp_avg"].write


def test_local_expert_range():
    assert [local_expert_range(8, 4, r) for r in range(4)] == [(0, 2), (2, 2), (4, 2), (6, 2)]
    with pytest.raises(ConfigError, match=r"n_routed_experts \(8\) must be divisible by parallel.expert \(3\)"):
        local_expert_range(8, 3, 0)


# ---------------------------------------------------------------- the partial MoE
def _config(**extra):
    base = dict(load_model_config("tiny-deepseek-v3").__dict__, hidden_size=H, moe_intermediate_size=FFN,
                n_routed_experts=EXPERTS, num_experts_per_tok=TOP_K, n_group=2, topk_group=2,
                n_shared_experts=0, seq_aux=False)
    base.update(extra)
    return load_model_config(base)


class _Holder(nn.Cell):
    def __init__(self, moe):
        super().__init__()
        self.moe = moe

    def construct(self, x, weights):
        out, _ = self.moe(x)
        return (out * weights).sum()


def _ctx(ep, ep_rank):
    """An EP rank whose group the test plays itself: no group, so the exchange is the identity."""
    grid = RankGrid(dp=ep, ep=ep)
    return SimpleNamespace(ep_size=ep, ep_rank=ep_rank, ep_group=None, ep_ranks=tuple(range(ep)),
                           device_target="CPU", world_group=None, rank=ep_rank, grid=grid,
                           tp_size=1, tp_rank=0)


def _moe(**extra):
    moe = MoE(_config(**extra))
    rng = np.random.default_rng(0)
    for name, p in moe.parameters_and_names():
        if not name.endswith(("expert_load", "dropped_tokens")):
            ops.assign(p, Tensor(rng.normal(0, 0.4, p.shape).astype(np.float32)))
    return moe


def _values_and_grads(moe, x, w):
    holder = _Holder(moe)
    params = holder.trainable_params()
    value, (dx, dparams) = ms.value_and_grad(holder, 0, params)(Tensor(x), Tensor(w))
    return float(value.asnumpy()), dx.asnumpy(), {p.name: g.asnumpy() for p, g in zip(params, dparams)}


@pytest.mark.parametrize("mode", ["dropless", "capacity"])
@pytest.mark.parametrize("ep", [2, 8])   # 8: one local expert, fewer than top-k: the rows are bounded
def test_ep_ranks_partial_outputs_and_gradients_add_up_to_the_whole_layer(mode, ep):
    extra = {"moe_dispatch": mode, "capacity_factor": 0.75} if mode == "capacity" else {}
    rng = np.random.default_rng(1)
    x, w = rng.normal(0, 1, (2, 9, H)).astype(np.float32), rng.normal(0, 1, (2, 9, H)).astype(np.float32)
    whole = _values_and_grads(_moe(**extra), x, w)
    parts = []
    for r in range(ep):
        holder = _Holder(_moe(**extra))
        parallelize_experts(holder, _ctx(ep, r))
        assert holder.moe.experts.gate_proj.weight.shape == (EXPERTS // ep, H, FFN)
        assert holder.moe.first_local_expert == r * EXPERTS // ep
        parts.append((_values_and_grads(holder.moe, x, w), holder))
    np.testing.assert_allclose(sum(p[0][0] for p in parts), whole[0], rtol=1e-5)
    np.testing.assert_allclose(sum(p[0][1] for p in parts), whole[1], rtol=1e-5, atol=1e-6)
    for name, g in whole[2].items():
        if ".experts." in name:   # rows of the stacked experts, each on its rank
            got = np.concatenate([p[0][2][name] for p in parts])
        else:                     # the router: partial gradients, summed over the EP group
            got = sum(p[0][2][name] for p in parts)
        np.testing.assert_allclose(got, g, rtol=1e-5, atol=1e-6, err_msg=name)
    # every rank counts its own tokens' routing over all experts (what the bias update sums)
    for _, holder in parts:
        assert holder.moe.expert_load.shape == (EXPERTS,)
    # the layout record: the experts' rows of the global [n_experts, ...] tensors
    holder = parts[1][1]
    names = ep_split_names(holder)
    assert sorted(names) == sorted(p.name for p in holder.get_parameters() if ".experts." in p.name)
    lay = param_layouts(holder, _ctx(ep, 1))[names[0]]
    assert lay.spec.global_shape[0] == EXPERTS and lay.spec.offsets[0] == EXPERTS // ep
    assert lay.split_over == frozenset({"ep"})
    assert lay.writes({"tp": 0, "dp": 1, "pp": 0, "ep": 1, "edp": 0})        # first replica of its rows
    assert not lay.writes({"tp": 0, "dp": 3, "pp": 0, "ep": 1, "edp": 1})    # a second replica


def test_rows_of_local_experts_bound_the_partial_dispatch():
    """The static rows a rank's experts get: every gathered token's pairs that can be here (at most
    min(k, local experts) per token), and in capacity mode each source's capacity per expert."""
    dropless = TokenDispatcher(256, 8, "dropless")
    assert dropless.rows_of_local_experts(local_experts=1, sources=256, tokens=512) == 256 * 512
    assert dropless.rows_of_local_experts(local_experts=32, sources=8, tokens=1024) == 8 * 1024 * 8
    capacity = TokenDispatcher(256, 8, "capacity", capacity_factor=1.5)   # capacity ceil(1.5*512*8/256) = 24
    assert capacity.rows_of_local_experts(local_experts=1, sources=256, tokens=512) == 256 * 24
    assert capacity.rows_of_local_experts(local_experts=1, sources=256, tokens=512) == 1.5 * 512 * 8
    tiny = TokenDispatcher(8, 3, "capacity", capacity_factor=4.0)      # capacity = every token: no cut
    assert tiny.rows_of_local_experts(local_experts=4, sources=2, tokens=18) == 2 * 18 * 3


def test_ep_needs_routed_experts():
    class Dense(nn.Cell):
        pass
    with pytest.raises(ConfigError, match="needs a model with routed experts"):
        parallelize_experts(Dense(), _ctx(2, 0))


@pytest.mark.parametrize("zero", [False, True])
def test_ep_checkpoint_round_trip_in_its_layout_and_in_one_process(zero, tmp_path):
    """--dry-run's round trip at DP=4 x EP=2 (with ZeRO-1: the experts' moments in row blocks over
    the expert-DP pairs): four simulated ranks save their blocks of known global tensors as one
    checkpoint, which reloads in that layout and in one process (experts under their global names)."""
    from mfcore.train.layout_check import checkpoint_round_trip
    cfg = load_config("tiny-deepseek-v3", ["parallel.data=4", "parallel.expert=2", "training.micro_batch_size=2",
                                           f"parallel.optimizer_sharding={str(zero).lower()}"])
    line = checkpoint_round_trip(cfg, load_model_config("tiny-deepseek-v3"))
    assert line == (f"checkpoint round trip: 4 simulated ranks (TP=1, DP=4, EP=2, sequence_parallel=False, "
                    f"ZeRO-1={zero}) saved, reloaded in that layout and in one process: identical")


@pytest.mark.parametrize("layers,experts_per_stage", [(3, (3, 6)), (2, (0, 6))])
@pytest.mark.parametrize("rank", [0, 1, 2, 3])
def test_pipeline_stages_keep_their_experts_layout_record(rank, layers, experts_per_stage):
    """PP=2 x DP=2 x EP=2: the model is split over EP whole, then cut into stages. Each stage's EP
    group is its own DP pair. Stage 1 holds the last MoE layer and the MTP module's MoE, stage 0 the
    dense layer 0 and (3 layers) MoE layer 1 or (2 layers, the composition matrix's model) no routed
    experts; each holds its EP rank's rows, recorded as split over ``ep`` and ``pp`` and written by
    the first (only) expert-DP replica."""
    from mfcore.models import build_model
    from mfcore.parallel.context import ParallelContext, ParallelSection
    from mfcore.parallel.pipeline_model import build_pipeline_model
    grid = RankGrid(dp=2, pp=2, ep=2)
    ctx = ParallelContext(config=ParallelSection(data=2, pipeline=2, expert=2), rank=rank, world_size=4, grid=grid)
    assert grid.group_of("ep", rank) == grid.group_of("dp", rank) == ((0, 1) if rank < 2 else (2, 3))
    cfg = load_model_config(dict(load_model_config("tiny-deepseek-v3").__dict__, num_hidden_layers=layers))
    pm = build_pipeline_model(ctx.parallelize_model(build_model(cfg)), ctx)
    names = ep_split_names(pm)
    held = [p for p in pm.get_parameters() if ".mlp.experts." in p.name]
    assert sorted(names) == sorted(p.name for p in held)
    assert len(names) == experts_per_stage[ctx.pp_rank]   # gate/up/down of each MoE layer held
    coords = {**grid.coords(rank), **grid.expert_coords(rank)}
    layouts = param_layouts(pm, ctx)
    for p in held:
        lay = layouts[p.name]
        assert lay.split_over == frozenset({"ep", "pp"})
        assert lay.spec.global_shape[0] == cfg.n_routed_experts == 2 * p.shape[0]
        assert lay.spec.offsets[0] == ctx.ep_rank * p.shape[0]
        assert lay.writes(coords)   # each EP rank's rows have one replica per stage: this rank


@pytest.mark.parametrize("rank", [0, 1, 2, 3])
def test_ep_over_tp_runs_the_moe_on_sequence_shards_and_records_its_layout(rank):
    """TP2 x DP2 x EP2 + SP: the MoE is not wrapped to see the gathered sequence; its router gets
    partial gradients (summed over TP), its aux loss sums its statistics over TP, and the expert
    rows (EP rank = position in the stage, TP innermost) are written by expert-DP replica 0 only."""
    from mfcore.models import build_model
    from mfcore.parallel.context import ParallelContext, ParallelSection
    from mfcore.parallel.param_layout import coords_of, tp_partial_names
    from mfcore.parallel.tp_layers import FullSequence
    grid = RankGrid(tp=2, dp=2, ep=2)
    ctx = ParallelContext(config=ParallelSection(data=2, tensor=2, expert=2, sequence_parallel=True),
                          rank=rank, world_size=4, grid=grid)
    assert ctx.routes_sequence_shards and (ctx.ep_rank, ctx.edp_rank) == (rank % 2, rank // 2)
    model = ctx.parallelize_model(build_model(load_model_config("tiny-deepseek-v3")))
    assert not any(isinstance(cell, FullSequence) for _, cell in model.cells_and_names())
    moes = [cell for _, cell in model.cells_and_names() if isinstance(cell, MoE)]
    assert moes and all(m.sequence_reduce is not None and m.sequence_shards == 2 for m in moes)
    partial = set(tp_partial_names(model))
    assert all(m.gate.weight.name in partial for m in moes)
    layouts, coords = param_layouts(model, ctx), coords_of(ctx)
    experts = [p for p in model.get_parameters() if ".mlp.experts." in p.name]
    assert experts and all(layouts[p.name].split_over == frozenset({"ep"}) for p in experts)
    assert all(layouts[p.name].spec.offsets[0] == ctx.ep_rank * p.shape[0] for p in experts)
    assert all(layouts[p.name].writes(coords) == (rank < 2) for p in experts)


def test_plain_tp_keeps_the_moe_on_the_gathered_sequence():
    from mfcore.models import build_model
    from mfcore.parallel.context import ParallelContext, ParallelSection
    from mfcore.parallel.tp_layers import FullSequence
    ctx = ParallelContext(config=ParallelSection(tensor=2, sequence_parallel=True), rank=1, world_size=2,
                          grid=RankGrid(tp=2))
    model = ctx.parallelize_model(build_model(load_model_config("tiny-deepseek-v3")))
    assert any(isinstance(cell, FullSequence) for _, cell in model.cells_and_names())
    moes = [cell for _, cell in model.cells_and_names() if isinstance(cell, MoE)]
    assert all(m.sequence_reduce is None for m in moes)
    from mfcore.parallel.param_layout import tp_partial_names   # the router sees every token: full grads
    assert not {m.gate.weight.name for m in moes} & set(tp_partial_names(model))


@pytest.mark.parametrize("zero", [False, True])
def test_ep_over_tp_checkpoint_round_trip_in_its_layout_and_in_one_process(zero):
    """--dry-run's round trip at TP2 x DP2 x EP2 + SP (with ZeRO-1: expert moments over the
    expert-DP pairs (0, 2), (1, 3))."""
    from mfcore.train.layout_check import checkpoint_round_trip
    cfg = load_config("tiny-deepseek-v3", ["parallel.data=2", "parallel.tensor=2", "parallel.expert=2",
                                           "parallel.sequence_parallel=true", "training.micro_batch_size=2",
                                           f"parallel.optimizer_sharding={str(zero).lower()}"])
    line = checkpoint_round_trip(cfg, load_model_config("tiny-deepseek-v3"))
    assert line == (f"checkpoint round trip: 4 simulated ranks (TP=2, DP=2, EP=2, sequence_parallel=True, "
                    f"ZeRO-1={zero}) saved, reloaded in that layout and in one process: identical")


class _ShardSum(nn.Cell):
    """Stands in for the TP AllReduce of two sequence shards: records this shard's statistics, or
    adds the other shard's (recorded in the same call order)."""

    def __init__(self, other=None):
        super().__init__()
        self.seen, self.other = [], other

    def construct(self, x):
        self.seen.append(x)
        return x if self.other is None else x + self.other[len(self.seen) - 1]


@pytest.fixture
def pynative(in_tmp):
    """Eager mode for ``_ShardSum``, whose Python-side record a compiled graph cannot keep (a test
    earlier in the same process may have left GRAPH_MODE on)."""
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=mode)


def test_sequence_aux_loss_of_two_shards_summed_over_tp_equals_the_whole_sequences(pynative):
    """Under EP x TP each rank routes half of every sequence: its aux loss, with the per-sequence
    counts and score sums summed over the shards, is the whole-sequence aux loss (and so the same
    on both ranks); without the sum it would not be."""
    moe = MoE(_config(seq_aux=True, aux_loss_alpha=0.1))
    x = Tensor(np.random.default_rng(3).standard_normal((2, 8, H)).astype(np.float32))
    def aux(part, reduce=None):
        b, s, h = part.shape
        idx, _, scores = moe.gate(part.reshape(b * s, h))
        moe.sequence_reduce, moe.sequence_shards = reduce, 1 if reduce is None else 2
        return float(moe._sequence_aux_loss(idx, scores, b).asnumpy())
    whole = aux(x)
    halves = (x[:, :4], x[:, 4:])
    record = _ShardSum()
    aux(halves[1], record)
    summed = aux(halves[0], _ShardSum(other=record.seen))
    np.testing.assert_allclose(summed, whole, rtol=1e-6)
    assert abs(aux(halves[0]) - whole) > 1e-4 * abs(whole)
