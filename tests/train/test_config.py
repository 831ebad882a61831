"""Run config: YAML + base_config + overrides → typed config; validation names keys and suggests."""
import pytest
import yaml

from mfcore.errors import ConfigError
from mfcore.config.loader import (config_from_dict, dump_config, load_config, parse_overrides,
                                 write_resolved_config)

MIN = {"data": {"prefixes": ["d/text_document"], "seq_length": 64},
       "training": {"global_batch_size": 8, "micro_batch_size": 2, "train_steps": 10}}


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_and_types(tmp_path):
    cfg = load_config(write(tmp_path / "a.yaml", MIN))
    assert cfg.training.global_batch_size == 8 and cfg.data.seq_length == 64
    assert cfg.optimizer.name == "adamw" and cfg.parallel.data == 1
    assert cfg.checkpoint.resume == "auto" and cfg.recompute.mode == "none"


def test_overrides_are_typed_and_nested(tmp_path):
    cfg = load_config(write(tmp_path / "a.yaml", MIN),
                      ["optimizer.lr=3e-4", "run.deterministic=true", "model.overrides.num_hidden_layers=2",
                       "data.prefixes=[x, y]", "data.weights=[1, 3]"])
    assert cfg.optimizer.lr == pytest.approx(3e-4) and isinstance(cfg.optimizer.lr, float)
    assert cfg.run.deterministic is True
    assert cfg.model.overrides == {"num_hidden_layers": 2}
    assert cfg.data.prefixes == ["x", "y"] and cfg.data.weights == [1.0, 3.0]


def test_base_config_inheritance(tmp_path):
    write(tmp_path / "base.yaml", {**MIN, "optimizer": {"lr": 0.01, "beta2": 0.99}})
    child = write(tmp_path / "child.yaml", {"base_config": "base.yaml", "optimizer": {"lr": 0.02}})
    cfg = load_config(child)
    assert cfg.optimizer.lr == 0.02 and cfg.optimizer.beta2 == 0.99
    assert cfg.training.train_steps == 10


def test_base_config_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", {"base_config": "b.yaml"})
    write(tmp_path / "b.yaml", {"base_config": "a.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_unknown_key_suggests_nearest(tmp_path):
    bad = {**MIN, "training": {**MIN["training"], "global_batch_sise": 4}}
    with pytest.raises(ConfigError, match=r"unknown key 'training.global_batch_sise'.*"
                                          r"did you mean 'training.global_batch_size'") as e:
        load_config(write(tmp_path / "bad.yaml", bad))
    assert "bad.yaml" in str(e.value)


def test_unknown_section_and_override_suggest(tmp_path):
    path = write(tmp_path / "a.yaml", MIN)
    with pytest.raises(ConfigError, match="did you mean 'optimizer'"):
        load_config(path, ["optimiser.lr=1"])
    with pytest.raises(ConfigError, match="did you mean 'schedule.warmup_steps'"):
        load_config(path, ["schedule.warmup_step=3"])


def test_wrong_type_and_choice(tmp_path):
    path = write(tmp_path / "a.yaml", MIN)
    with pytest.raises(ConfigError, match="'training.train_steps' must be an integer, got 'many'"):
        load_config(path, ["training.train_steps=many"])
    with pytest.raises(ConfigError, match="'schedule.name' must be one of constant, linear, cosine, wsd"):
        load_config(path, ["schedule.name=exp"])
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        parse_overrides(["lr"])


def test_global_batch_must_divide_by_micro_times_dp():
    data = {**MIN, "training": {**MIN["training"], "global_batch_size": 12, "micro_batch_size": 4},
            "parallel": {"data": 2}}
    with pytest.raises(ConfigError, match=r"global_batch_size \(12\) must be divisible by "
                                          r"training.micro_batch_size \(4\) x parallel.data \(2\) = 8"):
        config_from_dict(data)


def test_consistency_errors_are_all_reported():
    data = {**MIN, "training": {"global_batch_size": 8, "micro_batch_size": 2},
            "schedule": {"min_lr": 1.0}, "data": {"prefixes": ["a", "b"], "weights": [1.0]}}
    with pytest.raises(ConfigError) as e:
        config_from_dict(data)
    text = str(e.value)
    assert "exactly one of training.train_steps and training.train_tokens" in text
    assert "schedule.min_lr (1.0) must be between 0 and optimizer.lr" in text
    assert "data.weights has 1 entries for 2 data.prefixes" in text


def test_gradient_accumulation_must_agree():
    data = {**MIN, "training": {**MIN["training"], "gradient_accumulation_steps": 3}}
    with pytest.raises(ConfigError, match=r"gradient_accumulation_steps \(3\) disagrees .* = 4"):
        config_from_dict(data)


def test_loss_chunk_tokens_defaults_on_and_refuses_negatives():
    assert config_from_dict(MIN).training.loss_chunk_tokens == 1024
    assert config_from_dict({**MIN, "training": {**MIN["training"], "loss_chunk_tokens": 0}}) \
        .training.loss_chunk_tokens == 0
    with pytest.raises(ConfigError, match=r"training.loss_chunk_tokens must be >= 0 \(0: unchunked\), got -8"):
        config_from_dict({**MIN, "training": {**MIN["training"], "loss_chunk_tokens": -8}})


def test_run_threads_defaults_to_unset_and_refuses_zero():
    assert config_from_dict(MIN).run.threads is None
    assert config_from_dict({**MIN, "run": {"threads": 1}}).run.threads == 1
    with pytest.raises(ConfigError, match=r"run.threads must be > 0, got 0"):
        config_from_dict({**MIN, "run": {"threads": 0}})


def test_bfloat16_on_cpu_refused():
    with pytest.raises(ConfigError, match="bfloat16"):
        config_from_dict({**MIN, "precision": {"compute_dtype": "bfloat16"}})


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(write(tmp_path / "a.yaml", MIN), ["optimizer.lr=0.5", "training.eval_interval=5"])
    path = write_resolved_config(cfg, tmp_path / "out")
    assert path.name == "config.yaml"
    assert load_config(path) == cfg
    assert yaml.safe_load(dump_config(cfg))["optimizer"]["lr"] == 0.5


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="neither a file nor a shipped config"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(bad)


def test_configuration_reference_is_current():
    from pathlib import Path
    from mfcore.config.docs import config_reference
    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert doc.read_text() == config_reference(), "run tools/gen_config_docs.py"
    assert "| `global_batch_size` | int | `8` |" in doc.read_text()


def test_pipeline_limits_are_refused_with_their_keys():
    data = {**MIN, "training": {**MIN["training"], "global_batch_size": 12, "micro_batch_size": 4},
            "parallel": {"pipeline": 2, "virtual_stages": 2, "tensor": 2}}
    with pytest.raises(ConfigError) as e:
        config_from_dict(data)
    text = str(e.value)
    assert "parallel.tensor" not in text   # pipelines compose with tensor parallelism
    assert "micro batch count (3) to be a multiple of parallel.pipeline (2)" in text
    ok = {**MIN, "parallel": {"pipeline": 2, "virtual_stages": 2, "pipeline_layers": [1, 1, 1, 1]}}
    assert config_from_dict(ok).parallel.pipeline_layers == [1, 1, 1, 1]
@pytest.mark.parametrize("split", ["969 30 1", "969,30,1", "1/1", "1", "98, 2"])
def test_split_accepted_exactly_as_the_data_engine_reads_it(split):
    from mfcore import _core
    cfg = config_from_dict({**MIN, "data": {**MIN["data"], "split": split}})
    assert cfg.data.split == split and _core.parse_split(split)[0] > 0


@pytest.mark.parametrize("split, why", [("nan,1,1", "unexpected character 'n'"), ("1,2,3,4", "more than three"),
                                        ("0,0,0", "all weights are zero"), ("-1,2", "negative weight")])
def test_split_refused_by_the_engine_parser_at_config_time(split, why):
    with pytest.raises(ConfigError, match=f"data.split '{split}': {why}"):
        config_from_dict({**MIN, "data": {**MIN["data"], "split": split}})


def test_dtype_names_and_the_cpu_rule_are_one_table():
    from mfcore.models.dtypes import COMPUTE_DTYPES, device_problem
    from mfcore.config.schema import PrecisionSection
    import dataclasses
    field = {f.name: f for f in dataclasses.fields(PrecisionSection)}["compute_dtype"]
    assert field.metadata["choices"] == COMPUTE_DTYPES
    assert device_problem("bf16", "CPU") and device_problem("bfloat16", "Ascend") is None
    with pytest.raises(ConfigError, match="bfloat16 is not available on CPU.*run.device_target CPU"):
        config_from_dict({**MIN, "precision": {"compute_dtype": "bfloat16"}})
    assert config_from_dict({**MIN, "run": {"device_target": "Ascend"},
                             "precision": {"compute_dtype": "bfloat16"}}).precision.compute_dtype == "bfloat16"
