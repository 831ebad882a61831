"""`mf-train plan` at the seeds' scales, the one rule of what runs today, and --dry-run's fit check."""
import subprocess
import sys

import pytest

from mfcore.cli.train import main
from mfcore.errors import ConfigError
from mfcore.models import load_model_config
from mfcore.plan import GIB, Workload, device_for, layout_of, search
from mfcore.config.checks import check_model_fit
from mfcore.config.loader import load_config

SEEDS = {  # model, devices, sequence, global batch (seed runs; docs/planning.md)
    "llama2-7b": (8, 4096, 1024),
    "llama3-70b": (64, 8192, 2048),
    "deepseek-v3-671b": (1024, 4096, 15360),
}


def _seed_search(name, top=200):
    devices, seq, gbs = SEEDS[name]
    return search(load_model_config(name), devices, Workload(seq, gbs),
                  device_for("Ascend", memory=64 * GIB), top=top)


def test_seed_models_fit_their_seed_devices():
    found = {name: _seed_search(name) for name in SEEDS}
    for name, result in found.items():
        assert result.fitting > 0, name
        for plan in result.best:
            assert plan.memory.total <= 64 * GIB and plan.layout.devices == SEEDS[name][0]
    # 7B fits without a pipeline, and one of its fitting layouts runs today (TP + DP + ZeRO-1)
    assert any(p.runnable for p in found["llama2-7b"].best)
    # 70B and 671B need pipeline stages on 64 GB devices: every fitting layout has PP > 1
    for name in ("llama3-70b", "deepseek-v3-671b"):
        assert all(p.layout.pp > 1 for p in found[name].best), name
    # 70B: its fastest layouts (TP8 with pipeline stages) run, and pipeline stages without TP fit
    # too; 671B: every fitting layout needs EP, together with TP (and SP), which runs
    assert found["llama3-70b"].best[0].runnable and found["llama3-70b"].best[0].layout.tp > 1
    assert any(p.runnable and p.layout.tp == 1 for p in found["llama3-70b"].best)
    assert all(p.layout.ep > 1 and p.layout.tp > 1 and p.layout.sp and p.runnable
               for p in found["deepseek-v3-671b"].best)


def test_plan_command_prints_ranked_layouts_without_mindspore():
    code = ("import sys; from mfcore.cli.train import main; "
            "rc = main(['plan', '--model', 'llama3-70b', '--devices', '64', '--device-memory', '64GiB', "
            "'--seq-length', '8192', '--global-batch-size', '2048', '--top', '3']); "
            "assert 'mindspore' not in sys.modules; sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "best 3 by estimated step time:" in text and " 1. TP" in text and " 3. TP" in text
    assert "memory " in text and "of 64.0 GiB" in text
    # the fastest 70B layouts combine TP4 and SP with 8 pipeline stages, which the trainer runs
    assert " 1. TP4 x PP8" in text and "SP+ZeRO-1" in text and "runs today: no" not in text


def test_plan_of_a_config_and_bad_input(capsys):
    tp8_dp64 = ["parallel.tensor=8", "parallel.data=64", "parallel.pipeline=1", "parallel.sequence_parallel=true"]
    assert main(["plan", "--config", "llama3-70b", *tp8_dp64, "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "config llama3-70b:" in out and "does not fit" in out and "alternatives on the same 512" in out
    assert main(["plan", "--model", "llama3-70b"]) == 2
    assert "--devices" in capsys.readouterr().err
    assert main(["plan", "--model", "llama3-70b", "--devices", "8", "--device-memory", "lots"]) == 2
    assert "64GiB" in capsys.readouterr().err


def test_validation_refuses_what_the_trainer_cannot_run():
    for keys, words in ((["parallel.expert=2", "parallel.data=2", "parallel.tensor=2"],
                         "parallel.tensor = 2 needs parallel.sequence_parallel: true"),
                        (["parallel.expert_tensor=2", "parallel.tensor=2"],
                         "split by tensor parallelism inside each expert are not implemented")):
        with pytest.raises(ConfigError, match=words) as err:
            load_config("tiny-deepseek-v3", keys)
        assert keys[0].split("=")[0] in str(err.value)
    assert load_config("tiny-llama3", ["parallel.pipeline=2", "parallel.virtual_stages=2"]).parallel.pipeline == 2
    # tensor parallelism covers both families (DeepSeek-V3's plan: models/deepseek_v3/parallel_plan.py),
    # alone and inside pipeline stages (tests/dist/test_pipeline_tp_dist.py); expert parallelism runs
    # inside pipeline stages and over tensor x data ranks with SP (the composition matrix,
    # tests/dist/test_composition_dist.py)
    pp_tp_sp = ["parallel.pipeline=2", "parallel.tensor=2", "parallel.sequence_parallel=true"]
    for name, extra in (("tiny-deepseek-v3", ["parallel.tensor=2", "parallel.sequence_parallel=true"]),
                        ("tiny-llama3", ["parallel.tensor=2"]), ("tiny-llama3", pp_tp_sp),
                        ("tiny-deepseek-v3", pp_tp_sp),
                        ("tiny-deepseek-v3", ["parallel.pipeline=2", "parallel.data=2", "parallel.expert=2"]),
                        ("tiny-deepseek-v3", ["parallel.expert=4", "parallel.data=2", *pp_tp_sp])):
        check_model_fit(load_config(name, extra), load_model_config(name))


def test_dry_run_refuses_a_layout_that_does_not_fit(in_tmp, capsys):
    # refused before any rank or data is needed: DP8 of an 8B model on 64 GB devices
    args = ["--config", "llama3-8b", "--dry-run", "parallel.data=8", "parallel.tensor=1",
            "parallel.sequence_parallel=false", f"run.output_dir={in_tmp}/out"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "exceeds plan.device_memory_gib 64 GiB" in err and "weights" in err and "activations" in err
    assert "Fits and runs today: parallel.tensor=" in err
    assert main(args[:-1] + ["parallel.data=1", "parallel.optimizer_sharding=false", args[-1]]) == 2
    assert "No layout of 1 devices fits" in capsys.readouterr().err
    assert not (in_tmp / "out").exists()


# Shipped Ascend configs whose declared layout is the planner's best (docs/planning.md, "Shipped
# configs"). Every shipped config must fit with a layout that runs today.
PLANNERS_BEST = ("deepseek-v3-671b",)


def test_shipped_configs_fit_their_declared_devices():
    from mfcore.plan import plan_run, workload_of
    from mfcore.plan.commands import model_of
    from mfcore.config.loader import shipped_configs
    for name in shipped_configs():
        cfg = load_config(name, validate=False)
        if cfg.plan.device_memory_gib is None:
            continue
        model_cfg = model_of(cfg)
        plan = plan_run(cfg, model_cfg)
        assert plan.fits, (name, plan.memory.total / GIB)
        assert plan.runnable, (name, plan.unrunnable)
        if name in PLANNERS_BEST:
            best = search(model_cfg, plan.layout.devices, workload_of(cfg, model_cfg), plan.device, top=1).best
            assert best[0].layout == plan.layout, name
    # the seeds' device counts: 8 (one node), 64 (8 x 8), 1024 (128 x 8)
    devices = {n: layout_of(load_config(n, validate=False)).devices
               for n in ("llama2-7b", "llama3-70b", "deepseek-v3-671b", "deepseek-v3-1node")}
    assert devices == {"llama2-7b": 8, "llama3-70b": 64, "deepseek-v3-671b": 1024, "deepseek-v3-1node": 8}
    assert load_config("llama2-7b").plan.device_memory_gib == 64


def test_planning_doc_shows_what_the_command_prints(capsys):
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "planning.md").read_text()
    runs = []
    for block in doc.split("```text\n$ mf-train plan")[1:]:
        runs += ("$ mf-train plan" + block[:block.index("```")]).strip().split("\n\n")
    assert len(runs) == 4      # the three seed runs, DeepSeek-V3 dropless and at capacity 1.5
    for run in runs:
        command, expected = run.split("\n", 1)
        assert main(command.split()[2:]) == 0
        assert capsys.readouterr().out.strip() == expected.strip(), f"docs/planning.md is stale: {command}"
