"""What the CPU emulations of collectives cost (docs/parallelism.md), on 2 ranks through mf-launch:
each emulation of ``mfcore.parallel.group_comm.GroupComm`` (built on AllReduce, as every group but
the world must on CPU) beside the native MCCL op in the world group, where CPU has it, for one
typical activation shard (``--shape``, float32; default a micro batch of 4 x 512 tokens x hidden 512
split over 2 ranks along the sequence). Both results are compared bit for bit before timing.

usage: python benchmarks/bench_collectives.py [--shape 4,256,512] [--repeats 20] [--port 29660]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

OPS = ("all_gather", "broadcast", "reduce_scatter")


def _worker(out_path, shape, repeats):
    import mindspore as ms
    from mindspore import Tensor, nn

    from mfcore.parallel import init_parallel
    from mfcore.parallel.group_comm import GroupComm

    ms.set_context(mode=ms.GRAPH_MODE)
    ctx = init_parallel({"data": 2})

    class Op(nn.Cell):
        def __init__(self, comm, name):
            super().__init__()
            self.comm, self.name = comm, name

        def construct(self, x):
            if self.name == "all_gather":
                return self.comm.all_gather(x, 1)
            if self.name == "broadcast":
                return self.comm.broadcast(x, 1)
            if self.name == "reduce_scatter":
                return self.comm.reduce_scatter(x, 1)
            return self.comm.all_reduce(x)

    def comm(native):
        return GroupComm(ctx.dp_group, ctx.dp_size, ctx.dp_rank, native_gather=native, ranks=ctx.dp_ranks)

    x = Tensor(np.random.default_rng(ctx.rank).standard_normal(shape).astype(np.float32))
    # native ReduceScatter does not exist on CPU: its baseline is the plain AllReduce it is built on
    cells = {(name, "emulated"): Op(comm(False), name) for name in OPS}
    cells.update({(name, "native"): Op(comm(True), name) for name in ("all_gather", "broadcast")})
    cells[("reduce_scatter", "native")] = Op(comm(True), "all_reduce")
    result = {}
    for (name, kind), cell in cells.items():
        result[f"{name}.{kind}.value"] = cell(x).asnumpy()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            cell(x).asnumpy()
            times.append(time.perf_counter() - start)
        result[f"{name}.{kind}.ms"] = float(np.median(times)) * 1e3
    for name in ("all_gather", "broadcast"):
        same = np.array_equal(result[f"{name}.emulated.value"], result[f"{name}.native.value"])
        assert same, f"{name}: the emulation differs from the native op"
    if ctx.is_main:
        with open(out_path, "w") as f:
            json.dump({k: v for k, v in result.items() if k.endswith(".ms")}, f)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="4,256,512", help="one rank's activation shard (batch, seq, hidden)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--port", type=int, default=29660)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    if args.worker:
        return _worker(args.worker, shape, args.repeats)
    with tempfile.TemporaryDirectory() as workdir:
        out = os.path.join(workdir, "result.json")
        cmd = [sys.executable, "-m", "mfcore.cli.launch", "--nproc-per-node", "2", "--master-port", str(args.port),
               "--log-dir", os.path.join(workdir, "logs"), "--script", os.path.abspath(__file__), "--",
               "--worker", out, "--shape", args.shape, "--repeats", str(args.repeats)]
        subprocess.run(cmd, cwd=workdir, env={**os.environ, "GLOG_v": "3"}, check=True, stdout=subprocess.DEVNULL)
        with open(out) as f:
            r = json.load(f)
    mb = np.prod(shape) * 4 / 2 ** 20
    print(f"2 ranks, float32 shard {shape} ({mb:.1f} MiB) per rank, median of {args.repeats}")
    print(f"{'collective':40s} {'emulated':>10s} {'native':>10s}  ratio")
    labels = {"all_gather": "AllGather (along the sequence)", "broadcast": "Broadcast (root 1)",
              "reduce_scatter": "ReduceScatter vs the AllReduce alone"}
    for name in OPS:
        emu, nat = r[f"{name}.emulated.ms"], r[f"{name}.native.ms"]
        print(f"{labels[name]:40s} {emu:7.1f} ms {nat:7.1f} ms  {emu / nat:5.2f}x")


if __name__ == "__main__":
    main()
