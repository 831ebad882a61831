"""The native byte-level BPE backend gives exactly tokenizers' ids, or hands the text back.

Checked against tokenizers itself: the regex matcher against Oniguruma (via tokenizers' Split
pre-tokenizer) on every assigned code point and on tricky text, and whole encodings on random
mixed-script text for the real DeepSeek V3 tokenizer, a small GPT-2 style BPE and Llama 3 / Qwen 2
style pre-tokenizers.
"""
import copy
import json
import sys
import unicodedata

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Regex, Tokenizer, pre_tokenizers

from mfcore import _core
from mfcore.data.preprocess.encode import (EOD_NAMES, DocumentEncoder, SpecVocab, choose_backend,
                                           load_tokenizer_spec)
from mfcore.data.preprocess.errors import TokenizerError
from mfcore.data.preprocess.native_bpe import NativeBpe, native_support

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
          r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
TRICKY = ("It's  IT'S we'LL x'ſ 'K \r\n\r\n  \t\u00a0\u3000x  \n\n\n end   ", "１２３４٣٤٥ 12345678 ½⅓",
          "中文字符かなカナ한국어 ελληνικά e\u0301\u0301 🦊🏳️‍🌈 ", "!!?? ...\n-->[[x]] $%^&* a.b,c;d",
          "\u2028\u2029\u0085\u180e\u200b\u202f\u205f   ")


def onig_split(pattern: str, text: str):
    pre = pre_tokenizers.Split(Regex(pattern), "isolated")
    return [p.encode("utf-8") for p, _ in pre.pre_tokenize_str(text)]


def assigned_text(limit: int = 0x110000) -> str:
    """Every code point Python's Unicode calls assigned (no surrogates, a sample of private use)."""
    chars = []
    for cp in range(limit):
        cat = unicodedata.category(chr(cp))
        if cat in ("Cn", "Cs") or (cat == "Co" and cp % 97):
            continue
        chars.append(chr(cp))
    return "".join(chars)


@pytest.mark.parametrize("pattern", [r"\p{L}+", r"\p{M}", r"\p{N}", r"\p{P}+", r"\p{S}", r"\s+", r"\d",
                                     r"[^\s\p{L}\p{N}]", r"(?i:'s|'t|'re|'ve|'m|'ll|'d)", "."])
def test_classes_agree_with_oniguruma_on_every_assigned_code_point(pattern):
    text = assigned_text()
    if "(?i" in pattern:  # each character once after an apostrophe, in pairs with s/t/... too
        text = "".join("'" + c + ("l" if c.lower() == "l" else "") for c in text[:70000])
    assert _core.bpe_regex_split(pattern, text) == onig_split(pattern, text)


@pytest.mark.parametrize("pattern", [LLAMA3, QWEN2, r"\p{N}{1,3}", r"[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"])
@pytest.mark.parametrize("text", TRICKY)
def test_split_patterns_agree_with_oniguruma(pattern, text):
    assert _core.bpe_regex_split(pattern, text) == onig_split(pattern, text)


def test_deepseek_pre_tokenizer_pieces_agree(deepseek_path):
    spec = load_tokenizer_spec(deepseek_path)
    patterns, why = native_support(spec)
    assert why == "ok" and len(patterns) == 3
    for text in TRICKY:
        assert _core.bpe_regex_split(patterns[2], text) == onig_split(patterns[2], text)


# ---- whole encodings ----

ALPHABET = st.sampled_from(
    list("abcXYZ   \r\n\t'.,!?-_()[]{}<>|\\/\"#@$%^&*+=~`:;") +
    ["\u00a0", "\u3000", "\u2028", "\u0085", "٣", "１", "²", "½", "中", "文", "字", "龥", "か", "ナ", "ー", "한",
     "\u0301", "\u0308", "e\u0301", "🦊", "👍🏽", "\u200d", "ſ", "K", "İ", "ß", "Ω", "→", "€", "\ufeff",
     "<｜end▁of▁sentence｜>", "<|endoftext|>", "<think>", "\U000e0001", "\u0378", "<ab", "b>", "<lst>"])
TEXTS = st.lists(ALPHABET, max_size=60).map("".join)


def _native_ids(native: NativeBpe, tok: Tokenizer, texts):
    fallback = lambda pieces: [np.asarray(tok.encode(t, add_special_tokens=False).ids) for t in pieces]  # noqa: E731
    return [list(ids) for ids in native.encode(list(texts), 2, fallback)]


def _engine(spec: dict):
    patterns, why = native_support(spec)
    assert why == "ok", why
    return NativeBpe(spec, patterns)


@pytest.fixture(scope="module")
def deepseek(deepseek_path):
    return _engine(load_tokenizer_spec(deepseek_path)), Tokenizer.from_file(deepseek_path)


def _variant(small_bpe_path, tmp_path_factory, pattern=None, ignore_merges=False):
    """The small trained BPE with its ByteLevel regex replaced by ``pattern`` (Llama 3 / Qwen 2 shape)."""
    spec = copy.deepcopy(load_tokenizer_spec(small_bpe_path))
    if pattern is not None:
        spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    spec["model"]["ignore_merges"] = ignore_merges
    spec["added_tokens"] += _tricky_added_tokens(spec)
    path = tmp_path_factory.mktemp("variant") / "tokenizer.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return _engine(spec), Tokenizer.from_file(str(path))


def _tricky_added_tokens(spec: dict) -> list:
    """Overlapping tokens in tokenizers' two passes ("b>" is split out before "<ab" is looked for) and
    an lstrip token (handed to tokenizers)."""
    first = max(max(spec["model"]["vocab"].values()), max(t["id"] for t in spec["added_tokens"])) + 1
    flags = dict(single_word=False, lstrip=False, rstrip=False, special=False)
    return [dict(flags, id=first, content="b>", normalized=False),
            dict(flags, id=first + 1, content="<ab", normalized=True),
            dict(flags, id=first + 2, content="<lst>", normalized=False, lstrip=True)]


@pytest.fixture(scope="module", params=["gpt2", "llama3", "qwen2-ignore-merges"])
def small(request, small_bpe_path, tmp_path_factory):
    pattern = {"gpt2": None, "llama3": LLAMA3, "qwen2-ignore-merges": QWEN2}[request.param]
    return _variant(small_bpe_path, tmp_path_factory, pattern, ignore_merges=request.param.endswith("merges"))


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(texts=st.lists(TEXTS, min_size=1, max_size=6))
def test_deepseek_ids_equal_tokenizers(deepseek, texts):
    native, tok = deepseek
    assert _native_ids(native, tok, texts) == [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]


@SETTINGS
@given(texts=st.lists(TEXTS, min_size=1, max_size=6))
def test_small_bpe_ids_equal_tokenizers(small, texts):
    native, tok = small
    assert _native_ids(native, tok, texts) == [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]


def test_added_tokens_split_natively_unassigned_code_points_handed_back(deepseek):
    native, tok = deepseek
    texts = ["a<｜end▁of▁sentence｜>b", "<think>x</think><｜end▁of▁sentence｜><｜end▁of▁sentence｜>", "x\u0378y"]
    before = native.fallback_documents
    assert _native_ids(native, tok, texts) == [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    assert native.fallback_documents - before == 1


def test_added_tokens_two_passes_and_lstrip(small_bpe_path, tmp_path_factory):
    native, tok = _variant(small_bpe_path, tmp_path_factory)
    texts = ["x<ab>y", "<ab <ab", "a  <lst> b", "b><ab"]
    before = native.fallback_documents
    ids = _native_ids(native, tok, texts)
    assert ids == [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    assert tok.token_to_id("b>") in ids[0] and tok.token_to_id("<ab") not in ids[0]  # pass 1 took "b>"
    assert native.fallback_documents - before == 1  # only the lstrip token


# ---- which backend runs ----

def _with(spec: dict, **changes) -> dict:
    spec = copy.deepcopy(spec)
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        node = spec
        for key in path:
            node = node[key]
        node[last] = value
    return spec


@pytest.mark.parametrize("change, reason", [
    ({"normalizer": {"type": "NFC"}}, "normalizer NFC"),
    ({"model__dropout": 0.1}, "dropout"),
    ({"model__byte_fallback": True}, "byte_fallback"),
    ({"pre_tokenizer": {"type": "Metaspace"}}, "does not end in ByteLevel"),
    ({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True}}, "add_prefix_space"),
    ({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"\w+"}, "behavior": "Removed", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}}, "behavior Removed"),
    ({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"\w+|\s+"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}}, r"escape \w"),
])
def test_unsupported_tokenizers_say_why(small_bpe_path, change, reason):
    patterns, why = native_support(_with(load_tokenizer_spec(small_bpe_path), **change))
    assert patterns is None and reason in why


def test_backend_choice(small_bpe_path, deepseek_path):
    spec = load_tokenizer_spec(small_bpe_path)
    assert choose_backend(spec, small_bpe_path)[0] == "native"
    assert choose_backend(spec, small_bpe_path, "hf")[0] == "hf"
    backend, _, note = choose_backend(spec, small_bpe_path, add_special_tokens=True)
    assert backend == "hf" and "post-processor" in note
    nfc = _with(spec, normalizer={"type": "NFC"})
    assert choose_backend(nfc, small_bpe_path)[:2] == ("hf", None)
    with pytest.raises(TokenizerError, match="native tokenizer backend does not support.*normalizer NFC"):
        choose_backend(nfc, small_bpe_path, "native")
    with pytest.raises(TokenizerError, match="--tokenizer-backend must be one of"):
        choose_backend(spec, small_bpe_path, "fast")


@pytest.mark.parametrize("which", ["deepseek", "small"])
def test_spec_vocab_answers_like_tokenizers(which, deepseek_path, small_bpe_path):
    path = deepseek_path if which == "deepseek" else small_bpe_path
    tok, vocab = Tokenizer.from_file(path), SpecVocab(load_tokenizer_spec(path))
    assert vocab.get_vocab_size() == tok.get_vocab_size(with_added_tokens=True)
    for name in EOD_NAMES + ("<｜▁pad▁｜>", "Ġthe", "a", "not-a-token-at-all"):
        assert vocab.token_to_id(name) == tok.token_to_id(name)


def test_document_encoder_backends_agree(deepseek_path, docs):
    native = DocumentEncoder(deepseek_path, append_eod=True, segment_chars=64, backend="native", threads=2)
    hf = DocumentEncoder(deepseek_path, append_eod=True, segment_chars=64, backend="hf")
    assert native.backend == "native" and hf.backend == "hf"
    texts = docs + ["with <｜end▁of▁sentence｜> inside", "unassigned \u0378 here"]
    for a, b in zip(native.encode(texts, "int32"), hf.encode(texts, "int32")):
        assert a.dtype == np.int32 and np.array_equal(a, b)
    assert native.fallback_documents == 1


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
