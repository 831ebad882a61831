"""The safe-cut rule: derived from tokenizer.json, and held against `tokenizers` itself.

For every cut the rule allows, encoding the two halves must give exactly the ids of encoding the
whole text; for tokenizers whose pre-tokenisation cannot be proven, no rule is derived.
"""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers

from mfcore.data.preprocess import regex_analysis as ra
from mfcore.data.preprocess.cutrule import CutRule, derive_cut_rule
from mfcore.data.preprocess.encode import DocumentEncoder

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
PIECES = ["\n", "\n", "\n\n", " ", "  ", "\t", "\r\n", "a", "Z", "word", "The", "x1", "123", "4567", ".", ",", "!",
          "?)", "'s", "'LL", "é", "ß", "中文", "カナ", "🦊", "\u0301", "-", "#", "<|endoftext|>",
          "<｜end▁of▁sentence｜>", "\u00a0", "Ω", "ﬁ"]
texts = st.lists(st.sampled_from(PIECES), min_size=1, max_size=60).map("".join)


def _spec(tok_path):
    with open(tok_path, encoding="utf-8") as f:
        return json.load(f)


def _rule_cuts(rule: CutRule, text: str):
    return [m.start() for m in rule.pattern().finditer(text)]


def _assert_cuts_exact(tok, rule, text):
    whole = tok.encode(text, add_special_tokens=False).ids
    for p in _rule_cuts(rule, text):
        halves = tok.encode(text[:p], add_special_tokens=False).ids + tok.encode(text[p:], add_special_tokens=False).ids
        assert halves == whole, (text, p)


def _llama3_style(small_bpe_path):
    """The small BPE behind a Llama-3 style pre-tokenizer (regex Split + ByteLevel without regex)."""
    tok = Tokenizer.from_file(small_bpe_path)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(pattern=Regex(LLAMA3_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    return tok


@pytest.fixture(scope="module")
def deepseek(deepseek_path):
    return Tokenizer.from_file(deepseek_path), derive_cut_rule(_spec(deepseek_path))[0]


def test_deepseek_rule_is_letters_and_digits_before_newline(deepseek):
    _, rule = deepseek
    assert rule is not None
    assert "".join(sorted(rule.allowed)) == "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def test_punctuation_is_excluded_for_a_reason(deepseek):
    """DeepSeek's regex glues newlines to punctuation: cutting after '.' would change the ids."""
    tok, _ = deepseek
    text = "end.\nNext"
    halves = tok.encode("end.").ids + tok.encode("\nNext").ids
    assert halves != tok.encode(text).ids


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts)
def test_deepseek_cuts_equal_whole_encoding(deepseek, text):
    tok, rule = deepseek
    _assert_cuts_exact(tok, rule, text)


@pytest.fixture(scope="module")
def gpt2_style(small_bpe_path):
    rule, why = derive_cut_rule(_spec(small_bpe_path))
    assert rule is not None, why
    return Tokenizer.from_file(small_bpe_path), rule


@pytest.fixture(scope="module")
def llama3_style(small_bpe_path):
    tok = _llama3_style(small_bpe_path)
    rule, why = derive_cut_rule(json.loads(tok.to_str()))
    assert rule is not None, why
    return tok, rule


@settings(max_examples=150, deadline=None)
@given(text=texts)
def test_gpt2_style_bpe_cuts_equal_whole_encoding(gpt2_style, text):
    _assert_cuts_exact(*gpt2_style, text)


def test_llama3_style_rule_excludes_punctuation(llama3_style):
    _, rule = llama3_style
    assert "." not in rule.allowed and "a" in rule.allowed and "Z" in rule.allowed


@settings(max_examples=150, deadline=None)
@given(text=texts)
def test_llama3_style_with_normalizers_cuts_equal_whole_encoding(llama3_style, text):
    _assert_cuts_exact(*llama3_style, text)


@pytest.mark.parametrize("change, reason", [
    (lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.ByteLevel(add_prefix_space=True)), "prefix space"),
    (lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.Metaspace()), "Metaspace"),
    (lambda t: setattr(t, "normalizer", normalizers.BertNormalizer()), "BertNormalizer"),
    (lambda t: setattr(t, "normalizer", normalizers.Strip()), "Strip"),
    (lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.Split(pattern="x", behavior="merged_with_next")), "behavior"),
])
def test_unprovable_tokenizers_get_no_rule(small_bpe_path, change, reason):
    tok = Tokenizer.from_file(small_bpe_path)
    change(tok)
    rule, why = derive_cut_rule(json.loads(tok.to_str()))
    assert rule is None
    assert reason in why


def test_a_refused_tokenizer_really_would_break(small_bpe_path):
    """With a prefix space on every piece, a cut adds a space token: refusing it is necessary."""
    tok = Tokenizer.from_file(small_bpe_path)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    assert tok.encode("word").ids + tok.encode("\nword").ids != tok.encode("word\nword").ids


def test_no_pre_tokenizer_and_bpe_dropout_get_no_rule(small_bpe_path):
    spec = _spec(small_bpe_path)
    assert derive_cut_rule(dict(spec, pre_tokenizer=None))[0] is None
    assert derive_cut_rule(dict(spec, model=dict(spec["model"], dropout=0.1)))[0] is None


def test_regex_analysis_answers():
    node = ra.parse(LLAMA3_REGEX)
    assert ra.has_bigram(node, ".", "\n") and not ra.has_bigram(node, "a", "\n")
    assert ra.accepts_single(node, "\n") and not ra.nullable(node)
    assert ra.accepts_single(ra.parse("(?i:ab)|[x-z]"), "y")
    assert ra.has_bigram(ra.parse("(?i:ab)"), "A", "B")
    for bad in (r"^a", r"a\b", r"(?<=a)b", r"(a)\1", r"a++", r"(?>a)"):
        with pytest.raises(ra.Unprovable):
            ra.parse(bad)


def test_encoder_segments_long_documents_and_ids_match(deepseek_path):
    enc = DocumentEncoder(deepseek_path, append_eod=True, segment_chars=64)
    lines = [f"Line {i} of a long document with words and numbers {i * 37}" for i in range(200)]
    text = "\n".join(lines) + "\nend."
    assert len(enc.segments(text)) > 20
    assert "".join(enc.segments(text)) == text
    ids = enc.encode([text, "short"])
    assert ids[0].tolist() == enc.tok.encode(text, add_special_tokens=False).ids + [1]
    assert ids[1].tolist() == enc.tok.encode("short", add_special_tokens=False).ids + [1]


def test_streamed_batches_give_the_same_ids(small_bpe_path, docs):
    whole = DocumentEncoder(small_bpe_path, append_eod=True)
    small = DocumentEncoder(small_bpe_path, append_eod=True, segment_chars=50, batch_chars=700)
    want = [whole.tok.encode(d, add_special_tokens=False).ids + [0] for d in docs + [""]]
    assert [a.tolist() for a in small.encode_iter(iter(docs + [""]), "int32")] == want
    assert [a.tolist() for a in whole.encode(docs + [""], "int32")] == want
