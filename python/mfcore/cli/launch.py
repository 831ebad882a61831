"""`mf-launch`: Launch mf-train on many ranks and nodes through MindSpore's msrun.

One node:      mf-launch --nproc-per-node 2 -- --config run.yaml
Several nodes: the same command on every node, each with its own --node-rank.
"""
import argparse
import sys
from typing import Optional, Sequence

from mfcore.cli.common import run_main
from mfcore.errors import ConfigError
from mfcore.launch.spec import LaunchSpec
from mfcore.launch.launcher import launch


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mf-launch", usage="mf-launch [options] -- MF_TRAIN_ARGS...",
        description="Launch mf-train on many ranks and nodes through MindSpore's msrun. "
                    "Everything after `--` is passed to mf-train on every rank.")
    p.add_argument("--nproc-per-node", type=int, default=1, help="ranks started on this node (default 1)")
    p.add_argument("--nnodes", type=int, default=1, help="number of nodes in the job (default 1)")
    p.add_argument("--node-rank", type=int, default=0, help="this node's index in [0, nnodes) (default 0)")
    p.add_argument("--master-addr", default="127.0.0.1", help="address of node 0, where the scheduler runs")
    p.add_argument("--master-port", type=int, default=8118, help="scheduler port on the master (default 8118)")
    p.add_argument("--log-dir", default="output/msrun_log", help="per-rank logs worker_<rank>.log go here")
    p.add_argument("--join", type=_bool, nargs="?", const=True, default=True,
                   help="wait for the job, stream rank 0's log and report failures (default true; "
                        "`--join false` starts it in the background)")
    p.add_argument("--cluster-timeout", type=int, default=600,
                   help="seconds to wait for all ranks to join the cluster (default 600)")
    p.add_argument("--script", default=None,
                   help="run this Python script on every rank instead of mf-train")
    p.add_argument("--max-restarts", type=int, default=0,
                   help="restart the job up to N times after a failure; mf-train resumes from the "
                        "newest valid checkpoint by itself (default 0)")
    p.add_argument("train_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p


def _spec(args: argparse.Namespace) -> LaunchSpec:
    rest = list(args.train_args)
    if rest and rest[0] == "--":
        rest = rest[1:]
    elif rest:
        raise ConfigError(f"unexpected argument {rest[0]!r}: put the mf-train arguments after `--`")
    command = [args.script, *rest] if args.script else ["-m", "mfcore.cli.train", *rest]
    return LaunchSpec(command=command, nproc_per_node=args.nproc_per_node, nnodes=args.nnodes,
                      node_rank=args.node_rank, master_addr=args.master_addr,
                      master_port=args.master_port, log_dir=args.log_dir, join=args.join,
                      cluster_timeout=args.cluster_timeout)


def check_world_size(train_args: Sequence[str], world_size: int) -> None:
    """Before starting anything: the run's parallel.tensor x parallel.pipeline x parallel.data must
    equal the ranks."""
    from mfcore.cli.train import build_parser as train_parser
    from mfcore.config.loader import load_config

    # intermixed, as mf-train parses them: an override after a flag counts too
    targs, _ = train_parser().parse_known_intermixed_args(list(train_args))
    if not targs.config:
        return  # mf-train itself reports the missing --config on every rank
    par = load_config(targs.config, list(targs.overrides)).parallel
    pp = getattr(par, "pipeline", 1)
    model_ranks = par.tensor * pp
    if par.data * model_ranks != world_size:
        hint = (f"override parallel.data={world_size // model_ranks}" if world_size % model_ranks == 0
                else f"parallel.tensor x parallel.pipeline ({model_ranks}) must divide the number of ranks")
        raise ConfigError(
            f"--nproc-per-node x --nnodes = {world_size} ranks, but {targs.config} asks for "
            f"parallel.tensor ({par.tensor}) x parallel.pipeline ({pp}) x parallel.data ({par.data}) "
            f"= {par.data * model_ranks}; {hint}")


def _main(argv: Optional[Sequence[str]]) -> int:
    import dataclasses
    from mfcore.launch.restarts import run_with_restarts
    args = build_parser().parse_args(argv)
    if args.max_restarts < 0:
        raise ConfigError(f"--max-restarts must be >= 0, got {args.max_restarts}")
    spec = _spec(args)
    spec.validate()
    if not args.script:
        check_world_size(spec.command[2:], spec.world_size)
    # a restart continues from the newest checkpoint, even if the first run started from a given one
    again = spec if args.script else dataclasses.replace(spec, command=[*spec.command, "--resume", "auto"])

    def report(message: str) -> None:
        print(f"mf-launch: {message}", file=sys.stderr)
    return run_with_restarts(lambda attempt: launch(again if attempt else spec), args.max_restarts, report)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
