"""TP=2 x DP=2 with ZeRO-1 on 4 ranks through mf-launch (one shared job, tests/dist/workers/
tp_zero_runs.py): the TP and DP groups are subgroups, where the CPU collectives are emulated on
AllReduce (mfcore.parallel.group_comm). The job's run saves every 2 steps and resumes from step 2
bit-exactly in the same layout, and with the same loss curve (fp32, 1e-5) at TP=2 x DP=2 without
ZeRO-1. (The same layout's checkpoint resumed in one process, every tensor resharded, is a row of
the composition matrix: TP2xDP2+SP+ZeRO in tests/dist/test_composition_dist.py, both models.)"""
import json

import numpy as np
import pytest
import yaml

from helpers.launch_helpers import launch, read_json, worker
from mfcore.checkpoint import CheckpointManager
from mfcore.data import IndexedDatasetBuilder

pytestmark = [pytest.mark.dist, pytest.mark.timeout(1500)]

STEPS, LOSS_RTOL = 6, 1e-5


def _write_run(tmp):
    rng = np.random.default_rng(0)
    builder = IndexedDatasetBuilder(str(tmp / "corpus"), np.uint16)
    for _ in range(60):
        builder.add_document(rng.integers(1, 250, int(rng.integers(20, 80))).astype(np.uint16))
    builder.finalize()
    run = {"run": {"name": "tp-zero", "seed": 3},
           "model": {"name": "tiny-llama3", "overrides": {
               "vocab_size": 256, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
               "num_attention_heads": 2, "num_key_value_heads": 2}},
           "data": {"prefixes": [str(tmp / "corpus")], "split": "100,0,0", "seq_length": 16,
                    "eod_id": 0, "num_workers": 1, "cache_dir": str(tmp / "cache")},
           "training": {"global_batch_size": 4, "micro_batch_size": 2, "train_steps": STEPS},
           "optimizer": {"lr": 0.01}, "schedule": {"name": "cosine", "warmup_steps": 1},
           "parallel": {"data": 2, "tensor": 2, "sequence_parallel": True, "optimizer_sharding": True},
           "checkpoint": {"save_interval": 2, "keep_last_n": STEPS},
           "logging": {"log_interval": 1, "tensorboard": False, "progress_bar": "never"}}
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    return path


def _losses(out):
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.fixture(scope="module")
def tp_zero_job(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("tp2dp2")
    config = _write_run(cwd)
    job = launch(cwd, ["--nproc-per-node", "4", "--script", worker("tp_zero_runs.py")],
                 [str(config), str(cwd / "out")], timeout=1400)
    assert job.returncode == 0, job.explain()
    return cwd, config, cwd / "out"


def test_collectives_in_4_rank_subgroups_match_single_process(tp_zero_job):
    _, _, out = tp_zero_job
    for rank in range(4):
        cells = read_json(out / "collectives" / f"rank{rank}.json")
        for name in ["copy", "reduce", "gather_seq", "scatter_seq", "reduce_scatter_seq",
                     "gather_reduce_scatter_seq"]:
            assert cells[f"{name}.forward"] == 0.0 and cells[f"{name}.backward"] == 0.0, (rank, name)
        assert cells["host_all_reduce.int"] == 0.0
        assert max(v for k, v in cells.items() if "linear" in k or "vocab" in k) < 1e-5, rank
        assert read_json(out / "collectives" / f"dp_rank{rank}.json") == {
            "gather": 0.0, "broadcast": 0.0, "reduce_scatter": 0.0, "max": 0.0}, rank


def test_tp_zero_saves_every_rank_block_and_resumes_bit_exactly(tp_zero_job):
    _, _, out = tp_zero_job
    straight, same = _losses(out / "straight"), _losses(out / "same")
    assert sorted(straight) == list(range(1, STEPS + 1)) and sorted(same) == list(range(3, STEPS + 1))
    assert [same[s] for s in range(3, STEPS + 1)] == [straight[s] for s in range(3, STEPS + 1)]
    a = CheckpointManager(str(out / "straight" / "checkpoints")).load("auto")
    b = CheckpointManager(str(out / "same" / "checkpoints")).load("auto")
    assert a.step == b.step == STEPS and set(a.tensors) == set(b.tensors)
    for name in a.tensors:
        np.testing.assert_array_equal(a.tensors[name], b.tensors[name], err_msg=name)
    index = json.loads((out / "straight" / "checkpoints" / "step_00000002" / "index.json").read_text())
    assert index["world_size"] == 4
    moment = index["tensors"]["optimizer/model.layers.0.mlp.gate_proj.weight.exp_avg"]
    assert len(moment["slices"]) == 4  # TP halves, each cut by rows over the two DP ranks


def test_tp_zero_resumes_without_zero_on_the_same_curve(tp_zero_job):
    _, _, out = tp_zero_job
    straight, nozero = _losses(out / "straight"), _losses(out / "nozero")
    assert sorted(nozero) == list(range(3, STEPS + 1))
    assert [nozero[s] for s in range(3, STEPS + 1)] == pytest.approx(
        [straight[s] for s in range(3, STEPS + 1)], rel=LOSS_RTOL)

