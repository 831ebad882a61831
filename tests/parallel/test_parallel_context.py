"""The rank grid arithmetic and the one-process ParallelContext."""
import pytest

from mfcore.errors import ConfigError
from mfcore.parallel import ParallelSection, RankGrid, init_parallel


def _reference_layout(tp, dp, pp):
    """Independent Megatron formula: rank = (pp_rank * dp + dp_rank) * tp + tp_rank."""
    return {(p * dp + d) * tp + t: {"tp": t, "dp": d, "pp": p}
            for p in range(pp) for d in range(dp) for t in range(tp)}


@pytest.mark.parametrize("tp,dp,pp", [(1, 1, 1), (2, 1, 1), (1, 2, 1), (2, 2, 1), (2, 3, 2), (4, 2, 3)])
def test_grid_coords_match_megatron_layout(tp, dp, pp):
    grid = RankGrid(tp=tp, dp=dp, pp=pp)
    ref = _reference_layout(tp, dp, pp)
    assert grid.world_size == tp * dp * pp
    for rank, coords in ref.items():
        assert grid.coords(rank) == coords
        assert grid.rank_of(coords) == rank


@pytest.mark.parametrize("dim", ["tp", "dp", "pp"])
def test_groups_partition_the_world_and_vary_one_dimension(dim):
    grid = RankGrid(tp=2, dp=3, pp=2)
    groups = grid.groups(dim)
    assert sorted(r for g in groups for r in g) == list(range(12))
    assert all(len(g) == getattr(grid, dim) for g in groups)
    for g in groups:
        others = {tuple(v for d, v in grid.coords(r).items() if d != dim) for r in g}
        assert len(others) == 1
        assert [grid.coords(r)[dim] for r in g] == list(range(len(g)))
        for r in g:
            assert grid.group_of(dim, r) == g


def test_tp_groups_are_neighbours_and_dp_peers_a_tp_apart():
    grid = RankGrid(tp=2, dp=2)
    assert grid.groups("tp") == [(0, 1), (2, 3)]
    assert grid.groups("dp") == [(0, 2), (1, 3)]
    assert RankGrid.group_name("dp", (1, 3)) == "dp_1_3"


def test_grid_rejects_bad_sizes_and_ranks():
    with pytest.raises(ValueError, match="tp=0"):
        RankGrid(tp=0)
    with pytest.raises(ValueError, match="outside"):
        RankGrid(tp=2).coords(2)
    with pytest.raises(ValueError, match="unknown parallel dimension"):
        RankGrid().groups("xx")


def test_single_process_context_is_trivial(monkeypatch):
    monkeypatch.delenv("MS_ROLE", raising=False)
    ctx = init_parallel({"data": 1, "tensor": 1, "sequence_parallel": True, "optimizer_sharding": True})
    assert (ctx.rank, ctx.world_size, ctx.dp_size, ctx.tp_size, ctx.dp_rank, ctx.tp_rank) == (0, 1, 1, 1, 0, 0)
    assert ctx.tp_group is None and ctx.dp_group is None
    assert not ctx.is_distributed and ctx.is_main
    # Nothing to split or shard with one rank.
    assert ctx.sequence_parallel is False and ctx.optimizer_sharding is False
    assert ctx.device_target == "CPU"
    sentinel = object()
    assert ctx.parallelize_model(sentinel) is sentinel


def test_config_accepted_as_none_mapping_or_object(monkeypatch):
    monkeypatch.delenv("MS_ROLE", raising=False)

    class Section:
        data, tensor, sequence_parallel, optimizer_sharding = 1, 1, False, True

    assert init_parallel(None).config == ParallelSection()
    assert init_parallel(Section()).config.optimizer_sharding is True
    assert init_parallel({"tensor": 1}).config == ParallelSection()


@pytest.mark.parametrize("cfg,message", [
    ({"data": 0}, "parallel.data must be a positive integer"),
    ({"tensor": "2"}, "parallel.tensor must be a positive integer"),
    ({"data": True}, "parallel.data must be a positive integer"),
    ({"sequence_parallel": "yes"}, "parallel.sequence_parallel must be true or false"),
    ({"pipeline": 0}, "parallel.pipeline must be a positive integer"),
    ({"virtual_stages": 2}, "parallel.virtual_stages > 1 needs parallel.pipeline > 1"),
    ({"pipeline": 2, "pipeline_layers": [1, "2"]}, "parallel.pipeline_layers must be a list of non-negative"),
    ({"stages": 2}, "unknown key\\(s\\) in parallel: stages"),
    ({"pipelines": 2}, "unknown key\\(s\\) in parallel: pipelines"),
])
def test_bad_parallel_config_is_a_clear_error(cfg, message):
    with pytest.raises(ConfigError, match=message):
        init_parallel(cfg)


def test_asking_for_many_ranks_in_one_process_says_how_to_launch(monkeypatch):
    monkeypatch.delenv("MS_ROLE", raising=False)
    with pytest.raises(ConfigError, match=r"= 4 ranks.*mf-launch --nproc-per-node 4"):
        init_parallel({"data": 2, "tensor": 2})
    with pytest.raises(ConfigError, match=r"parallel.pipeline \(2\) = 4 ranks"):
        init_parallel({"data": 2, "pipeline": 2})
