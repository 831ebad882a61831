"""``python -m mfcore.launch.msrun_node [msrun options] -- PROGRAM [ARGS]``: MindSpore's msrun for
one node, with the scheduler started by node rank 0 only.

The program's arguments are kept away from msrun's parser: argparse would take e.g. ``--worker``
as an abbreviation of msrun's ``--worker_num`` even after the program name.

msrun starts the scheduler on every node whose own addresses include ``--master_addr``. On a real
cluster that is node 0 alone, but when several "nodes" share one host (loopback tests, several
node ranks on one big machine) every one of them would start a scheduler on the same port; the
losers fail and make their node's msrun exit non-zero at the end of a healthy job. mf-launch
defines ``--master-addr`` as node 0's address, so this entry point makes that explicit and
otherwise runs msrun's own process manager unchanged.
"""
import sys

from mindspore.parallel.cluster.process_entity import _ProcessManager
from mindspore.parallel.cluster.run import get_args


def main() -> None:
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    program = argv[cut + 1:]
    if not program:
        raise SystemExit("msrun_node: give the program to run after `--`")
    sys.argv = [sys.argv[0], *argv[:cut], program[0]]
    args = get_args()
    args.task_script_args = program[1:]
    manager = _ProcessManager(args)
    manager.is_master = args.node_rank in (0, -1)
    manager.run()


if __name__ == "__main__":
    sys.exit(main())
