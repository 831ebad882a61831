"""What a worker process does with one chunk: decode, parse, tokenise, write partial datasets.

Every chunk becomes one partial dataset per JSON key (``chunk_000012_text.bin/.idx``), written
atomically by the C++ builder, so a finished chunk is on disk whole or not at all.
"""
from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from mfcore.data.preprocess.encode import DocumentEncoder
from mfcore.data.preprocess.errors import InputError
from mfcore.data.preprocess.readers import Record


@dataclass(frozen=True)
class EncodeOptions:
    """Everything a worker needs to know, identical in every worker."""

    tokenizer: str
    keys: Tuple[str, ...] = ("text",)
    append_eod: bool = False
    eod_id: Optional[int] = None
    add_special_tokens: bool = False
    split_long: bool = True
    dtype: str = "int32"
    invalid_utf8: str = "error"     # "error" or "replace"
    skip_bad_lines: bool = False
    threads: int = 1                # tokenizer threads inside this worker
    backend: str = "auto"           # "native" or "hf" as chosen by the pipeline (or "auto")


@dataclass
class ChunkStats:
    """Counts of one chunk (or, summed, of the whole run)."""

    documents: Dict[str, int] = field(default_factory=dict)
    tokens: Dict[str, int] = field(default_factory=dict)
    empty: Dict[str, int] = field(default_factory=dict)
    records: int = 0
    bad_lines: int = 0
    replaced_utf8: int = 0
    cpu_seconds: float = 0.0   # worker CPU time, all its threads: throughput independent of machine load
    native_fallbacks: int = 0  # pieces the native tokenizer backend handed to `tokenizers`

    def add(self, other: "ChunkStats") -> None:
        for mine, theirs in ((self.documents, other.documents), (self.tokens, other.tokens), (self.empty, other.empty)):
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n
        self.records += other.records
        self.bad_lines += other.bad_lines
        self.replaced_utf8 += other.replaced_utf8
        self.cpu_seconds += other.cpu_seconds
        self.native_fallbacks += other.native_fallbacks


_ENCODER: Optional[DocumentEncoder] = None
_OPTIONS: Optional[EncodeOptions] = None


def init_worker(options: EncodeOptions) -> None:
    """Pool initializer: one tokenizer per process, with the thread count chosen by the pipeline."""
    global _ENCODER, _OPTIONS
    # Ctrl-C reaches the whole process group; only the main process reacts (it stops the pool), so
    # the user sees one "interrupted" line rather than a traceback per worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["RAYON_NUM_THREADS"] = str(options.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if options.threads > 1 else "false"
    _OPTIONS = options
    _ENCODER = DocumentEncoder(options.tokenizer, options.append_eod, options.eod_id,
                               options.add_special_tokens, options.split_long, backend=options.backend,
                               threads=options.threads)


def decode_record(record: Record, options: EncodeOptions, stats: ChunkStats) -> Optional[List[str]]:
    """The record's text for each key, or ``None`` for a skipped bad line."""
    try:
        text = record.data.decode("utf-8")
    except UnicodeDecodeError as e:
        if options.invalid_utf8 != "replace":
            raise InputError(f"{record.source}:{record.line}: invalid UTF-8 at byte {e.start} "
                             "(use --invalid-utf8 replace to substitute U+FFFD)") from None
        text = record.data.decode("utf-8", errors="replace")
        stats.replaced_utf8 += 1
    if record.kind == "text":
        return [text] * len(options.keys)
    try:
        obj = json.loads(text)
    except ValueError as e:
        if options.skip_bad_lines:
            stats.bad_lines += 1
            return None
        raise InputError(f"{record.source}:{record.line}: malformed JSON ({e}); "
                         "use --skip-bad-lines to skip such lines") from None
    return [_field(obj, key, record, stats, options) for key in options.keys]


def _field(obj, key: str, record: Record, stats: ChunkStats, options: EncodeOptions) -> str:
    if not isinstance(obj, dict) or key not in obj:
        found = ", ".join(map(repr, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise InputError(f"{record.source}:{record.line}: key {key!r} missing (found: {found or 'nothing'})")
    value = obj[key]
    if not isinstance(value, str):
        raise InputError(f"{record.source}:{record.line}: key {key!r} holds {type(value).__name__}, not text")
    if b"\\ud" not in record.data and b"\\uD" not in record.data:
        return value  # only a "\\udXXX" escape can smuggle a lone surrogate into the text
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a JSON "\ud800" escape: a lone surrogate, not valid text
        if options.invalid_utf8 != "replace":
            raise InputError(f"{record.source}:{record.line}: key {key!r} holds a lone surrogate escape "
                             "(invalid UTF-16; use --invalid-utf8 replace)") from None
        stats.replaced_utf8 += 1
        value = value.encode("utf-8", errors="replace").decode("utf-8")
    return value


def process_chunk(index: int, records: Sequence[Record], work_dir: str) -> Tuple[int, ChunkStats]:
    """Tokenises one chunk into ``work_dir/chunk_{index}_{key}`` partial datasets."""
    from mfcore.data import IndexedDatasetBuilder

    assert _ENCODER is not None and _OPTIONS is not None, "init_worker() was not called"
    cpu_start = time.process_time()
    fallbacks_before = _ENCODER.fallback_documents
    options, stats = _OPTIONS, ChunkStats(records=len(records))
    texts: List[List[str]] = [[] for _ in options.keys]
    for record in records:
        fields = decode_record(record, options, stats)
        if fields is None:
            continue
        for k, text in enumerate(fields):
            if text and not text.isspace():
                texts[k].append(text)
            else:
                stats.empty[options.keys[k]] = stats.empty.get(options.keys[k], 0) + 1
    for key, docs in zip(options.keys, texts):
        tokens = 0
        with IndexedDatasetBuilder(partial_prefix(work_dir, index, key), options.dtype) as builder:
            for ids in _ENCODER.encode_iter(docs, options.dtype):
                builder.add_document(ids)
                tokens += len(ids)
        stats.documents[key] = len(docs)
        stats.tokens[key] = tokens
    stats.cpu_seconds = time.process_time() - cpu_start
    stats.native_fallbacks = _ENCODER.fallback_documents - fallbacks_before
    return index, stats


def partial_prefix(work_dir: str, index: int, key: str) -> str:
    return os.path.join(work_dir, f"chunk_{index:06d}_{key}")
