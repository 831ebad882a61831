"""The loop with the tests' own model and an in-memory loader: it learns, it logs what it says, it
validates, it follows the NaN policy. (K micro batches = one big batch: tests/train/test_step.py.)"""
import math
import os

import numpy as np
import pytest

from helpers.toy_model import ToyLM
from mfcore.config.loader import config_from_dict
from mfcore.train.faults import TrainingDivergedError
from mfcore.train.monitor import read_metrics
from mfcore.train.trainer import DataBundle, train

SEQ, VOCAB = 16, 32


def samples(n, seed):
    """A learnable stream: each next token is (token * 3 + 1) mod vocab."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = np.empty(SEQ + 1, np.int32)
        t[0] = rng.integers(VOCAB)
        for i in range(SEQ):
            t[i + 1] = (t[i] * 3 + 1) % VOCAB
        out.append({"tokens": t[:-1], "labels": t[1:], "loss_mask": np.ones(SEQ, np.float32),
                    "position_ids": np.arange(SEQ, dtype=np.int32)})
    return out


def list_loader(gbs, mbs):
    """The loader contract (PretrainingLoader) over a list, single rank."""
    def factory(dataset, consumed):
        def gen():
            s = consumed
            while True:
                idx = [(s + i) % len(dataset) for i in range(gbs)]
                s += gbs
                yield [{k: np.stack([dataset[j][k] for j in idx[m:m + mbs]]) for k in dataset[0]}
                       for m in range(0, gbs, mbs)]
        return gen()
    return factory


def run_cfg(tmp_path, **sections):
    base = {"run": {"output_dir": str(tmp_path / "out"), "seed": 7},
            "data": {"prefixes": ["unused"], "seq_length": SEQ, "split": "90,10,0"},
            "training": {"global_batch_size": 8, "micro_batch_size": 4, "train_steps": 30},
            "optimizer": {"lr": 0.05, "weight_decay": 0.0},
            "schedule": {"name": "constant"},
            "checkpoint": {"resume": "none"},
            "logging": {"log_interval": 1, "progress_bar": "never"}}
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return config_from_dict(base)


def bundle(cfg, valid=True):
    t = cfg.training
    return DataBundle(samples(64, 1), samples(16, 2) if valid else None,
                      loader_factory=list_loader(t.global_batch_size, t.micro_batch_size))


def test_loop_learns_and_metrics_hold_the_logged_values(in_tmp, tmp_path, capsys):
    cfg = run_cfg(tmp_path, training={"eval_interval": 10, "eval_steps": 2})
    result = train(cfg, model=ToyLM(vocab=VOCAB), data=bundle(cfg))
    assert result.state.step == 30 and result.state.consumed_tokens == 30 * 8 * SEQ
    assert result.losses[-1] < 0.3 * result.losses[0]
    out = tmp_path / "out"
    rows = read_metrics(out)
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == list(range(1, 31))
    assert [r["loss"] for r in train_rows] == pytest.approx(result.losses, rel=1e-9)
    assert [r["grad_norm"] for r in train_rows] == pytest.approx(result.grad_norms, rel=1e-9)
    assert all(r["lr"] == 0.05 and r["tokens_per_s"] > 0 and 0 <= r["data_wait_share"] < 1
               for r in train_rows)
    memory = [r["memory_gb"] for r in train_rows]   # peak RSS: MindSpore alone needs > 0.1 GB
    assert 0.1 < memory[0] and memory == sorted(memory) and memory[-1] < 64
    valid = [(r["step"], r["valid_loss"], r["valid_ppl"]) for r in rows if "valid_loss" in r]
    assert [v[0] for v in valid] == [10, 20, 30]
    assert all(v[2] == pytest.approx(math.exp(v[1])) for v in valid)
    assert valid[-1][1] < valid[0][1]
    assert (out / "config.yaml").is_file() and list((out / "tensorboard").glob("events.*"))
    log = capsys.readouterr().out
    assert "step 30/30" in log and "validation at step 30" in log
    assert f"mem {memory[-1]:.2f} GB" in log
    assert log.count("time to first step: ") == 1
    assert 0 < result.first_step_s < result.time_to_first_step < 600


def test_non_finite_loss_stops_with_a_clear_message(in_tmp, tmp_path):
    cfg = run_cfg(tmp_path, training={"train_steps": 10}, faults={"max_bad_steps": 3})
    model = ToyLM(vocab=VOCAB)
    data = bundle(cfg, valid=False)
    data.train = [{**s, "loss_mask": np.full(SEQ, np.inf, np.float32)} for s in data.train]
    with pytest.raises(TrainingDivergedError, match="3 consecutive bad steps"):
        train(cfg, model=model, data=data)
    rows = read_metrics(tmp_path / "out")
    assert [r["skipped"] for r in rows] == [1, 1]


def test_cpu_runs_graphs_on_the_calling_thread_unless_the_user_chose(monkeypatch):
    """On CPU, MindSpore's graph pipeline would leave the Python thread spinning on a core."""
    import os

    from mfcore.config.loader import load_config
    from mfcore.train.trainer import setup_runtime

    cfg = load_config("tiny-llama3")
    assert cfg.run.device_target == "CPU"
    monkeypatch.delenv("MS_DEV_HOST_BLOCKING_RUN", raising=False)
    setup_runtime(cfg)
    assert os.environ["MS_DEV_HOST_BLOCKING_RUN"] == "1"
    monkeypatch.setenv("MS_DEV_HOST_BLOCKING_RUN", "0")
    setup_runtime(cfg)
    assert os.environ["MS_DEV_HOST_BLOCKING_RUN"] == "0"


THREADS_PROBE = """
import os, sys
import numpy as np, mindspore as ms
from mfcore.config.loader import load_config
from mfcore.optim.grad_norm import SquareSum
from mfcore.train.trainer import setup_runtime
setup_runtime(load_config("tiny-llama3", overrides=sys.argv[1:]))
x = ms.Tensor(np.random.default_rng(0).normal(size=(3_000_001,)).astype(np.float32))
print(ms.get_context("runtime_num_threads"), os.environ.get("MFCORE_KERNEL_THREADS"),
      repr(float(SquareSum()(x).asnumpy())))
"""


def test_run_threads_sets_mindspores_and_our_kernels_threads_without_changing_results(in_tmp):
    """run.threads reaches MindSpore (runtime_num_threads) and the C++ kernels (by environment, read
    on every call); a kernel splitting 3M elements over 1 or all threads gives the same bits."""
    import subprocess
    import sys

    def probe(*overrides):
        env = {k: v for k, v in os.environ.items() if k != "MFCORE_KERNEL_THREADS"}
        out = subprocess.run([sys.executable, "-c", THREADS_PROBE, *overrides], env=env, check=True,
                             capture_output=True, text=True).stdout.split()
        return out[-3:]

    ms_threads, kernel_threads, one_thread = probe("run.threads=1")
    assert (ms_threads, kernel_threads) == ("1", "1")
    ms_default, kernel_default, every_thread = probe()
    assert kernel_default == "None" and int(ms_default) >= 1
    assert one_thread == every_thread


def test_moe_capacity_mode_logs_tokens_per_expert_and_dropped_tokens(in_tmp, tmp_path, capsys):
    """A DeepSeek-V3 MoE with capacity 8 per micro batch (factor 0.5 x 64 tokens x top-2 / 8
    experts): each of its 2 MoE layers drops at least 128 - 8 * 8 pairs of every micro batch."""
    from mfcore.models import build_model, load_model_config
    config = dict(load_model_config("tiny-deepseek-v3").__dict__, vocab_size=VOCAB, num_hidden_layers=2,
                  moe_dispatch="capacity", capacity_factor=0.5)
    cfg = run_cfg(tmp_path, training={"train_steps": 3})
    train(cfg, model=build_model(config), data=bundle(cfg, valid=False))
    rows = [r for r in read_metrics(tmp_path / "out") if "loss" in r]
    assert len(rows) == 3
    for r in rows:   # 8 samples x 16 tokens x top-2 over 8 experts, routed (before dropping)
        assert r["expert_tokens_mean"] == 32.0 and r["expert_tokens_min"] <= 32 <= r["expert_tokens_max"]
        assert r["dropped_tokens"] >= 2 * 2 * (128 - 64)
    assert f"dropped {rows[-1]['dropped_tokens']}" in capsys.readouterr().out


@pytest.mark.parametrize("pipeline,expected", [(1, 256), (2, 0)])
def test_models_are_built_with_the_loss_chunking_except_in_pipelines(tmp_path, monkeypatch, pipeline, expected):
    """Pipeline stages keep the unchunked head: their forward-only graph computes the loss too."""
    from types import SimpleNamespace
    import mfcore.parallel.pipeline_model as pipeline_model
    from mfcore.models import load_model_config
    from mfcore.train.trainer import build_model_for
    monkeypatch.setattr(pipeline_model, "build_pipeline_model", lambda model, ctx: model)
    cfg = run_cfg(tmp_path, training={"loss_chunk_tokens": 256})
    ctx = SimpleNamespace(pp_size=pipeline, parallelize_model=lambda model: model)
    model = build_model_for(cfg, load_model_config("tiny-llama3"), ctx)
    assert model.chunked_loss.fused.chunk_tokens == expected
