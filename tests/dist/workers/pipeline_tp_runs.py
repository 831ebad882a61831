"""One 4-rank job for test_pipeline_tp_dist.py: its trainings one after the other in the same msrun
launch (the job's start-up and teardown are paid once; one training today, the fp16 run).

usage: pipeline_tp_runs.py RUNS_JSON

RUNS_JSON maps a run name to ``[config name, [override, ...]]``; each is trained with mf-train's
``train`` in that order (every run's layout must be 4 ranks: PP=2 x TP=2 here).
"""
import json
import sys

from mfcore.config.loader import load_config
from mfcore.train.trainer import train


def main(runs_json):
    with open(runs_json) as f:
        runs = json.load(f)
    for config, overrides in runs.values():
        train(load_config(config, overrides))


if __name__ == "__main__":
    main(sys.argv[1])
