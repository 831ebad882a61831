"""`mf-data info|check|merge|show`: output and exit codes."""
import numpy as np
import pytest

from helpers.indexed_reference import write_dataset
from mfcore.cli.data import main
from mfcore.data import IndexedDataset


@pytest.fixture
def prefix(tmp_path):
    write_dataset(tmp_path / "d", [[np.array([5, 6, 7])], [np.array([1]), np.array([2, 3])], [np.arange(9)]], "uint16")
    return str(tmp_path / "d")


def test_info(prefix, capsys):
    assert main(["info", prefix]) == 0
    out = capsys.readouterr().out
    assert "documents  3" in out and "sequences  4" in out and "tokens     15" in out and "uint16" in out
    assert "min 1  mean 3.8  max 9" in out
    assert "[2, 4)" in out and "[8, 16)" in out


def test_info_multimodal_counts_modes(tmp_path, capsys):
    write_dataset(tmp_path / "mm", [[np.arange(2), np.arange(3)], [np.arange(1)]], "int32", modes=[0, 1, 1])
    assert main(["info", str(tmp_path / "mm"), "--multimodal"]) == 0
    assert "modes      0: 1  1: 2" in capsys.readouterr().out


def test_check_ok_and_corrupt(prefix, capsys):
    assert main(["check", prefix + ".idx"]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {prefix}: 3 documents, 4 sequences, 15 uint16 tokens")
    with open(prefix + ".bin", "r+b") as f:
        f.truncate(4)
    assert main(["check", prefix]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [f"{prefix}.bin: file size: expected at least 30 bytes (last pointer + length * itemsize), found 4"]


def test_errors_are_one_line_exit_2(prefix, tmp_path, capsys):
    assert main(["info", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'none'}.idx: file: missing (no such file)\n"
    assert main(["show", prefix, "--doc", "3"]) == 2
    assert "--doc 3 out of range (dataset has 3 documents)" in capsys.readouterr().err


def test_merge(prefix, tmp_path, capsys):
    out = str(tmp_path / "m")
    assert main(["merge", out, prefix, prefix]) == 0
    assert "6 documents, 8 sequences, 30 tokens" in capsys.readouterr().out
    assert IndexedDataset(out).get_document(4).tolist() == [1, 2, 3]


def test_show_tokens(prefix, capsys):
    assert main(["show", prefix, "--doc", "1"]) == 0
    assert capsys.readouterr().out == "1 2 3\n"


def test_show_decoded_with_tokenizer(prefix, tmp_path, capsys):
    from tokenizers import Tokenizer, models

    vocab = {f"w{i}": i for i in range(10)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.save(str(tmp_path / "tokenizer.json"))
    assert main(["show", prefix, "--doc", "0", "--tokenizer", str(tmp_path / "tokenizer.json")]) == 0
    assert capsys.readouterr().out == "w5 w6 w7\n"
    assert main(["show", prefix, "--doc", "0", "--tokenizer", str(tmp_path / "nope.json")]) == 2
    assert "nope.json: cannot load tokenizer" in capsys.readouterr().err
