"""`mf-generate` as a user runs it: an HF directory or a training checkpoint, one streamed prompt or
a batch from a file, the same text as the Python API, and one-line errors for bad input."""
import os

import pytest

from mfcore.cli.generate import main
from tests.generation.references import FIXTURES

MODEL = os.path.join(FIXTURES, "llama3_rope_scaled")


def byte_tokenizer(path):
    """A byte-level tokenizer.json whose 256 ids are the 256 bytes (the fixture models' vocab)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet(), key=lambda c: ord(c)))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.save(str(path))
    return str(path)


@pytest.fixture
def tokenizer(in_tmp):
    return byte_tokenizer(in_tmp / "tokenizer.json")


def test_hf_dir_and_checkpoint_generate_the_api_text(tokenizer, in_tmp, capsys):
    from mfcore.checkpoint.hf import import_hf
    from mfcore.data.preprocess.encode import load_tokenizer
    from mfcore.generation import generate, load_model

    expected = generate(load_model(MODEL), load_tokenizer(tokenizer), ["Hello"], max_new_tokens=6,
                        eod_id=-1)[0]
    assert len(expected.tokens) == 6
    assert main(["-c", MODEL, "--tokenizer", tokenizer, "--prompt", "Hello", "--max-new-tokens", "6",
                 "--eod-id", "255"]) == 0
    hf_out = capsys.readouterr().out
    import_hf(MODEL, str(in_tmp / "ckpt"))          # a training checkpoint of the same weights
    assert main(["-c", str(in_tmp / "ckpt"), "--tokenizer", tokenizer, "--prompt", "Hello",
                 "--max-new-tokens", "6", "--eod-id", "255"]) == 0
    ckpt_out = capsys.readouterr().out
    if 255 not in expected.tokens:
        assert hf_out == "Hello" + expected.text + "\n"
    assert ckpt_out == hf_out


def test_prompts_file_is_one_batch_and_a_seed_repeats_sampling(tokenizer, in_tmp, capsys):
    (in_tmp / "prompts.txt").write_text("The cat\nA dog ran\n\n")
    argv = ["-c", MODEL, "--tokenizer", tokenizer, "--prompts-file", "prompts.txt", "--max-new-tokens",
            "5", "--temperature", "0.8", "--top-k", "40", "--top-p", "0.9", "--seed", "3"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert first.count("--- [") == 2 and "\nThe cat" in first and "\nA dog ran" in first
    assert main(argv) == 0
    assert capsys.readouterr().out == first


def test_stop_string_ends_the_text(tokenizer, in_tmp):
    from mfcore.data.preprocess.encode import load_tokenizer
    from mfcore.generation import generate, load_model

    model, tok = load_model(MODEL), load_tokenizer(tokenizer)
    free = generate(model, tok, ["Hello"], max_new_tokens=6, eod_id=-1)[0]
    stop = free.text[2:4]
    assert stop
    cut = generate(model, tok, ["Hello"], max_new_tokens=6, eod_id=-1, stop=[stop])[0]
    assert cut.finish_reason == "stop" and cut.text == free.text[:free.text.find(stop)]


@pytest.mark.parametrize("extra, message", [
    (["--top-p", "0"], "top_p must be in (0, 1]"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
    (["--prompts-file", "missing.txt"], "missing.txt: cannot read prompts"),
])
def test_bad_input_is_one_error_line(tokenizer, extra, message, capsys):
    argv = ["-c", MODEL, "--tokenizer", tokenizer] + extra
    if "--prompts-file" not in extra:
        argv += ["--prompt", "x"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_missing_checkpoint_is_one_error_line(tokenizer, capsys):
    assert main(["-c", "nowhere", "--tokenizer", tokenizer, "--prompt", "x"]) == 2
    assert "nowhere: no such checkpoint or model directory" in capsys.readouterr().err


def test_stop_escapes_are_read_as_newline_and_tab():
    from mfcore.cli.generate import stop_strings
    from mfcore.errors import ConfigError

    assert stop_strings(["\\n", "a\\tb", "end"]) == ["\n", "a\tb", "end"]
    with pytest.raises(ConfigError, match="non-empty"):
        stop_strings([""])
