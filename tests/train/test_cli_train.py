"""`mf-train` command surface: shipped configs by name, --list-configs, --print-config, clear errors."""
import math
import re

import yaml

from mfcore.cli.train import main
from mfcore.config.loader import load_config, resolve_config_path, shipped_configs


def test_shipped_configs_all_load_and_have_tiny_versions():
    names = set(shipped_configs())
    assert {"llama2-7b", "llama3-8b", "llama3-70b", "deepseek-v3-671b",
            "tiny-llama2", "tiny-llama3", "tiny-deepseek-v3"} <= names
    for name in names:
        cfg = load_config(name)   # every shipped config validates (deepseek-v3-671b: EP x TP with SP)
        assert cfg.model.name == name
    tiny = load_config("tiny-llama3")
    assert tiny.run.device_target == "CPU" and tiny.data.prefixes == ["demo_output/data/demo_text_document"]


def test_addressable_by_name_file_name_and_path():
    path = shipped_configs()["llama3-8b"]
    assert resolve_config_path("llama3-8b") == path
    assert resolve_config_path("pretrain_llama3_8b") == path
    assert resolve_config_path("pretrain_llama3_8b.yaml") == path
    assert resolve_config_path(str(path)) == path


def test_list_configs(capsys):
    assert main(["--list-configs"]) == 0
    out = capsys.readouterr().out
    assert "tiny-deepseek-v3" in out and "llama3-70b" in out


def test_print_config_applies_overrides(capsys):
    assert main(["--config", "tiny-llama2", "--print-config", "training.train_steps=7",
                 "optimizer.lr=2e-3"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["training"]["train_steps"] == 7 and data["optimizer"]["lr"] == 2e-3
    assert data["model"]["name"] == "tiny-llama2"


def test_errors_are_one_line_exit_2(capsys):
    assert main(["--config", "tiny-lama3", "--print-config"]) == 2
    assert "did you mean 'tiny-llama3'" in capsys.readouterr().err
    assert main(["--config", "tiny-llama3", "--print-config", "trainig.train_steps=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "did you mean 'training'" in err and err.count("\n") == 1
    assert main(["--print-config"]) == 2
    assert "give --config" in capsys.readouterr().err


def test_dry_run_reports_without_training(in_tmp, capsys):
    from helpers.synthetic_data import write_pattern_corpus
    prefix = write_pattern_corpus(in_tmp / "syn_text_document", documents=100)
    args = ["--config", "tiny-llama3", "--dry-run", f"data.prefixes=[{prefix}]",
            f"data.cache_dir={in_tmp / 'cache'}", f"run.output_dir={in_tmp / 'out'}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    from mfcore.models import count_parameters, load_model_config
    params = count_parameters(load_model_config("tiny-llama3"))
    assert f"model: {params:,} parameters" in out and f"built, {params:,} trainable" in out
    assert "tokens per step: 1,024 (8 x 128), 2 micro batches of 4 per rank" in out
    assert "train samples" in out and "memory per device (estimate)" in out
    assert "activations" in out and "plan.device_memory_gib unset: not checked" in out
    assert "step " in out and "(estimated)" in out
    # one real step of the run (one process, fits this host): its loss at initialisation and the
    # process's measured peak, beside the estimate
    measured = re.search(r"measured: one training step \(2 micro batches, loss ([0-9.]+), [0-9.]+ s with "
                         r"the graph compile\): peak ([0-9.]+) GiB for this process", out)
    assert measured, out
    vocab = load_model_config("tiny-llama3").vocab_size
    assert abs(float(measured.group(1)) - math.log(vocab)) < 0.5     # near-uniform predictions
    assert 0.2 < float(measured.group(2)) < 8.0
    assert not (in_tmp / "out" / "metrics.jsonl").exists()


def test_dry_run_names_a_missing_dataset(in_tmp, capsys):
    assert main(["--config", "tiny-llama3", "--dry-run", f"data.prefixes=[{in_tmp}/missing]",
                 f"run.output_dir={in_tmp / 'out'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing" in err


def test_overrides_and_flags_mix_in_any_order(capsys):
    assert main(["--config", "tiny-llama3", "training.train_steps=7", "--resume", "auto",
                 "optimizer.lr=2e-3", "--print-config", "run.seed=5"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["training"]["train_steps"] == 7 and data["optimizer"]["lr"] == 2e-3
    assert data["run"]["seed"] == 5 and data["checkpoint"]["resume"] == "auto"


def test_output_dir_named_after_the_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-llama3").mkdir()
    assert main(["--config", "tiny-llama3", "run.output_dir=tiny-llama3", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["model"]["name"] == "tiny-llama3"
    from mfcore.train.trainer import model_config_of
    assert model_config_of(load_config("tiny-llama3")).hidden_size == 256
    (tmp_path / "llama3-8b").write_text("run: {}\n")
    assert main(["--config", "llama3-8b", "--print-config"]) == 2
    assert "ambiguous" in capsys.readouterr().err
    assert resolve_config_path("./llama3-8b").resolve() == (tmp_path / "llama3-8b").resolve()
