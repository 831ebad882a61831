"""Bad input: one clear `error:` line naming the file (and line), exit code 2, no traceback; or, by
flag, skipped and counted in the summary."""
import json
import os

import pytest

from mfcore.cli.preprocess import main


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _base(tmp_path, tok, inp):
    return ["--input", inp, "--output-prefix", tmp_path / "out", "--tokenizer", tok, "--no-progress", "--chunk-mb", "0.001"]


def _assert_one_error(code, err, *fragments):
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


@pytest.fixture
def corpus(tmp_path):
    lines = [json.dumps({"text": f"good document {i}"}) for i in range(30)]
    lines[17] = '{"text": "broken'
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_malformed_json_names_file_and_line(tmp_path, capsys, small_bpe_path, corpus):
    code, _, err = _cli(capsys, *_base(tmp_path, small_bpe_path, corpus))
    _assert_one_error(code, err, f"{corpus}:18: malformed JSON", "--skip-bad-lines")
    assert not os.path.exists(tmp_path / "out_text_document.bin")


def test_skip_bad_lines_counts_them(tmp_path, capsys, small_bpe_path, corpus):
    code, out, _ = _cli(capsys, *_base(tmp_path, small_bpe_path, corpus), "--skip-bad-lines")
    assert code == 0
    assert "text: 29 documents" in out and "skipped bad lines: 1;" in out


def test_missing_key_and_non_text_value(tmp_path, capsys, small_bpe_path):
    path = tmp_path / "k.jsonl"
    path.write_text('{"text": "a"}\n{"body": "b"}\n')
    code, _, err = _cli(capsys, *_base(tmp_path, small_bpe_path, path))
    _assert_one_error(code, err, f"{path}:2: key 'text' missing (found: 'body')")
    path.write_text('{"text": 5}\n')
    code, _, err = _cli(capsys, *_base(tmp_path, small_bpe_path, path))
    _assert_one_error(code, err, f"{path}:1: key 'text' holds int, not text")


def test_invalid_utf8_errors_or_is_replaced_and_counted(tmp_path, capsys, small_bpe_path):
    path = tmp_path / "u.txt"
    path.write_bytes(b"fine\nbad \xff\xfe byte\nlone \\ud800 is fine in text\n")
    code, _, err = _cli(capsys, *_base(tmp_path, small_bpe_path, path))
    _assert_one_error(code, err, f"{path}:2: invalid UTF-8 at byte 4", "--invalid-utf8 replace")
    code, out, _ = _cli(capsys, *_base(tmp_path, small_bpe_path, path), "--invalid-utf8", "replace")
    assert code == 0 and "records with invalid UTF-8 replaced: 1" in out and "text: 3 documents" in out


def test_lone_surrogate_json_escape(tmp_path, capsys, small_bpe_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "ok"}\n{"text": "bad \\ud800 here"}\n')
    code, _, err = _cli(capsys, *_base(tmp_path, small_bpe_path, path))
    _assert_one_error(code, err, f"{path}:2: key 'text' holds a lone surrogate")
    code, out, _ = _cli(capsys, *_base(tmp_path, small_bpe_path, path), "--invalid-utf8", "replace")
    assert code == 0 and "replaced: 1" in out


def test_empty_documents_are_skipped_and_counted(tmp_path, capsys, small_bpe_path):
    path = tmp_path / "e.jsonl"
    path.write_text('{"text": ""}\n{"text": "x"}\n{"text": "  \\n "}\n')
    code, out, _ = _cli(capsys, *_base(tmp_path, small_bpe_path, path))
    assert code == 0 and "text: 1 documents" in out and "2 empty documents skipped" in out


def test_tokenizer_that_does_not_load(tmp_path, capsys, corpus):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    code, _, err = _cli(capsys, *_base(tmp_path, bad, corpus))
    _assert_one_error(code, err, f"{bad}: not a tokenizer.json")
    bad.write_text('{"model": {"type": "Nonsense"}}')
    code, _, err = _cli(capsys, *_base(tmp_path, bad, corpus))
    _assert_one_error(code, err, f"{bad}: tokenizer does not load")
    code, _, err = _cli(capsys, *_base(tmp_path, tmp_path / "missing.json", corpus))
    _assert_one_error(code, err, "missing.json: cannot read tokenizer")


def test_missing_eod_token_asks_for_eod_id(tmp_path, capsys, small_bpe_path, corpus):
    spec = json.load(open(small_bpe_path))
    spec["added_tokens"] = []
    spec["model"]["vocab"].pop("<|endoftext|>")
    tok = tmp_path / "noeod.json"
    tok.write_text(json.dumps(spec))
    code, _, err = _cli(capsys, *_base(tmp_path, tok, corpus), "--append-eod", "--skip-bad-lines")
    _assert_one_error(code, err, "no end-of-document token found", "--eod-id")
    code, _, _ = _cli(capsys, *_base(tmp_path, tok, corpus), "--append-eod", "--eod-id", "5", "--skip-bad-lines")
    assert code == 0


def test_output_directory_missing_or_not_writable(tmp_path, capsys, small_bpe_path, corpus, monkeypatch):
    args = ["--input", corpus, "--tokenizer", small_bpe_path, "--no-progress"]
    code, _, err = _cli(capsys, *args, "--output-prefix", tmp_path / "nodir" / "out")
    _assert_one_error(code, err, f"{tmp_path / 'nodir'}: output directory does not exist")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # tests run as root, which may write anywhere
    code, _, err = _cli(capsys, *args, "--output-prefix", tmp_path / "out")
    _assert_one_error(code, err, f"{tmp_path}: output directory is not writable")


def test_option_errors(tmp_path, capsys, small_bpe_path, corpus):
    code, _, err = _cli(capsys, *_base(tmp_path, small_bpe_path, corpus), "--pack", "stitch")
    _assert_one_error(code, err, "--pack stitch needs a positive --seq-length")
    code, _, err = _cli(capsys, *_base(tmp_path, small_bpe_path, corpus), "--output-format", "mindrecord")
    _assert_one_error(code, err, "--output-format mindrecord")
    code, _, err = _cli(capsys, *_base(tmp_path, small_bpe_path, tmp_path / "none.jsonl"))
    _assert_one_error(code, err, "none.jsonl: input file does not exist")


def test_uint16_cannot_hold_a_128k_vocabulary(tmp_path, capsys, deepseek_path, corpus):
    code, _, err = _cli(capsys, *_base(tmp_path, deepseek_path, corpus), "--dtype", "uint16")
    _assert_one_error(code, err, "--dtype uint16 cannot hold ids of a 129280-token vocabulary")
