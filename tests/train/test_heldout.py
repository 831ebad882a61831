"""`mf-eval`: token-weighted main-head loss and perplexity over a split's Megatron samples, equal to
the same sum computed from the model's logits in NumPy; the JSON output is for scripts."""
import json
import math
import os

import numpy as np
import pytest
from mindspore import Tensor

from mfcore.cli.eval import main
from helpers.synthetic_data import write_pattern_corpus

MODEL = os.path.join(os.path.dirname(__file__), "..", "golden", "hf_transformers", "llama3_rope_scaled")
SEQ = 16


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_pattern_corpus(tmp_path_factory.mktemp("heldout") / "corpus", documents=120)


def numpy_loss(model, dataset, count):
    """Σ mask·CE / Σ mask over the first ``count`` samples from the model's logits, in float64."""
    total, tokens = 0.0, 0
    for i in range(count):
        s = dataset[i]
        z = model(Tensor(s["tokens"][None].astype(np.int32))).asnumpy()[0].astype(np.float64)
        lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
        ce = lse - z[np.arange(len(z)), s["labels"]]
        total += float((ce * s["loss_mask"]).sum())
        tokens += int(np.count_nonzero(s["loss_mask"]))
    return total / tokens, tokens


def run_json(capsys, *argv):
    assert main(list(argv) + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_test_split_loss_is_the_token_weighted_masked_mean(corpus, in_tmp, capsys):
    from mfcore.generation import load_model
    from mfcore.config.loader import load_config
    from mfcore.train.heldout import split_dataset

    out = run_json(capsys, "-c", MODEL, "--data", corpus, "--seq-length", str(SEQ), "--samples", "10",
                   "--micro-batch-size", "4", "data.split=80,10,10", "data.eod_mask_loss=true", "data.eod_id=0")
    assert out["split"] == "test" and out["samples"] == 10 and out["seq_length"] == SEQ
    cfg = load_config(None, ["data.split=80,10,10", "data.eod_mask_loss=true", "data.eod_id=0"], validate=False)
    cfg.data.prefixes, cfg.data.seq_length = [corpus], SEQ
    model = load_model(MODEL)
    expected, tokens = numpy_loss(model, split_dataset(cfg, model.config, "test", 10), 10)
    assert out["tokens"] == tokens < 10 * SEQ               # EOD predictions are masked out
    assert out["loss"] == pytest.approx(expected, rel=1e-5)
    assert out["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)


def test_valid_split_and_the_text_line(corpus, in_tmp, capsys):
    assert main(["-c", MODEL, "--data", corpus, "--seq-length", str(SEQ), "--split", "valid",
                 "--samples", "3", "data.split=80,10,10"]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"valid split of {corpus}: 3 samples, ") and "perplexity" in line


def test_an_empty_split_is_one_error_line(corpus, in_tmp, capsys):
    assert main(["-c", MODEL, "--data", corpus, "--seq-length", str(SEQ), "data.split=100,0,0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "the test split is empty" in err


@pytest.mark.slow
def test_mf_train_logs_the_test_split_once_at_the_end_as_mf_eval_computes_it(in_tmp, capsys):
    """The run's own test split: `mf-train` logs it after the last step, `mf-eval --config` agrees."""
    from mfcore.config.loader import load_config
    from mfcore.train.monitor import read_metrics
    from mfcore.train.trainer import train

    prefix = write_pattern_corpus(in_tmp / "syn_text_document", documents=200)
    overrides = [f"data.prefixes=[{prefix}]", f"data.cache_dir={in_tmp / 'cache'}", "data.seq_length=32",
                 "data.split=80,10,10", f"run.output_dir={in_tmp / 'out'}", "training.train_steps=4",
                 "training.global_batch_size=4", "training.micro_batch_size=2", "training.eval_interval=4",
                 "training.eval_steps=2", "logging.progress_bar=never", "checkpoint.resume=none",
                 "precision.compute_dtype=float32"]
    train(load_config("tiny-llama3", overrides))
    tests = [r for r in read_metrics(in_tmp / "out") if "test_loss" in r]
    assert len(tests) == 1 and tests[0]["step"] == 4 and tests[0]["test_samples"] == 8
    assert math.isfinite(tests[0]["test_loss"]) and tests[0]["test_ppl"] == pytest.approx(
        math.exp(tests[0]["test_loss"]))
    capsys.readouterr()
    out = run_json(capsys, "--config", "tiny-llama3", *overrides, "--samples", "8", "--micro-batch-size", "2")
    assert out["samples"] == 8 and out["loss"] == pytest.approx(tests[0]["test_loss"], rel=1e-6)


def test_a_split_without_test_documents_skips_the_end_evaluation(corpus, in_tmp, caplog):
    """Training is over and saved by then: no test documents must not fail the run."""
    from mfcore.models import load_model_config
    from mfcore.config.loader import load_config
    from mfcore.train.heldout import evaluate_test_split

    cfg = load_config(None, [f"data.prefixes=[{corpus}]", "data.split=90,10,0", "data.seq_length=16",
                             "training.eval_interval=5", "data.eod_id=0"], validate=False)
    with caplog.at_level("WARNING", logger="mfcore.train"):
        assert evaluate_test_split(cfg, None, load_model_config(MODEL)) is None
    assert "test split not evaluated" in caplog.text
