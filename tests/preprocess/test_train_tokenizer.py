"""mf-preprocess train-tokenizer: a byte-level BPE of the asked size whose EOD token works."""
import json

from tokenizers import Tokenizer

from mfcore.cli.preprocess import main
from mfcore.data import IndexedDataset
from mfcore.data.preprocess.cutrule import derive_cut_rule


def test_train_then_preprocess(tmp_path, capsys, docs, write_jsonl):
    corpus = write_jsonl(tmp_path / "c.jsonl", docs)
    out = tmp_path / "tokenizer.json"
    assert main(["train-tokenizer", "--input", corpus, "--vocab-size", "320", "--output", str(out)]) == 0
    assert "EOD <|endoftext|> = 0" in capsys.readouterr().out
    tok = Tokenizer.from_file(str(out))
    assert tok.get_vocab_size() == 320
    assert tok.decode(tok.encode(docs[3]).ids) == docs[3]  # byte-level: every text round-trips
    assert derive_cut_rule(json.loads(out.read_text()))[0] is not None
    assert main(["--input", corpus, "--output-prefix", str(tmp_path / "o"), "--tokenizer", str(out),
                 "--append-eod", "--no-progress"]) == 0
    ds = IndexedDataset(str(tmp_path / "o_text_document"))
    assert ds[0].tolist() == tok.encode(docs[0]).ids + [0]


def test_vocab_too_small_is_a_clear_error(tmp_path, capsys, docs, write_jsonl):
    corpus = write_jsonl(tmp_path / "c.jsonl", docs)
    assert main(["train-tokenizer", "--input", corpus, "--vocab-size", "100", "--output", str(tmp_path / "t.json")]) == 2
    assert capsys.readouterr().err.startswith("error: --vocab-size must be at least 257")
