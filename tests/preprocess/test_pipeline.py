"""mf-preprocess end to end: ids equal `tokenizers`' own encoding for every input format, the output
is byte-identical for any worker count, packing and MindRecord output, and bad input."""
import gzip
import json
import os

import numpy as np
import pytest
import zstandard
from tokenizers import Tokenizer

from mfcore.data import IndexedDataset
from mfcore.data.preprocess.encode import DocumentEncoder
from mfcore.data.preprocess.pipeline import PreprocessConfig, run
from mfcore.data.preprocess.readers import ReaderOptions



def _encode(tok_path, texts, eod):
    tok = Tokenizer.from_file(tok_path)
    return [tok.encode(t, add_special_tokens=False).ids + ([eod] if eod is not None else []) for t in texts]


def _docs(prefix):
    ds = IndexedDataset(prefix)
    return [ds[i].tolist() for i in range(len(ds))]


def _bytes(prefix):
    return open(prefix + ".bin", "rb").read() + open(prefix + ".idx", "rb").read()


def _run(tmp_path, inputs, tok, **kw):
    kw.setdefault("chunk_mb", 0.004)
    kw.setdefault("progress", False)
    config = PreprocessConfig(inputs=[str(p) for p in inputs], output_prefix=str(tmp_path / "out"), tokenizer=tok, **kw)
    return run(config)


def test_jsonl_ids_equal_whole_document_encoding_with_eod(tmp_path, small_bpe_path, docs, write_jsonl):
    path = write_jsonl(tmp_path / "c.jsonl", docs)
    summary = _run(tmp_path, [path], small_bpe_path, append_eod=True)
    assert _docs(str(tmp_path / "out_text_document")) == _encode(small_bpe_path, docs, 0)
    assert summary.stats.documents == {"text": len(docs)}
    assert summary.stats.tokens["text"] == sum(map(len, _encode(small_bpe_path, docs, 0)))
    assert IndexedDataset(str(tmp_path / "out_text_document")).dtype == np.uint16
    assert not os.path.exists(str(tmp_path / "out.mf-preprocess-work"))


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_compressed_jsonl(tmp_path, small_bpe_path, suffix, docs, write_jsonl):
    body = "".join(json.dumps({"text": d}) + "\n" for d in docs).encode()
    packed = gzip.compress(body) if suffix.endswith("gz") else zstandard.ZstdCompressor().compress(body)
    path = tmp_path / ("c" + suffix)
    path.write_bytes(packed)
    _run(tmp_path, [path], small_bpe_path)
    assert _docs(str(tmp_path / "out_text_document")) == _encode(small_bpe_path, docs, None)


def test_text_lines_paragraphs_and_wikitext(tmp_path, small_bpe_path, docs, write_jsonl):
    (tmp_path / "t.txt").write_text("first line\n\nsecond line\nthird\n", encoding="utf-8")
    summary = _run(tmp_path, [tmp_path / "t.txt"], small_bpe_path, append_eod=True)
    assert _docs(str(tmp_path / "out_text_document")) == _encode(small_bpe_path, ["first line", "second line", "third"], 0)
    assert summary.stats.empty == {"text": 1}
    _run(tmp_path, [tmp_path / "t.txt"], small_bpe_path, reader=ReaderOptions(text_documents="paragraph"))
    assert _docs(str(tmp_path / "out_text_document")) == _encode(small_bpe_path, ["first line", "second line\nthird"], None)
    (tmp_path / "w.tokens").write_text(" = A = \n \n Alpha text . \n = = Sub = = \n Beta . \n = B = \n Gamma \n")
    _run(tmp_path, [tmp_path / "w.tokens"], small_bpe_path)
    assert _docs(str(tmp_path / "out_text_document")) == _encode(small_bpe_path, ["Alpha text .\nBeta .", "Gamma"], None)


def test_deepseek_128k_ids_and_identical_bytes_for_1_and_4_workers(tmp_path, deepseek_path, docs, write_jsonl):
    long_doc = "\n".join(f"Line {i}: some words, 中文 and numbers {i * 7}" for i in range(3000))
    assert len(DocumentEncoder(deepseek_path).segments(long_doc)) > 10  # the split path is exercised
    docs = docs + [long_doc]
    path = write_jsonl(tmp_path / "c.jsonl", docs)
    _run(tmp_path, [path], deepseek_path, append_eod=True, workers=1, threads_per_worker=2)
    one = _bytes(str(tmp_path / "out_text_document"))
    assert _docs(str(tmp_path / "out_text_document")) == _encode(deepseek_path, docs, 1)
    assert IndexedDataset(str(tmp_path / "out_text_document")).dtype == np.int32
    _run(tmp_path, [path], deepseek_path, append_eod=True, workers=4, threads_per_worker=1)
    assert _bytes(str(tmp_path / "out_text_document")) == one


def test_several_json_keys_make_one_dataset_each(tmp_path, small_bpe_path, docs, write_jsonl):
    path = tmp_path / "k.jsonl"
    path.write_text("".join(json.dumps({"text": d, "title": f"T{i}"}) + "\n" for i, d in enumerate(docs)))
    _run(tmp_path, [path], small_bpe_path, json_keys=("text", "title"))
    assert _docs(str(tmp_path / "out_title_document")) == _encode(small_bpe_path, [f"T{i}" for i in range(len(docs))], None)
    assert len(_docs(str(tmp_path / "out_text_document"))) == len(docs)


def test_stitch_emits_full_blocks_of_the_concatenation(tmp_path, small_bpe_path, docs, write_jsonl):
    path = write_jsonl(tmp_path / "c.jsonl", docs)
    _run(tmp_path, [path], small_bpe_path, append_eod=True, seq_length=63, pack="stitch", dtype="int32")
    stream = [i for ids in _encode(small_bpe_path, docs, 0) for i in ids]
    want = [stream[s:s + 64] for s in range(0, len(stream) - 63, 64)]
    assert _docs(str(tmp_path / "out_text_document")) == want
    assert IndexedDataset(str(tmp_path / "out_text_document")).dtype == np.int32


def test_pad_pads_each_document_into_its_own_blocks(tmp_path, small_bpe_path, docs, write_jsonl):
    path = write_jsonl(tmp_path / "c.jsonl", docs)
    _run(tmp_path, [path], small_bpe_path, append_eod=True, seq_length=99, pack="pad", pad_id=7)
    want = []
    for ids in _encode(small_bpe_path, docs, 0):
        for s in range(0, len(ids), 100):
            block = ids[s:s + 100]
            want.append(block + [7] * (100 - len(block)))
    assert _docs(str(tmp_path / "out_text_document")) == want


def test_mindrecord_output_holds_the_stitched_blocks(tmp_path, small_bpe_path, docs, write_jsonl):
    from mindspore.mindrecord import FileReader

    path = write_jsonl(tmp_path / "c.jsonl", docs)
    _run(tmp_path, [path], small_bpe_path, append_eod=True, seq_length=31, pack="stitch")
    want = _docs(str(tmp_path / "out_text_document"))
    summary = _run(tmp_path, [path], small_bpe_path, append_eod=True, seq_length=31, pack="stitch",
                   output_format="mindrecord")
    assert summary.outputs == [str(tmp_path / "out_text_document.mindrecord"), str(tmp_path / "out_text_document.mindrecord.db")]
    reader = FileReader(str(tmp_path / "out_text_document.mindrecord"))
    got = [row["input_ids"] for row in reader.get_next()]
    reader.close()
    assert [g.dtype for g in got[:1]] == [np.int32]
    assert [g.tolist() for g in got] == want
    # MindSpore's dataset layer (what MindSpore Transformers' pretraining reads) sees the same rows
    import mindspore.dataset as msds
    dataset = msds.MindDataset(str(tmp_path / "out_text_document.mindrecord"), columns_list=["input_ids"],
                               shuffle=False)
    assert [row["input_ids"].tolist() for row in dataset.create_dict_iterator(output_numpy=True)] == want


def test_progress_bar_and_summary(tmp_path, capsys, small_bpe_path, docs, write_jsonl):
    path = write_jsonl(tmp_path / "c.jsonl", docs)
    summary = _run(tmp_path, [path], small_bpe_path, progress=True)
    err = capsys.readouterr().err
    assert "tokenizing" in err and "docs/s" in err and "tok/s" in err and "100%" in err
    text = str(summary)
    assert f"{len(docs)} documents" in text and "out_text_document.bin (" in text and "MiB/s" in text


def test_native_and_hf_backends_write_identical_bytes(tmp_path, deepseek_path, docs, write_jsonl):
    docs = docs + ["holds <｜end▁of▁sentence｜> text", "unassigned \u0378 code point"]
    path = write_jsonl(tmp_path / "c.jsonl", docs)
    native = _run(tmp_path, [path], deepseek_path, append_eod=True, workers=2, tokenizer_backend="native")
    assert "tokenizer backend: native (C++ byte-level BPE)" in str(native)
    assert native.stats.native_fallbacks == 1  # the unassigned code point (added tokens are native)
    assert native.backend == "native"
    out = _bytes(str(tmp_path / "out_text_document"))
    assert _docs(str(tmp_path / "out_text_document")) == _encode(deepseek_path, docs, 1)
    hf = _run(tmp_path, [path], deepseek_path, append_eod=True, workers=1, tokenizer_backend="hf")
    assert "tokenizer backend: hf (asked for" in str(hf)
    assert _bytes(str(tmp_path / "out_text_document")) == out


def test_cli_tokenizer_backend_flag(tmp_path, capsys, small_bpe_path, docs, write_jsonl):
    from mfcore.cli.preprocess import main

    path = write_jsonl(tmp_path / "c.jsonl", docs)
    spec = json.loads(open(small_bpe_path, encoding="utf-8").read())
    spec["normalizer"] = {"type": "NFC"}
    nfc = tmp_path / "nfc.json"
    nfc.write_text(json.dumps(spec), encoding="utf-8")
    args = ["--input", path, "--output-prefix", str(tmp_path / "out"), "--no-progress"]
    assert main(args + ["--tokenizer", str(nfc)]) == 0
    assert "tokenizer backend: hf (native backend not supported: normalizer NFC)" in capsys.readouterr().out
    assert main(args + ["--tokenizer", str(nfc), "--tokenizer-backend", "native"]) == 2
    assert "error: " in capsys.readouterr().err
