"""`mf-train --dry-run` on every shipped config proves the save/reload path of its parallel layout:
a tiny-scaled model of the config's family is saved as the layout's simulated ranks and reloaded
in that layout and in one process (mfcore.train.layout_check). The overrides only shrink what this
CPU host cannot run (device, bf16, sequence length, run length); the parallel section is the
config's."""
import pytest

from mfcore.cli.train import main
from mfcore.config.loader import load_config, shipped_configs

# Expert-parallel layouts simulate two expert-DP replicas of EP groups at most two TP groups wide:
# DeepSeek-V3 671B's TP4 x DP8 x EP8 (EP from each stage's TP x DP ranks) as TP4 x DP4 x EP8.
EXPERT_PARALLEL = {"deepseek-v3-671b": "16 simulated ranks (TP=4, DP=4, EP=8, sequence_parallel=True, "
                                       "ZeRO-1=True)"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from helpers.synthetic_data import write_pattern_corpus
    return write_pattern_corpus(tmp_path_factory.mktemp("dry") / "syn_text_document", documents=100)


@pytest.mark.parametrize("name", sorted(shipped_configs()))
def test_dry_run_round_trips_the_checkpoint_of_every_shipped_layout(name, corpus, in_tmp, capsys):
    parallel = load_config(name, validate=False).parallel
    args = ["--config", name, "--dry-run", f"data.prefixes=[{corpus}]", f"data.cache_dir={in_tmp / 'cache'}",
            f"run.output_dir={in_tmp / 'out'}", "run.device_target=CPU", "data.seq_length=64",
            "training.train_tokens=null", "training.train_steps=2", "training.eval_interval=0",
            "precision.compute_dtype=float32"]
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 0, err
    measured = next(l for l in out.splitlines() if l.startswith("measured:"))
    if parallel.data * parallel.tensor * parallel.pipeline == 1:   # one process: one real step
        assert measured.startswith("measured: one training step (") and "GiB for this process" in measured
    else:
        assert measured.startswith("measured: no step run ("), measured
    dp = min(parallel.data, 3)
    line = next(l for l in out.splitlines() if l.startswith("checkpoint round trip"))
    if name in EXPERT_PARALLEL:
        assert line == (f"checkpoint round trip: {EXPERT_PARALLEL[name]} saved, reloaded in that layout "
                        f"and in one process: identical")
        return
    assert line == (f"checkpoint round trip: {parallel.tensor * dp} simulated ranks (TP={parallel.tensor}, "
                    f"DP={dp}, sequence_parallel={parallel.sequence_parallel and parallel.tensor > 1}, "
                    f"ZeRO-1={parallel.optimizer_sharding and dp > 1}) saved, reloaded in that layout "
                    f"and in one process: identical")
