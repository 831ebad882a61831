"""The native byte-level BPE backend: when a ``tokenizer.json`` is within what it reproduces exactly.

:func:`native_support` reads the spec and says whether the C++ engine (``mfcore._core.BpeEncoder``)
gives the very ids of ``tokenizers`` for it, or why not. Supported: a BPE model without dropout, unk
token, subword prefix/suffix or byte fallback; no normalizer (or an empty Sequence); a ByteLevel
pre-tokenizer without prefix space (with or without its GPT-2 regex), or a Sequence of
``Split(Isolated)`` steps ending in ``ByteLevel(use_regex=false)``. Per document, the engine
leaves to ``tokenizers`` what it cannot vouch for (code points unassigned in its Unicode table,
invalid text, added tokens with lstrip / rstrip / single_word); :class:`NativeBpe`
does that hand-over. Plain added tokens are split out natively, in tokenizers' two passes.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from mfcore.data.preprocess.cutrule import GPT2_PATTERN

BACKENDS = ("auto", "native", "hf")
_FLAT_BPE_OPTIONS = ("dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix")
_REGEX_META = set("\\^$.|?*+()[]{}-")


class Unsupported(Exception):
    """The spec is outside what the native engine reproduces; the message says what."""


def native_support(spec: dict) -> Tuple[Optional[List[str]], str]:
    """``(split regexes, "ok")`` when the native engine can encode with ``spec``, else ``(None, why)``."""
    try:
        _check_model(spec.get("model") or {})
        _check_normalizer(spec.get("normalizer"))
        patterns = _split_patterns(spec.get("pre_tokenizer"))
        _check_vocab(spec["model"])
        _check_regexes(patterns)
        return patterns, "ok"
    except Unsupported as e:
        return None, str(e)


def _check_vocab(model: dict) -> None:
    """Every byte has its ByteLevel token and every merge's parts and result are tokens."""
    vocab = model["vocab"]
    missing = [b for b, ch in enumerate(byte_level_alphabet()) if ch not in vocab]
    if missing:
        raise Unsupported(f"the vocabulary lacks the ByteLevel tokens of {len(missing)} bytes (e.g. {missing[0]})")
    for left, right in _merge_pairs(model["merges"]):
        if left not in vocab or right not in vocab or left + right not in vocab:
            raise Unsupported(f"merge {left!r} {right!r} names a token outside the vocabulary")


def byte_level_alphabet() -> List[str]:
    """GPT-2's bytes_to_unicode: the character standing for each byte value."""
    printable = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or b >= 0xAE]
    out, extra = [], 0
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def _check_regexes(patterns: Sequence[str]) -> None:
    from mfcore import _core

    for pattern in patterns:
        try:
            _core.bpe_check_regex(pattern)
        except ValueError as e:
            raise Unsupported(str(e)) from None


def _check_model(model: dict) -> None:
    if model.get("type", "BPE") != "BPE":
        raise Unsupported(f"model {model.get('type')} (only BPE)")
    for option in _FLAT_BPE_OPTIONS:
        if model.get(option):
            raise Unsupported(f"BPE option {option}={model[option]!r}")
    if model.get("byte_fallback"):
        raise Unsupported("BPE byte_fallback")
    if not isinstance(model.get("vocab"), dict) or not isinstance(model.get("merges"), list):
        raise Unsupported("BPE model without a vocab dict and merges list")


def _check_normalizer(normalizer: Optional[dict]) -> None:
    if normalizer and not (normalizer.get("type") == "Sequence" and not normalizer.get("normalizers")):
        raise Unsupported(f"normalizer {normalizer.get('type')}")


def _split_patterns(pre: Optional[dict]) -> List[str]:
    if not pre:
        raise Unsupported("no pre-tokenizer")
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    if not steps or steps[-1].get("type") != "ByteLevel":
        raise Unsupported("the pre-tokenizer does not end in ByteLevel")
    patterns = [_split_regex(step) for step in steps[:-1]]
    last = steps[-1]
    if last.get("add_prefix_space"):
        raise Unsupported("ByteLevel add_prefix_space")
    if last.get("use_regex", True):
        patterns.append(GPT2_PATTERN)
    if not patterns:
        raise Unsupported("ByteLevel without any splitting (the whole text would be one word)")
    return patterns


def _split_regex(step: dict) -> str:
    if step.get("type") != "Split":
        raise Unsupported(f"pre-tokenizer {step.get('type')} before ByteLevel")
    if step.get("behavior") != "Isolated" or step.get("invert"):
        raise Unsupported(f"Split behavior {step.get('behavior')} (invert={step.get('invert')})")
    pattern = step.get("pattern") or {}
    if "Regex" in pattern:
        return pattern["Regex"]
    if pattern.get("String"):
        return "".join("\\" + c if c in _REGEX_META else c for c in pattern["String"])
    raise Unsupported("Split without a pattern")


def _merge_pairs(merges: list) -> List[Tuple[str, str]]:
    pairs = []
    for merge in merges:
        parts = merge.split(" ") if isinstance(merge, str) else merge
        if len(parts) != 2:
            raise Unsupported(f"merge {merge!r} is not a pair")
        pairs.append((parts[0], parts[1]))
    return pairs


class NativeBpe:
    """The C++ engine for one spec; :meth:`encode` hands undecided documents to ``fallback``."""

    def __init__(self, spec: dict, patterns: Sequence[str]):
        from mfcore import _core

        model = spec["model"]
        added = [(t["content"], int(t["id"]), bool(t.get("normalized", True)),
                  not (t.get("lstrip") or t.get("rstrip") or t.get("single_word")))
                 for t in spec.get("added_tokens") or [] if t.get("content")]
        try:
            self._engine = _core.BpeEncoder(list(model["vocab"].items()), _merge_pairs(model["merges"]),
                                            bool(model.get("ignore_merges", False)), list(patterns), added)
        except ValueError as e:
            raise Unsupported(str(e)) from None
        self.fallback_documents = 0

    def encode(self, texts: List[str], threads: int, fallback) -> List[np.ndarray]:
        """int32 ids per text; ``fallback(list of texts)`` -> id arrays encodes the rest."""
        arrays, status = self._engine.encode_batch(texts, threads)
        rest = [k for k, s in enumerate(status) if s != "ok"]
        if rest:
            self.fallback_documents += len(rest)
            for k, ids in zip(rest, fallback([texts[k] for k in rest])):
                arrays[k] = ids
        return arrays
