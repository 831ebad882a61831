"""One TP=2 x DP=2 job (4 ranks: the TP and DP groups are subgroups, where MCCL has no AllGather
or Broadcast) for test_tp_zero_dist.py:

usage: tp_zero_runs.py RUN_YAML OUT_ROOT

1. check_collectives.py's comm-cell and TP-layer checks in the TP subgroups, plus GroupComm's
   gather, broadcast and reduce-scatter over the DP subgroups -> OUT_ROOT/collectives/;
2. mf-train's ``train`` of RUN_YAML (TP=2, DP=2, ZeRO-1, saving every 2 steps) -> OUT_ROOT/straight;
3. the same resumed from its step-2 checkpoint, same layout -> OUT_ROOT/same;
4. resumed from it at TP=2 x DP=2 without ZeRO-1 (a reshard of the optimizer state) -> OUT_ROOT/nozero.
"""
import json
import os
import sys

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_collectives  # noqa: E402
from mfcore.parallel import init_parallel  # noqa: E402
from mfcore.config.loader import load_config  # noqa: E402
from mfcore.train.trainer import train  # noqa: E402


class DpOps(nn.Cell):
    def __init__(self, comm):
        super().__init__()
        self.comm = comm

    def construct(self, x):
        return (self.comm.all_gather(x, 1), self.comm.broadcast(x, 1), self.comm.reduce_scatter(x, 0),
                self.comm.all_reduce_max(x))


def check_dp_group(ctx, out_dir):
    """GroupComm over the DP subgroup against numpy (every rank can compute every input)."""
    n, r = ctx.dp_size, ctx.dp_rank
    xs = [np.random.default_rng(90 + k + 10 * ctx.tp_rank).standard_normal((4, 3)).astype(np.float32)
          for k in range(n)]
    got = [t.asnumpy() for t in DpOps(ctx.comm("dp"))(Tensor(xs[r]))]
    want = [np.concatenate(xs, 1), xs[1], np.split(sum(xs), n, 0)[r], np.maximum.reduce(xs)]
    errors = {name: float(np.max(np.abs(g - w))) for name, g, w in
              zip(["gather", "broadcast", "reduce_scatter", "max"], got, want)}
    with open(os.path.join(out_dir, f"dp_rank{ctx.rank}.json"), "w") as f:
        json.dump(errors, f)


def main(run_yaml, root):
    ms.set_context(mode=ms.GRAPH_MODE)
    ctx = init_parallel({"data": 2, "tensor": 2})
    check_collectives.run(os.path.join(root, "collectives"), ctx)
    check_dp_group(ctx, os.path.join(root, "collectives"))
    step2 = os.path.join(root, "straight", "checkpoints", "step_00000002")
    runs = {"straight": [], "same": [f"checkpoint.resume={step2}"],
            "nozero": [f"checkpoint.resume={step2}", "parallel.optimizer_sharding=false"]}
    for name, extra in runs.items():
        train(load_config(run_yaml, [f"run.output_dir={os.path.join(root, name)}", *extra]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
