"""The demo corpus: deterministic JSONL of about the asked size, with a fallback when the machine
has no standard-library sources or documentation."""
import json

from mfcore.data.preprocess.demo_corpus import read_text_file, write_demo_corpus


def _texts(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def test_same_bytes_twice_and_about_the_target_size(tmp_path):
    a = write_demo_corpus(str(tmp_path / "a.jsonl"), 0.05)
    b = write_demo_corpus(str(tmp_path / "b.jsonl"), 0.05)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert a["bytes"] >= 0.05 * (1 << 20) and a["documents"] == b["documents"] == len(_texts(tmp_path / "a.jsonl"))
    assert all(len(t) >= 200 for t in _texts(tmp_path / "a.jsonl"))


def test_fallback_prose_when_nothing_is_installed(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    info = write_demo_corpus(str(tmp_path / "c.jsonl"), 0.02, doc_roots=[str(empty)], stdlib_root=str(empty))
    texts = _texts(tmp_path / "c.jsonl")
    assert info["documents"] == len(texts) > 3
    assert all(t[0].isupper() and t[-1] in ".?!" for t in texts)


def test_text_files_reject_binary_and_decompress_gz(tmp_path):
    import gzip

    (tmp_path / "bin").write_bytes(b"abc\0def")
    (tmp_path / "t.gz").write_bytes(gzip.compress("héllo".encode()))
    (tmp_path / "latin").write_bytes(b"caf\xe9")
    assert read_text_file(str(tmp_path / "bin"), 100) is None
    assert read_text_file(str(tmp_path / "t.gz"), 100) == "héllo"
    assert read_text_file(str(tmp_path / "latin"), 100) is None
