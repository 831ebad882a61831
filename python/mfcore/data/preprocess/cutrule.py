"""Where a long document may be cut so that encoding the pieces equals encoding the whole.

A cut is always placed *before* a newline, after a printable ASCII character ``c``. The rule is the
set of ``c`` for which this is provably safe for one tokenizer, derived from its ``tokenizer.json``:

1. Added tokens are matched first; none may contain a newline (so no occurrence spans the cut), and
   an ``rstrip`` token may not end in ``c`` (it would swallow the newline).
2. The normalizer must act character by character around a newline (NFC/NFD/NFKC/NFKD, Lowercase,
   plain-string Replace without newlines); then the text around the cut reads ``c' + "\\n"``.
3. Every pre-tokenizer step must split the two halves exactly as it splits the whole, and at least
   one step must put a boundary at the cut. For a regex ``Split`` (Isolated/Removed) that holds when
   no match can contain ``c' "\\n"`` (``has_bigram``), the regex cannot match empty, every look-ahead
   tests one class that excludes the newline (so it answers alike at the end of the first half and
   before the newline of the whole), and the regex matches ``"\\n"`` by itself (so a match starts at
   the cut). With no look-behind or anchor, matching then restarts at the cut exactly as it starts
   the second half. ``ByteLevel`` without prefix space (its optional GPT-2 regex analysed the same
   way), ``Digits``, ``Whitespace`` and ``WhitespaceSplit`` are understood too; only ``ByteLevel``
   rewrites characters, so nothing may follow it.
4. The model encodes each pre-token on its own, so equal pre-tokens give equal ids (BPE dropout,
   which is random, disables cutting).

Anything the derivation does not recognise yields no rule: long documents are then encoded whole.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import FrozenSet, Iterable, List, Optional, Tuple

from mfcore.data.preprocess import regex_analysis as ra

CANDIDATES = frozenset(chr(c) for c in range(33, 127))
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_CHARWISE_NORMALIZERS = ("NFC", "NFD", "NFKC", "NFKD")


@dataclass(frozen=True)
class CutRule:
    """Cuts are safe before a newline preceded by one of ``allowed``."""

    allowed: FrozenSet[str]

    def pattern(self) -> "re.Pattern[str]":
        return re.compile("(?<=[" + re.escape("".join(sorted(self.allowed))) + "])\n")

    def segments(self, text: str, target: int, cuts: "re.Pattern[str]") -> List[str]:
        """``text`` in pieces of about ``target`` characters or more, cut only at safe places."""
        if len(text) < 2 * target:
            return [text]
        pieces, start = [], 0
        while len(text) - start >= 2 * target:
            found = cuts.search(text, start + target)
            if found is None:
                break
            pieces.append(text[start:found.start()])
            start = found.start()
        pieces.append(text[start:])
        return pieces


def derive_cut_rule(spec: dict) -> Tuple[Optional[CutRule], str]:
    """The safe-cut rule of a parsed ``tokenizer.json``, or ``(None, why not)``."""
    model = spec.get("model") or {}
    if model.get("dropout"):
        return None, "BPE dropout makes encoding random"
    try:
        images = _normalizer_images(spec.get("normalizer"), {c: c for c in CANDIDATES})
        allowed = _added_tokens_allow(spec.get("added_tokens") or [], images)
        allowed, boundary = _pre_tokenizer_allow(spec.get("pre_tokenizer"), allowed, images)
    except ra.Unprovable as e:
        return None, str(e)
    if not boundary:
        return None, "no pre-tokenizer step is proven to split before a newline"
    if not allowed:
        return None, "no character before a newline is proven safe"
    return CutRule(frozenset(allowed)), "ok"


def _normalizer_images(normalizer: Optional[dict], images: dict) -> dict:
    """What each candidate character becomes after normalisation (it must stay one character)."""
    if not normalizer:
        return images
    kind = normalizer.get("type")
    if kind == "Sequence":
        for step in normalizer.get("normalizers", []):
            images = _normalizer_images(step, images)
        return images
    if kind in _CHARWISE_NORMALIZERS:
        return images  # printable ASCII and "\n" are unchanged and never compose with neighbours
    if kind == "Lowercase":
        return {c: i.lower() for c, i in images.items()}
    if kind == "Replace":
        pattern, content = normalizer.get("pattern", {}), normalizer.get("content", "")
        if "String" not in pattern or "\n" in pattern["String"] or "\n" in content or not pattern["String"]:
            raise ra.Unprovable("Replace normalizer with a regex or a newline")
        return {c: i for c, i in images.items() if i not in pattern["String"]}
    raise ra.Unprovable(f"normalizer {kind}")


def _added_tokens_allow(tokens: Iterable[dict], images: dict) -> set:
    allowed = set(images)
    for token in tokens:
        content = token.get("content", "")
        if "\n" in content:
            raise ra.Unprovable(f"added token {content!r} contains a newline")
        if token.get("rstrip") and content:
            allowed = {c for c in allowed if content[-1] not in (c, images[c])}
    return allowed


def _pre_tokenizer_allow(pre: Optional[dict], allowed: set, images: dict) -> Tuple[set, bool]:
    """Candidates every step handles safely, and whether some step surely splits at the cut."""
    steps = _flatten(pre)
    boundary = False
    for k, step in enumerate(steps):
        kind = step.get("type")
        if kind == "ByteLevel":
            if step.get("add_prefix_space"):
                raise ra.Unprovable("ByteLevel adds a prefix space to every piece")
            if k != len(steps) - 1:
                raise ra.Unprovable("a step after ByteLevel sees byte-mapped characters")
            if step.get("use_regex", True):
                allowed, split = _regex_allow(ra.parse(GPT2_PATTERN), allowed, images)
                boundary = boundary or split
        elif kind == "Split":
            allowed, split = _split_allow(step, allowed, images)
            boundary = boundary or split
        elif kind in ("Whitespace", "WhitespaceSplit"):
            boundary = True  # whitespace (the newline) is dropped and never joins a piece
        elif kind != "Digits":  # Digits groups digit runs only: the newline is never part of one
            raise ra.Unprovable(f"pre-tokenizer {kind}")
    return allowed, boundary


def _flatten(pre: Optional[dict]) -> List[dict]:
    if not pre:
        raise ra.Unprovable("no pre-tokenizer: the model sees the whole text as one piece")
    if pre.get("type") == "Sequence":
        return [s for p in pre.get("pretokenizers", []) for s in _flatten(p)]
    return [pre]


def _split_allow(step: dict, allowed: set, images: dict) -> Tuple[set, bool]:
    if step.get("invert") or step.get("behavior") not in ("Isolated", "Removed"):
        raise ra.Unprovable(f"Split with behavior {step.get('behavior')} / invert")
    pattern = step.get("pattern", {})
    node = ra.parse(pattern["Regex"]) if "Regex" in pattern else ra.literal_pattern(pattern.get("String", ""))
    return _regex_allow(node, allowed, images)


def _regex_allow(node: ra.Node, allowed: set, images: dict) -> Tuple[set, bool]:
    if ra.nullable(node):
        raise ra.Unprovable("a split pattern that can match the empty string")
    if any(look.may("\n") for look in ra.lookaheads(node)):
        raise ra.Unprovable("a look-ahead that may test the newline")
    kept = {c for c in allowed if not ra.has_bigram(node, images[c], "\n")}
    return kept, ra.accepts_single(node, "\n")
