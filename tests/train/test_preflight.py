"""Issue 21 row 7: mf-train refuses, before allocating anything, a model or sequence whose memory
estimate exceeds the host's (or the configured device's) memory, naming the figure; data.seq_length
is bounded by max_position_embeddings unless data.allow_long_sequences; non-finite numbers such as
optimizer.lr=.inf are refused. Each run is a subprocess with a 4 GiB address-space cap, so a
missing check shows as a MemoryError/kill instead of eating the shared machine."""
import os
import subprocess
import sys

import pytest

from mfcore.cli.train import main
from mfcore.models import load_model_config
from mfcore.config.loader import load_config
from mfcore.train.preflight import check_fit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CAP = 4 * 1024 ** 3


def _mf_train(cwd, *args):
    """mf-train in a child limited to 4 GiB of address space."""
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (%d, %d)); "
            "from mfcore.cli.train import main; sys.exit(main(sys.argv[1:]))" % (CAP, CAP))
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "GLOG_v": "3"})


@pytest.fixture
def prefix(in_tmp):
    import numpy as np

    from tests.data.test_gpt_dataset import random_docs, write_dataset
    write_dataset(in_tmp / "d", random_docs(np.random.default_rng(0), 300))
    return str(in_tmp / "d")


def test_huge_hidden_size_is_refused_before_allocation(in_tmp, prefix):
    r = _mf_train(in_tmp, "--config", "tiny-llama3", f"data.prefixes=[{prefix}]", "model.overrides.hidden_size=1000000",
                  "model.overrides.intermediate_size=1000000", "training.train_steps=1", "plan.device_memory_gib=16")
    assert r.returncode == 2, r.stderr[-3000:]
    err = r.stderr.strip()
    assert err.startswith("error: ") and err.count("\n") == 0 and "Traceback" not in err, err
    assert "needs about" in err and "more than the plan.device_memory_gib of 16.0 GiB" in err


def test_host_memory_is_the_limit_on_cpu(prefix):
    import psutil
    cfg = load_config("tiny-llama3", [f"data.prefixes=[{prefix}]", "model.overrides.hidden_size=1000000"])
    model_cfg = load_model_config(cfg.model.name)
    model_cfg.hidden_size = 1000000
    report = check_fit(cfg, model_cfg)
    assert report.limit == psutil.virtual_memory().total and report.limit_name == "host memory"
    assert "more than the host memory of" in report.problem()
    assert check_fit(load_config("tiny-llama3", [f"data.prefixes=[{prefix}]"]),
                     load_model_config("tiny-llama3")).problem() is None


def test_sequence_past_max_positions_is_refused_unless_allowed(in_tmp, prefix):
    r = _mf_train(in_tmp, "--config", "tiny-llama3", f"data.prefixes=[{prefix}]", "data.seq_length=100000000",
                  "training.train_steps=1")
    assert r.returncode == 2, r.stderr[-3000:]
    assert "data.seq_length (100000000) exceeds the model's max_position_embeddings (2048)" in r.stderr
    assert "data.allow_long_sequences" in r.stderr and "Traceback" not in r.stderr
    # allowed past the positions, the memory check still stops it (attention is quadratic in it)
    r = _mf_train(in_tmp, "--config", "tiny-llama3", f"data.prefixes=[{prefix}]", "data.seq_length=100000000",
                  "data.allow_long_sequences=true", "training.train_steps=1")
    assert r.returncode == 2 and "needs about" in r.stderr and "host memory" in r.stderr, r.stderr[-3000:]


def test_dry_run_reports_the_same_verdict(in_tmp, prefix, capsys):
    assert main(["--config", "tiny-llama3", "--dry-run", f"data.prefixes=[{prefix}]", "data.seq_length=4096"]) == 2
    assert "max_position_embeddings (2048)" in capsys.readouterr().err
    assert main(["--config", "tiny-llama3", "--dry-run", f"data.prefixes=[{prefix}]",
                 "model.overrides.hidden_size=100000"]) == 0   # over the host's memory
    out = capsys.readouterr().out
    assert "memory check: DOES NOT FIT" in out and "mf-train would refuse it" in out and "not built" in out


@pytest.mark.parametrize("override", ["optimizer.lr=.inf", "optimizer.lr=.nan", "optimizer.weight_decay=.inf",
                                      "data.weights=[.nan]"])
def test_non_finite_numbers_are_refused(capsys, override):
    assert main(["--config", "tiny-llama3", "--print-config", override]) == 2
    err = capsys.readouterr().err
    assert f"{override.split('=')[0]} must be a finite number" in err
