"""One TP=2 job for two tests (one msrun start-up and cluster build instead of two):

usage: tp_checks.py OUT_DIR [STEPS]

1. check_collectives.py's checks under TP=2 without sequence parallelism -> OUT_DIR/collectives/;
2. train_equivalence.py's training under TP=2 with sequence parallelism -> OUT_DIR/train/.

(Tiny DeepSeek-V3 under TP=2 + SP, and every other layout of both models, is a row of the
composition matrix: tests/dist/test_composition_dist.py.)

The second context comes from a second ``init_parallel`` call in the same process (communication
is already initialised; the TP group is the world, so no group is created again).
"""
import os
import sys

import mindspore as ms

import check_collectives  # a sibling script: run as a script, this folder is sys.path[0]
import train_equivalence
from mfcore.parallel import init_parallel


def main(out_dir, steps):
    ms.set_context(mode=ms.GRAPH_MODE)
    check_collectives.run(os.path.join(out_dir, "collectives"), init_parallel({"data": 1, "tensor": 2}))
    ctx = init_parallel({"tensor": 2, "sequence_parallel": True})
    assert ctx.sequence_parallel and ctx.tp_size == 2
    train_equivalence.run(os.path.join(out_dir, "train"), ctx, steps)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20)
