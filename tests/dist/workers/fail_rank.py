"""Joins a DP=2 job, does one AllReduce, then rank FAIL_RANK fails as FAIL_MODE says ("raise" or
"kill") while the other ranks block in the next collective (what a real job would do)."""
import os
import time

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from mfcore.parallel import init_parallel


class Sum(nn.Cell):
    def __init__(self, group):
        super().__init__()
        self.all_reduce = ops.AllReduce(ops.ReduceOp.SUM, group)

    def construct(self, x):
        return self.all_reduce(x)


def main():
    ms.set_context(mode=ms.GRAPH_MODE)
    ctx = init_parallel({"data": 2})
    total = Sum(ctx.dp_group)
    print("first all-reduce", total(Tensor(np.ones(2, np.float32))).asnumpy(), flush=True)
    if ctx.rank == int(os.environ["FAIL_RANK"]):
        with open("failed_at.txt", "w") as f:  # the test measures the job's exit from here
            f.write(repr(time.time()))
        if os.environ["FAIL_MODE"] == "kill":
            os.kill(os.getpid(), 9)
        raise RuntimeError(f"injected failure on rank {ctx.rank}")
    total(Tensor(np.ones(2, np.float32)))
    time.sleep(600)  # never reached in a healthy job: the peer is gone


if __name__ == "__main__":
    main()
