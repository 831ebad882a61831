"""One-process checks of the pieces the distributed tests rely on: bucketing, the ZeRO-1 update
against the dense AdamW, its row split, and its state round trip in the global layout."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn
import mindspore.common.dtype as mstype

from mfcore.errors import CheckpointError
from mfcore.parallel import init_parallel
from mfcore.parallel.grad_reduce import BucketedAllReduce, default_bucket_mb, make_buckets
from mfcore.parallel.zero import build_zero_adamw, row_split
from mfcore.train.optim import AdamW, build_optimizer
from mfcore.config.schema import OptimizerSection


def test_buckets_keep_order_and_respect_the_cap():
    assert make_buckets([3, 3, 3, 10, 1], 6) == [[0, 1], [2], [3], [4]]
    assert make_buckets([], 6) == []
    sizes = list(np.random.default_rng(0).integers(1, 50, 40))
    buckets = make_buckets(sizes, 64)
    assert [i for b in buckets for i in b] == list(range(40))
    assert all(sum(sizes[i] for i in b) <= 64 or len(b) == 1 for b in buckets)



def test_bucket_size_follows_the_device():
    """CPU's MCCL is fastest with ~4 MB messages (bench_parallel.py); Ascend keeps 25 MB."""
    assert ms.get_context("device_target") == "CPU" and default_bucket_mb() == 4.0
    shapes = [(1024, 1024)] * 3   # 4 MiB each in float32: one bucket per tensor on CPU
    assert BucketedAllReduce(shapes, [0, 1, 2], "hccl_world_group", solo_mb=25.0).buckets == ((0,), (1,), (2,))
    assert BucketedAllReduce(shapes, [0, 1, 2], "hccl_world_group", bucket_mb=25.0,
                             solo_mb=25.0).buckets == ((0, 1, 2),)


def test_every_tensor_is_reduced_alone_on_cpu():
    """On CPU no tensor goes through a flat bucket, whose slices the CPU runtime keeps memory for
    (docs/planning.md); a tensor of at least ``solo_mb`` is alone elsewhere, the small ones around
    it still bucketed in order."""
    shapes = [(16,), (512, 512), (16,), (16,), (256, 256)]   # the second is 1 MiB in float32
    assert BucketedAllReduce(shapes, list(range(5)), "hccl_world_group", bucket_mb=25.0).buckets == \
        ((0,), (1,), (2,), (3,), (4,))
    assert BucketedAllReduce(shapes, list(range(5)), "hccl_world_group", bucket_mb=25.0, solo_mb=1.0).buckets == \
        ((0,), (1,), (2, 3, 4))
    assert make_buckets([4, 100, 4, 4], 64, solo_elems=50) == [[0], [1], [2, 3]]


class _Apply(nn.Cell):
    def __init__(self, opt, grads):
        super().__init__(auto_prefix=False)
        self.opt, self.grads = opt, grads

    def construct(self, lr, coeff):
        return self.opt(self.grads, lr, coeff)


def _params(seed):
    rng = np.random.default_rng(seed)
    return [Parameter(Tensor(rng.standard_normal((5, 3)).astype(np.float32)), name="w.weight"),
            Parameter(Tensor(rng.standard_normal((7,)).astype(np.float32)), name="n.norm.weight")]


def _zero(params, ctx):
    return build_zero_adamw(params, ctx, OptimizerSection(weight_decay=0.1))


def test_zero_update_is_bit_identical_to_dense_adamw_over_steps(in_tmp, monkeypatch):
    """One AdamW arithmetic: a shard's update is the dense kernel's on the same numbers."""
    monkeypatch.delenv("MS_ROLE", raising=False)
    ms.set_context(mode=ms.GRAPH_MODE)
    ctx = init_parallel({"data": 1, "optimizer_sharding": True})
    dense_params, zero_params = _params(1), _params(1)
    grads = [Parameter(Tensor(np.random.default_rng(2).standard_normal(p.shape).astype(np.float32)),
                       name=f"g{i}", requires_grad=False) for i, p in enumerate(dense_params)]
    dense = AdamW(dense_params, weight_decay=0.1)
    zero = _zero(zero_params, ctx)
    assert zero.decay_flags == dense.decay_flags == (1.0, 0.0)
    run_dense, run_zero = _Apply(dense, ms.ParameterTuple(grads)), _Apply(zero, ms.ParameterTuple(grads))
    for step in range(5):
        lr, coeff = Tensor(1e-2 * (step + 1), mstype.float32), Tensor(0.5, mstype.float32)
        run_dense(lr, coeff)
        run_zero(lr, coeff)
    for d, z in zip(dense_params, zero_params):
        np.testing.assert_array_equal(z.asnumpy(), d.asnumpy())
    np.testing.assert_array_equal(zero.exp_avg[0].asnumpy(), dense.exp_avg[0].asnumpy().reshape(-1))
    assert zero.state_nbytes() == (15 + 7) * 2 * 4


@pytest.mark.parametrize("shape,dp", [((5, 3), 2), ((7,), 4), ((3, 2, 2), 4), ((2, 4), 3)])
def test_zero_row_split_tiles_the_parameter(shape, dp):
    """Every DP rank's rows are a box; together they tile the tensor, and the flat part size
    (what the AllGather pads to) holds the longest one."""
    rows = [row_split(shape, dp, r) for r in range(dp)]
    starts = [s for s, _, _ in rows]
    assert sum(n for _, n, _ in rows) == shape[0]
    assert all(starts[r] + rows[r][1] == (starts[r + 1] if r + 1 < dp else shape[0]) or rows[r][1] == 0
               for r in range(dp))
    row_size = int(np.prod(shape[1:]))
    assert all(n * row_size <= shard for _, n, shard in rows)
    assert len({shard for _, _, shard in rows}) == 1


def test_zero_state_round_trip_and_bad_shape(monkeypatch):
    monkeypatch.delenv("MS_ROLE", raising=False)
    ctx = init_parallel({"data": 1})
    zero = _zero(_params(3), ctx)
    state = {k: (b.data + 1.5 if k != "adam_step" else np.int32(7)) for k, b in zero.state_dict().items()}
    zero.load_state_dict(state)
    again = zero.state_dict()
    assert int(again["adam_step"].data) == 7
    np.testing.assert_array_equal(again["w.weight.exp_avg"].data, np.full((5, 3), 1.5, np.float32))
    assert again["w.weight.exp_avg"].spec.global_shape == (5, 3) and again["w.weight.exp_avg"].write
    state["w.weight.exp_avg_sq"] = np.zeros(4, np.float32)
    with pytest.raises(CheckpointError, match=r"w.weight.exp_avg_sq: expected a block of shape \(5, 3\), shape \(4,\)"):
        zero.load_state_dict(state)


def test_one_process_needs_no_reducer(monkeypatch):
    monkeypatch.delenv("MS_ROLE", raising=False)
    ctx = init_parallel(None)
    assert ctx.gradient_reducer(_params(0)) is None
    ctx.barrier()  # no-op alone
    assert int(ctx.dp_sum(np.int64(12))) == 12
    # sharding needs more than one DP rank: the dense optimizer is built
    assert type(build_optimizer(OptimizerSection(), _params(0), init_parallel({"optimizer_sharding": True}))) is AdamW


def test_zero_is_built_directly_without_dense_moments():
    """ZeRO-1 start-up: the sharded optimizer is built from the config; no full-size moment exists
    at any point (each rank's moments hold its rows only: here rank 1 of DP=2)."""
    from mfcore.parallel.context import ParallelContext, ParallelSection
    from mfcore.parallel.groups import RankGrid
    from mfcore.parallel.zero import ZeroAdamW
    ctx = ParallelContext(config=ParallelSection(data=2, optimizer_sharding=True), rank=1, world_size=2,
                          grid=RankGrid(dp=2))
    params = _params(4)
    opt = build_optimizer(OptimizerSection(), params, ctx)
    assert type(opt) is ZeroAdamW
    own = {id(p) for p in params}
    sizes = sorted(int(np.prod(p.shape)) for p in opt.get_parameters() if id(p) not in own)
    # the step, then m, v and the work buffer per parameter, each ceil(rows / 2) rows long: 3 rows
    # of (5, 3) (rank 1 holds rows 3-4, padded) and 4 elements of (7,)
    assert sizes == [1, 4, 4, 4, 9, 9, 9]
    blocks = opt.state_dict()
    assert blocks["w.weight.exp_avg"].spec.offsets == (3, 0) and blocks["w.weight.exp_avg"].data.shape == (2, 3)
    assert not blocks["adam_step"].write  # written by rank 0
