"""A small, conservative analysis of the pre-tokenizer regexes found in ``tokenizer.json`` files.

It answers the questions the safe-cut rule (``cutrule.py``) needs, for a regex R run the way
``tokenizers`` runs it (leftmost-first, backtracking, Oniguruma syntax):

* can a match of R contain the character ``a`` immediately followed by ``b``?  (``has_bigram``)
* does R match the one-character string ``ch`` on a path without look-arounds?  (``accepts_single``)
* what do its look-aheads look at?  (``lookaheads``; only single-class look-aheads are understood)

Only a subset of the syntax is understood: literals, escapes, classes with ``\\p{..}`` properties,
groups ``(..)``, ``(?:..)``, ``(?i:..)``, ``(?=..)``, ``(?!..)``, alternation and greedy or lazy
quantifiers. Anything else (anchors, word boundaries, look-behinds, back-references, atomic groups,
possessive quantifiers, inline flags) raises :class:`Unprovable`, and the caller then does not cut.
Character sets are predicates, answered exactly for the characters the cut rule asks about.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Set, Tuple

Pred = Callable[[str], bool]


class Unprovable(Exception):
    """The regex uses syntax the analysis does not model; no claim can be made about it."""


_WHITESPACE = set("\t\n\v\f\r \x85\u1680\u2028\u2029\u202f\u205f\u3000") | {chr(c) for c in range(0x2000, 0x200B)}


def _category(prefix: str) -> Pred:
    return lambda c: unicodedata.category(c).startswith(prefix)


def _is_space(c: str) -> bool:
    return c in _WHITESPACE or unicodedata.category(c) in ("Zs", "Zl", "Zp")


def _is_word(c: str) -> bool:
    return unicodedata.category(c)[0] in "LMN" or unicodedata.category(c) == "Pc"


_ESCAPE_SETS = {
    "s": _is_space, "S": lambda c: not _is_space(c),
    "d": _category("Nd"), "D": lambda c: not _category("Nd")(c),
    "w": _is_word, "W": lambda c: not _is_word(c),
}
_ESCAPE_CHARS = {"n": "\n", "r": "\r", "t": "\t", "f": "\f", "v": "\v", "a": "\a", "e": "\x1b"}
_PROPERTY_ALIASES = {"Letter": "L", "Mark": "M", "Number": "N", "Punctuation": "P", "Symbol": "S",
                     "Separator": "Z", "Other": "C"}


@dataclass
class CharSet:
    """A set of characters: ``may`` over-approximates membership, ``sure`` under-approximates it."""

    may: Pred
    sure: Pred


@dataclass
class Node:
    kind: str                      # "set", "cat", "alt", "rep", "look", "empty"
    children: List["Node"] = field(default_factory=list)
    chars: Optional[CharSet] = None
    lo: int = 0
    hi: Optional[int] = None       # None = unbounded


def _exact(pred: Pred) -> CharSet:
    return CharSet(pred, pred)


def _literal(ch: str) -> CharSet:
    return _exact(lambda c: c == ch)


def _fold(cs: CharSet) -> CharSet:
    """Case-insensitive version of a set (simple case folding, enough for the characters asked)."""
    def variants(c: str) -> Tuple[str, ...]:
        return (c, c.lower(), c.upper()) if len(c.lower()) == 1 and len(c.upper()) == 1 else (c,)
    return CharSet(lambda c: any(cs.may(v) for v in variants(c)), lambda c: any(cs.sure(v) for v in variants(c)))


class _Parser:
    def __init__(self, pattern: str):
        self.p = pattern
        self.i = 0
        self.fold = False
        self.last_literal = ""

    def parse(self) -> Node:
        node = self._alternation()
        if self.i != len(self.p):
            raise Unprovable(f"unbalanced ')' at {self.i}")
        return node

    def _peek(self, n: int = 1) -> str:
        return self.p[self.i:self.i + n]

    def _alternation(self) -> Node:
        branches = [self._concatenation()]
        while self._peek() == "|":
            self.i += 1
            branches.append(self._concatenation())
        return branches[0] if len(branches) == 1 else Node("alt", branches)

    def _concatenation(self) -> Node:
        items: List[Node] = []
        while self.i < len(self.p) and self._peek() not in "|)":
            items.append(self._quantified(self._atom()))
        return Node("cat", items) if items else Node("empty")

    def _quantified(self, atom: Node) -> Node:
        while True:
            c = self._peek()
            if c in ("?", "*", "+"):
                self.i += 1
                lo, hi = {"?": (0, 1), "*": (0, None), "+": (1, None)}[c]
            elif c == "{" and self._counted() is not None:
                lo, hi = self._counted()
                self.i = self.p.index("}", self.i) + 1
            else:
                return atom
            if self._peek() == "+":
                raise Unprovable("possessive quantifier")
            if self._peek() == "?":
                self.i += 1  # lazy: changes priority, not the set of possible matches
            atom = Node("rep", [atom], lo=lo, hi=hi)

    def _counted(self) -> Optional[Tuple[int, Optional[int]]]:
        end = self.p.find("}", self.i)
        body = self.p[self.i + 1:end] if end > 0 else ""
        parts = body.split(",")
        if not body or len(parts) > 2 or not all(p.isdigit() or (p == "" and k == 1) for k, p in enumerate(parts)):
            return None
        lo = int(parts[0])
        hi = lo if len(parts) == 1 else (int(parts[1]) if parts[1] else None)
        return lo, hi

    def _atom(self) -> Node:
        c = self._peek()
        if c == "(":
            return self._group()
        if c == "[":
            return self._set_node(self._class())
        if c in "^$":
            raise Unprovable(f"anchor {c!r}")
        if c == ".":
            self.i += 1
            return self._set_node(CharSet(lambda ch: True, lambda ch: ch != "\n"))
        if c == "\\":
            return self._set_node(self._escape())
        self.i += 1
        return self._set_node(_literal(c))

    def _set_node(self, cs: CharSet) -> Node:
        return Node("set", chars=_fold(cs) if self.fold else cs)

    def _group(self) -> Node:
        self.i += 1
        saved_fold, look = self.fold, False
        if self._peek() == "?":
            head = self._peek(3)
            if head.startswith("?:"):
                self.i += 2
            elif head[:2] in ("?=", "?!"):
                look, self.i = True, self.i + 2
            elif head == "?i:":
                self.fold, self.i = True, self.i + 3
            elif head.startswith(("?<", "?P<")) and head[:3] not in ("?<=", "?<!"):  # a named group
                self.i = self.p.index(">", self.i) + 1
            else:
                raise Unprovable(f"group syntax ({head}")
        body = self._alternation()
        if self._peek() != ")":
            raise Unprovable("unterminated group")
        self.i += 1
        self.fold = saved_fold
        return Node("look", [body]) if look else body

    def _escape(self) -> CharSet:
        self.i += 1
        c = self._peek()
        self.i += 1
        if c in _ESCAPE_SETS:
            return _exact(_ESCAPE_SETS[c])
        if c in ("p", "P"):
            return self._property(negate=c == "P")
        if c in _ESCAPE_CHARS:
            self.last_literal = _ESCAPE_CHARS[c]
        elif c in ("x", "u"):
            self.last_literal = self._hex(c)
        elif c.isalnum() or not c:
            raise Unprovable(f"escape \\{c}")  # \b, \A, \z, \G, back-references, ...
        else:
            self.last_literal = c
        return _literal(self.last_literal)

    def _hex(self, kind: str) -> str:
        if self._peek() == "{":
            end = self.p.index("}", self.i)
            digits, self.i = self.p[self.i + 1:end], end + 1
        else:
            n = 2 if kind == "x" else 4
            digits, self.i = self.p[self.i:self.i + n], self.i + n
        return chr(int(digits, 16))

    def _property(self, negate: bool) -> CharSet:
        if self._peek() != "{":
            raise Unprovable("\\p without braces")
        end = self.p.index("}", self.i)
        name, self.i = self.p[self.i + 1:end], end + 1
        if name.startswith("^"):
            negate, name = not negate, name[1:]
        name = _PROPERTY_ALIASES.get(name, name)
        if not (1 <= len(name) <= 2 and name[0] in "LMNPSZC"):
            raise Unprovable(f"property \\p{{{name}}}")
        pred = _category(name)
        return _exact((lambda c: not pred(c)) if negate else pred)

    def _class(self) -> CharSet:
        self.i += 1
        negate = self._peek() == "^"
        self.i += negate
        items: List[CharSet] = []
        first = True
        while self._peek() != "]" or first:
            if self.i >= len(self.p):
                raise Unprovable("unterminated class")
            first = False
            if self._peek(2) in ("[:", "&&") or self._peek() == "[":
                raise Unprovable("nested class or intersection")
            items.append(self._class_item())
        self.i += 1
        return _union(items, negate)

    def _class_item(self) -> CharSet:
        low, start = self._class_atom()
        if self._peek() == "-" and self.p[self.i + 1:self.i + 2] not in ("]", "") and low is not None:
            self.i += 1
            high, _ = self._class_atom()
            if high is None:
                raise Unprovable("range ending in a class")
            return _exact(lambda ch, lo=low, hi=high: lo <= ch <= hi)
        return start

    def _class_atom(self) -> Tuple[Optional[str], CharSet]:
        """One member of a class: (the character, if it is a single one; its set)."""
        if self._peek() != "\\":
            c = self._peek()
            self.i += 1
            return c, _literal(c)
        letter = self.p[self.i + 1:self.i + 2]
        cs = self._escape()
        if letter in _ESCAPE_SETS or letter in ("p", "P"):
            return None, cs
        return self.last_literal, cs


def _union(items: List[CharSet], negate: bool) -> CharSet:
    if negate:  # not in the set: "may" needs the set's "sure", and vice versa
        return CharSet(lambda c: not any(s.sure(c) for s in items), lambda c: not any(s.may(c) for s in items))
    return CharSet(lambda c: any(s.may(c) for s in items), lambda c: any(s.sure(c) for s in items))


def parse(pattern: str) -> Node:
    """Parses an Oniguruma-style pattern into the analysed subset, or raises :class:`Unprovable`."""
    try:
        return _Parser(pattern).parse()
    except (ValueError, IndexError) as e:
        raise Unprovable(f"cannot parse pattern: {e}") from None


def literal_pattern(text: str) -> Node:
    """The node of a plain-string ``Split`` pattern."""
    return Node("cat", [Node("set", chars=_literal(c)) for c in text]) if text else Node("empty")


# --- questions ----------------------------------------------------------------------------------

def nullable(node: Node, looks_pass: bool = True) -> bool:
    """Can ``node`` match the empty string? Look-arounds count as passing unless ``looks_pass`` is off."""
    if node.kind == "set":
        return False
    if node.kind in ("empty", "look"):
        return node.kind == "empty" or looks_pass
    if node.kind == "cat":
        return all(nullable(c, looks_pass) for c in node.children)
    if node.kind == "alt":
        return any(nullable(c, looks_pass) for c in node.children)
    return node.lo == 0 or nullable(node.children[0], looks_pass)


def _glushkov(node: Node, follow: Set[Tuple[int, int]], sets: List[CharSet]) -> Tuple[bool, Set[int], Set[int]]:
    """(nullable, first positions, last positions) of ``node``; fills ``follow`` with position pairs.

    Look-arounds are treated as empty, which only adds possible matches (a sound over-approximation).
    """
    if node.kind == "set":
        sets.append(node.chars)
        pos = len(sets) - 1
        return False, {pos}, {pos}
    if node.kind in ("empty", "look"):
        return True, set(), set()
    if node.kind == "alt":
        parts = [_glushkov(c, follow, sets) for c in node.children]
        return any(p[0] for p in parts), set().union(*(p[1] for p in parts)), set().union(*(p[2] for p in parts))
    if node.kind == "rep":
        null, first, last = _glushkov(node.children[0], follow, sets)
        if node.hi is None or node.hi > 1:
            follow.update((a, b) for a in last for b in first)
        return null or node.lo == 0, first, last
    null, first, last = True, set(), set()
    for child in node.children:
        c_null, c_first, c_last = _glushkov(child, follow, sets)
        follow.update((a, b) for a in last for b in c_first)
        first = first | c_first if null else first
        last = c_last | last if c_null else c_last
        null = null and c_null
    return null, first, last


def has_bigram(node: Node, a: str, b: str) -> bool:
    """May some match of ``node`` contain ``a`` immediately followed by ``b``?"""
    follow: Set[Tuple[int, int]] = set()
    sets: List[CharSet] = []
    _glushkov(node, follow, sets)
    return any(sets[i].may(a) and sets[j].may(b) for i, j in follow)


def accepts_single(node: Node, ch: str) -> bool:
    """Does ``node`` surely match exactly ``ch`` along a path that crosses no look-around?"""
    if node.kind == "set":
        return node.chars.sure(ch)
    if node.kind in ("empty", "look"):
        return False
    if node.kind == "alt":
        return any(accepts_single(c, ch) for c in node.children)
    if node.kind == "rep":
        child = node.children[0]
        if node.hi == 0 or not accepts_single(child, ch):
            return False
        return node.lo <= 1 or nullable(child, looks_pass=False)
    kids = node.children
    return any(accepts_single(k, ch) and all(nullable(o, looks_pass=False) for o in kids if o is not k) for k in kids)


def lookaheads(node: Node) -> List[CharSet]:
    """The character sets tested by the look-aheads; raises :class:`Unprovable` for wider ones."""
    found: List[CharSet] = []
    if node.kind == "look":
        body = node.children[0]
        if body.kind == "cat" and len(body.children) == 1:
            body = body.children[0]
        if body.kind != "set":
            raise Unprovable("look-ahead wider than one character")
        return [body.chars]
    for child in node.children:
        found.extend(lookaheads(child))
    return found
