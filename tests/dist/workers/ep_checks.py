"""One expert-parallel job for the checks of test_expert_parallel_dist.py:

usage: ep_checks.py OUT_DIR PARALLEL_JSON STEPS [MF_TRAIN_ARGS...]

1. train_equivalence.py's tiny DeepSeek-V3 training under PARALLEL_JSON (e.g. data 2, expert 2; a
   list of such sections: one training each) -> OUT_DIR/equivalence/ (the list's i-th:
   OUT_DIR/equivalence<i>/; per-rank losses, norms, routing biases, dropped pairs, parameters). A
   section's ``model`` key names train_equivalence.py's model (default ``deepseek_v3``; e.g.
   ``deepseek_v3_capacity``), the rest is the parallel section;
2. when MF_TRAIN_ARGS are given: the trainer (mf-train's ``train(cfg)``) on those config arguments,
   with the model built here first so every rank can write its routing biases after the run ->
   OUT_DIR/trainer_bias_rank<r>.json.

The trainer's second ``init_parallel`` reuses the communication initialised by the first.
"""
import json
import os
import sys

import mindspore as ms

import train_equivalence  # a sibling script: run as a script, this folder is sys.path[0]
from mfcore.config.loader import load_config
from mfcore.parallel import init_parallel
from mfcore.train import trainer

MICRO_BATCH = 2


def run_trainer(out_dir, args):
    config, overrides = args[0], args[1:]
    cfg = load_config(config, overrides)
    trainer.setup_runtime(cfg)   # the seeds, as train() sets them before it builds the model
    ctx = init_parallel(cfg.parallel)
    model = trainer.build_model_for(cfg, trainer.model_config_of(cfg), ctx)
    trainer.train(cfg, model=model)
    biases = {p.name: p.asnumpy().tolist() for p in model.get_parameters()
              if p.name.endswith("e_score_correction_bias")}
    with open(os.path.join(out_dir, f"trainer_bias_rank{ctx.rank}.json"), "w") as f:
        json.dump(biases, f)


def main(out_dir, parallel, steps, trainer_args):
    ms.set_context(mode=ms.GRAPH_MODE)
    # micro batches of 2 on every rank and in the one-process reference (DP=4 leaves each rank 2
    # samples; the sequence aux loss is a mean per micro batch, so the compared runs need one size)
    train_equivalence.MICRO_BATCH = MICRO_BATCH
    if isinstance(parallel, list):
        for i, section in enumerate(parallel):
            section = dict(section)
            model = section.pop("model", "deepseek_v3")
            train_equivalence.run(os.path.join(out_dir, f"equivalence{i}"), init_parallel(section), steps, model)
    else:
        train_equivalence.run(os.path.join(out_dir, "equivalence"), init_parallel(parallel), steps, "deepseek_v3")
    if trainer_args:
        run_trainer(out_dir, trainer_args)


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
