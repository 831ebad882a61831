"""Several mf-train runs one after the other in one process, for the composition matrix
(tests/dist/test_composition_dist.py): under msrun one launch trains every layout of its world size
(one msrun start-up and cluster build instead of one per layout); alone, it trains the one-process
references and the one-process resumes of the layouts' checkpoints.

usage: composition_runs.py RUNS_JSON

RUNS_JSON holds a list of ``{"config": RUN_YAML, "overrides": ["section.key=value", ...]}``; each is
trained with ``mfcore.train.trainer.train`` (the communication backend and the process groups of
one layout are reused by the next: ``init_parallel`` creates each group once). Each run's wall time
and first step (graph compile included) are printed, to see where a launch's time goes.
"""
import json
import os
import sys
import time

# set before communication starts (the first layout): a later pipeline layout's transfers wait
# while the neighbouring stage compiles, longer than MCCL's default op timeout (as init_parallel
# sets it for a job that starts with a pipeline)
os.environ.setdefault("MS_CPU_COMM_OP_TIMEOUT", "900")

from mfcore.config.loader import load_config
from mfcore.train.trainer import train


def main(runs_json):
    with open(runs_json) as f:
        runs = json.load(f)
    for run in runs:
        start = time.monotonic()
        result = train(load_config(run["config"], run["overrides"]))
        print(f"composition run {run['overrides'][0]}: {time.monotonic() - start:.1f} s "
              f"(first step {result.first_step_s or 0:.1f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
