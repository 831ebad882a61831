"""Tokenisation of documents: load a ``tokenizer.json``, find its EOD id, encode in balanced batches.

Long documents are cut into pieces only where :mod:`cutrule` proves the tokenizer cannot merge across
the cut, so the ids are exactly those of encoding the whole document; the pieces keep the batch
encoder's threads evenly loaded (one huge document would otherwise run on a single thread).

Two backends produce the ids: the native C++ byte-level BPE engine (:mod:`native_bpe`, chosen by
``auto`` whenever the tokenizer is within what it reproduces exactly, several times faster) and
Hugging Face ``tokenizers`` (everything else, and the pieces the native engine hands back).
"""
from __future__ import annotations

import json
from typing import Iterable, Iterator, List, Optional, Sequence

import numpy as np

from mfcore.data.preprocess.cutrule import CutRule, derive_cut_rule
from mfcore.data.preprocess.errors import TokenizerError
from mfcore.data.preprocess.native_bpe import BACKENDS, NativeBpe, Unsupported, native_support

# EOD candidates, most specific first: GPT-2/BPE style, then Llama/DeepSeek/Qwen style end tokens.
EOD_NAMES = ("<|endoftext|>", "<｜end▁of▁sentence｜>", "</s>", "<|end_of_text|>", "<|im_end|>", "<eos>", "[SEP]")
SEGMENT_CHARS = 4096
BATCH_CHARS = 4 << 20


def load_tokenizer_spec(path: str) -> dict:
    """The parsed ``tokenizer.json``; a missing or malformed file is a :class:`TokenizerError`."""
    try:
        with open(path, "rb") as f:
            spec = json.loads(f.read())
    except OSError as e:
        raise TokenizerError(f"{path}: cannot read tokenizer ({e.strerror})") from None
    except ValueError as e:
        raise TokenizerError(f"{path}: not a tokenizer.json (invalid JSON: {e})") from None
    if not isinstance(spec, dict) or "model" not in spec:
        raise TokenizerError(f"{path}: not a tokenizer.json (no 'model' section)")
    return spec


def load_tokenizer(path: str):
    """A ``tokenizers.Tokenizer`` with truncation and padding off (they would corrupt documents)."""
    from tokenizers import Tokenizer

    load_tokenizer_spec(path)
    try:
        tok = Tokenizer.from_file(path)
    except Exception as e:  # tokenizers raises a bare Exception on any schema problem
        raise TokenizerError(f"{path}: tokenizer does not load ({e})") from None
    tok.no_truncation()
    tok.no_padding()
    return tok


def find_eod_id(tok, path: str, eod_id: Optional[int] = None) -> int:
    """The end-of-document id: ``eod_id`` if given (checked), else a known special end token."""
    vocab = tok.get_vocab_size(with_added_tokens=True)
    if eod_id is not None:
        if not 0 <= eod_id < vocab:
            raise TokenizerError(f"{path}: --eod-id {eod_id} is outside the vocabulary (size {vocab})")
        return eod_id
    for name in EOD_NAMES:
        found = tok.token_to_id(name)
        if found is not None:
            return found
    raise TokenizerError(f"{path}: no end-of-document token found (looked for {', '.join(EOD_NAMES)}); "
                         "pass --eod-id")


class SpecVocab:
    """``token_to_id`` / ``get_vocab_size`` answered from the parsed ``tokenizer.json`` as ``tokenizers``
    answers them (added tokens first, then the model's vocab dict), without loading ``tokenizers``:
    the native backend needs only these, and loading the 128k DeepSeek tokenizer costs a CPU-second."""

    def __init__(self, spec: dict):
        vocab = (spec.get("model") or {}).get("vocab")
        self._ids = dict(vocab) if isinstance(vocab, dict) else {}
        for token in spec.get("added_tokens") or []:
            self._ids[token["content"]] = token["id"]

    def token_to_id(self, name: str) -> Optional[int]:
        return self._ids.get(name)

    def get_vocab_size(self, with_added_tokens: bool = True) -> int:
        if not with_added_tokens:
            raise ValueError("SpecVocab only answers the size with added tokens")
        return len(self._ids)


def choose_backend(spec: dict, path: str, requested: str = "auto", add_special_tokens: bool = False):
    """``(backend, split patterns or None, note)``: "native" or "hf" and why ``auto`` chose it.

    ``native`` on a tokenizer the engine does not support is a :class:`TokenizerError`.
    """
    if requested not in BACKENDS:
        raise TokenizerError(f"--tokenizer-backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    if requested == "hf":
        return "hf", None, "asked for (--tokenizer-backend hf)"
    patterns, why = native_support(spec)
    if patterns is not None and add_special_tokens:
        patterns, why = None, "--add-special-tokens needs the tokenizer's post-processor"
    if patterns is None:
        if requested == "native":
            raise TokenizerError(f"{path}: the native tokenizer backend does not support this tokenizer ({why})")
        return "hf", None, f"native backend not supported: {why}"
    return "native", patterns, "C++ byte-level BPE"


class DocumentEncoder:
    """Encodes lists of documents to id arrays, splitting long documents at provably safe cuts."""

    def __init__(self, path: str, append_eod: bool = False, eod_id: Optional[int] = None,
                 add_special_tokens: bool = False, split_long: bool = True, segment_chars: int = SEGMENT_CHARS,
                 batch_chars: int = BATCH_CHARS, backend: str = "auto", threads: int = 1):
        self.path = path
        self.add_special_tokens = add_special_tokens
        self.segment_chars = segment_chars
        self.batch_chars = batch_chars
        self.threads = max(1, threads)
        spec = load_tokenizer_spec(path)
        self.backend, patterns, self.backend_note = choose_backend(spec, path, backend, add_special_tokens)
        self.native: Optional[NativeBpe] = None
        self._tok = None  # tokenizers, loaded when first needed (always with the hf backend)
        if patterns is not None:
            try:
                self.native = NativeBpe(spec, patterns)
            except Unsupported as e:  # native_support checks the same things: not expected
                raise TokenizerError(f"{path}: native tokenizer backend failed to load ({e})") from None
            self._vocab = SpecVocab(spec)
        else:
            self._vocab = self.tok
        self.eod_id = find_eod_id(self._vocab, path, eod_id) if append_eod else None
        rule, self.cut_note = derive_cut_rule(spec)
        # With special tokens the post-processor decorates every piece, so pieces would not add up.
        self.rule: Optional[CutRule] = rule if split_long and not add_special_tokens else None
        self._cuts = self.rule.pattern() if self.rule else None

    @property
    def tok(self):
        """The ``tokenizers.Tokenizer`` (the native backend hands it the pieces it cannot vouch for)."""
        if self._tok is None:
            self._tok = load_tokenizer(self.path)
        return self._tok

    @property
    def vocab_size(self) -> int:
        return self._vocab.get_vocab_size(with_added_tokens=True)

    def segments(self, text: str) -> List[str]:
        """The pieces ``text`` is encoded in (just ``[text]`` without a rule)."""
        if self.rule is None:
            return [text]
        return self.rule.segments(text, self.segment_chars, self._cuts)

    def encode(self, texts: Sequence[str], dtype="int64") -> List[np.ndarray]:
        """One id array of ``dtype`` per text (with the EOD id appended when asked)."""
        return list(self.encode_iter(texts, dtype))

    def encode_iter(self, texts: Iterable[str], dtype="int64") -> Iterator[np.ndarray]:
        """Like :meth:`encode`, streamed: pieces go to the batch encoder ``batch_chars`` at a time.

        Bounded batches keep memory low: ``tokenizers`` Encodings cost tens of bytes per token, so
        only one batch of them lives at a time and ids are kept as compact arrays.
        """
        batch: List[str] = []
        owners: List[int] = []   # which text each piece of the batch belongs to
        parts: List[Optional[List[np.ndarray]]] = []
        size = emitted = 0
        for t, text in enumerate(texts):
            parts.append([])
            for piece in self.segments(text):
                batch.append(piece)
                owners.append(t)
                size += len(piece)
            if size >= self.batch_chars:
                self._encode_into(batch, owners, parts, dtype)
                batch, owners, size = [], [], 0
                for emitted in range(emitted, t + 1):
                    yield self._document(parts, emitted, dtype)
                emitted = t + 1
        self._encode_into(batch, owners, parts, dtype)
        for k in range(emitted, len(parts)):
            yield self._document(parts, k, dtype)

    @property
    def fallback_documents(self) -> int:
        """Pieces the native engine handed to ``tokenizers`` so far."""
        return self.native.fallback_documents if self.native else 0

    def _encode_into(self, batch: List[str], owners: List[int], parts, dtype) -> None:
        if not batch:
            return
        if self.native is not None:
            arrays = self.native.encode(batch, self.threads, self._hf_arrays)
            for owner, ids in zip(owners, arrays):
                parts[owner].append(ids.astype(dtype, copy=False))
            return
        for owner, ids in zip(owners, self._hf_arrays(batch)):
            parts[owner].append(ids.astype(dtype, copy=False))

    def _hf_arrays(self, pieces: List[str]) -> List[np.ndarray]:
        return [np.asarray(e.ids, dtype=np.int64) for e in self._encode_batch(pieces)]

    def _document(self, parts, t: int, dtype) -> np.ndarray:
        """Text ``t``'s ids (all its pieces are encoded by now); its parts are released."""
        pieces, parts[t] = parts[t], None
        if self.eod_id is not None:
            pieces.append(np.asarray([self.eod_id], dtype=dtype))
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def _encode_batch(self, pieces: List[str]):
        fast = getattr(self.tok, "encode_batch_fast", None) or self.tok.encode_batch
        try:
            return fast(pieces, add_special_tokens=self.add_special_tokens)
        except Exception as e:  # only malformed text reaches here (e.g. lone surrogates)
            raise TokenizerError(f"{self.path}: tokenizer failed on a document ({e})") from None
