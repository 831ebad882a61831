"""Readers: every input format yields the expected records, in a deterministic order."""
import gzip
import os

import pytest
import zstandard

from mfcore.data.preprocess.errors import InputError
from mfcore.data.preprocess.readers import CorpusReader, ReaderOptions, detect_format, expand_inputs

WIKI = (" \n = Valkyria = \n \n Senjō no Valkyria is a game . \n \n = = Gameplay = = \n \n"
        " It plays well . \n Second line . \n \n = Tower = \n \n A building @-@ tall . \n")


def _texts(paths, **options):
    return [(r.kind, r.line, r.data) for r in CorpusReader(paths, ReaderOptions(**options))]


def test_jsonl_plain_gz_and_zst_give_the_same_records(tmp_path):
    body = b'{"text": "a"}\n\n{"text": "b"}\n'
    (tmp_path / "x.jsonl").write_bytes(body)
    (tmp_path / "y.jsonl.gz").write_bytes(gzip.compress(body))
    (tmp_path / "z.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(body))
    want = [("json", 1, b'{"text": "a"}\n'), ("json", 3, b'{"text": "b"}\n')]
    for name in ("x.jsonl", "y.jsonl.gz", "z.jsonl.zst"):
        assert _texts([str(tmp_path / name)]) == want


def test_zst_stream_with_several_frames(tmp_path):
    c = zstandard.ZstdCompressor()
    (tmp_path / "multi.zst").write_bytes(c.compress(b'{"text": "1"}\n') + c.compress(b'{"text": "2"}\n'))
    assert [r[2] for r in _texts([str(tmp_path / "multi.zst")], input_format="jsonl")] == \
        [b'{"text": "1"}\n', b'{"text": "2"}\n']


def test_text_by_line_and_by_paragraph(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_bytes(b"one\ntwo\n\nthree\r\nfour\n\n\nfive")
    assert [r[2] for r in _texts([str(path)])] == [b"one", b"two", b"", b"three", b"four", b"", b"", b"five"]
    assert _texts([str(path)], text_documents="paragraph") == [
        ("text", 1, b"one\ntwo"), ("text", 4, b"three\r\nfour"), ("text", 8, b"five")]


def test_wikitext_articles_with_headings_dropped_or_kept(tmp_path):
    path = tmp_path / "wiki.train.tokens"
    path.write_text(WIKI, encoding="utf-8")
    dropped = _texts([str(path)])
    assert [r[2].decode() for r in dropped] == [
        "Senjō no Valkyria is a game .\nIt plays well .\nSecond line .", "A building @-@ tall ."]
    assert [r[1] for r in dropped] == [2, 11]
    kept = _texts([str(path)], wikitext_headings="keep")
    assert kept[0][2].decode().split("\n")[:3] == ["Valkyria", "Senjō no Valkyria is a game .", "Gameplay"]


def test_directories_and_globs_are_sorted_and_hidden_files_skipped(tmp_path):
    for name in ("b.jsonl", "a.jsonl", ".hidden.jsonl", "sub/c.jsonl"):
        os.makedirs(tmp_path / os.path.dirname(name), exist_ok=True)
        (tmp_path / name).write_text('{"text": "x"}\n')
    files = expand_inputs([str(tmp_path)])
    assert [os.path.relpath(f, tmp_path) for f in files] == ["a.jsonl", "b.jsonl", "sub/c.jsonl"]
    assert expand_inputs([str(tmp_path / "*.jsonl")]) == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="nope.jsonl: input file does not exist"):
        expand_inputs([str(tmp_path / "nope.jsonl")])
    with pytest.raises(InputError, match="no input files"):
        expand_inputs([str(tmp_path / "*.none")])


def test_corrupt_compressed_input_names_the_file(tmp_path):
    (tmp_path / "bad.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    (tmp_path / "bad.jsonl.zst").write_bytes(b"\x28\xb5\x2f\xfdgarbage-garbage")
    for name in ("bad.jsonl.gz", "bad.jsonl.zst"):
        with pytest.raises(InputError, match=name):
            _texts([str(tmp_path / name)])


def test_format_detection():
    assert detect_format("a/b.jsonl.zst") == "jsonl"
    assert detect_format("x.json.gz") == "jsonl"
    assert detect_format("wiki.valid.tokens") == "wikitext"
    assert detect_format("notes.txt") == "text"
    assert detect_format("notes.txt", "jsonl") == "jsonl"


def test_bytes_read_reaches_the_total(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "a"}\n' * 100)
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(b'{"text": "b"}\n' * 100))
    reader = CorpusReader([str(tmp_path)])
    assert sum(1 for _ in reader) == 200
    assert reader.bytes_read == reader.total_bytes == sum(os.path.getsize(f) for f in reader.files)
