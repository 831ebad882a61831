"""Corpus readers: turn the user's input paths into a stream of raw document records.

The reader runs in the main process and stays cheap: it only splits the input into records (a JSONL
line, a text line or paragraph, a wikitext article) as *bytes*, so that decoding, JSON parsing and
tokenisation happen in the workers. Records come out in one deterministic order (inputs in the order
given, directories and globs sorted), which is what makes the output independent of ``--workers``.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import BinaryIO, Iterator, List, NamedTuple, Sequence

from mfcore.data.preprocess.compressed import open_binary
from mfcore.data.preprocess.errors import InputError

FORMATS = ("auto", "jsonl", "text", "wikitext")
_JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
_COMPRESSED = (".zst", ".zstd", ".gz")


@dataclass(frozen=True)
class ReaderOptions:
    """How to cut inputs into documents (the ``--input-format`` family of flags)."""

    input_format: str = "auto"       # auto | jsonl | text | wikitext
    text_documents: str = "line"     # text files: "line" (one per line) or "paragraph" (blank-line separated)
    wikitext_headings: str = "drop"  # wikitext sub-headings: "drop" or "keep"


class Record(NamedTuple):
    """One document's raw bytes, where it came from, and how the worker must interpret it.

    A named tuple rather than a dataclass: millions of them are pickled to the workers.
    """

    kind: str        # "json" (a JSON object) or "text" (the document itself)
    source: str      # the file, for error messages
    line: int        # 1-based line where the record starts
    data: bytes


def expand_inputs(paths: Sequence[str]) -> List[str]:
    """Files named by ``--input``: files as given, directories walked and globs expanded, sorted."""
    files: List[str] = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names)
            files.extend(f for f in found if not os.path.basename(f).startswith("."))
        elif os.path.isfile(path):
            files.append(path)
        elif glob.has_magic(path):
            files.extend(sorted(f for f in glob.glob(path, recursive=True) if os.path.isfile(f)))
        else:
            raise InputError(f"{path}: input file does not exist")
    if not files:
        raise InputError(f"no input files found in {', '.join(paths)}")
    return files


def detect_format(path: str, requested: str = "auto") -> str:
    """The format of one input: the requested one, or guessed from the file name."""
    if requested != "auto":
        return requested
    name = path.lower()
    for suffix in _COMPRESSED:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith(_JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(".tokens"):
        return "wikitext"
    return "text"


def _lines(stream: BinaryIO, path: str) -> Iterator[bytes]:
    """Lines of a possibly compressed stream; a corrupt archive becomes an :class:`InputError`."""
    try:
        yield from stream
    except (OSError, EOFError) as e:
        raise InputError(f"{path}: cannot decompress or read ({e})") from None
    except Exception as e:  # zstandard.ZstdError has no common base with OSError
        if type(e).__module__.startswith("zstandard"):
            raise InputError(f"{path}: cannot decompress ({e})") from None
        raise


def read_jsonl(lines: Iterator[bytes], path: str) -> Iterator[Record]:
    """One record per non-blank line; the worker parses it."""
    for number, line in enumerate(lines, 1):
        if line.strip():
            yield Record("json", path, number, line)


def read_text(lines: Iterator[bytes], path: str, documents: str) -> Iterator[Record]:
    """Plain text: one document per line, or per blank-line separated paragraph."""
    if documents == "line":
        for number, line in enumerate(lines, 1):
            yield Record("text", path, number, line.rstrip(b"\r\n"))
        return
    paragraph: List[bytes] = []
    start = 1
    for number, line in enumerate(lines, 1):
        if line.strip():
            if not paragraph:
                start = number
            paragraph.append(line)
        elif paragraph:
            yield Record("text", path, start, b"".join(paragraph).rstrip(b"\r\n"))
            paragraph = []
    if paragraph:
        yield Record("text", path, start, b"".join(paragraph).rstrip(b"\r\n"))


def _heading_level(stripped: bytes) -> int:
    """0 for a body line, 1 for `` = Title = ``, 2 for `` = = Section = = `` and so on."""
    if len(stripped) < 3 or not (stripped.startswith(b"= ") and stripped.endswith(b" =")):
        return 0
    level = 0
    while stripped.startswith(b"= "):
        level += 1
        stripped = stripped[2:]
    return level


def read_wikitext(lines: Iterator[bytes], path: str, headings: str) -> Iterator[Record]:
    """WikiText ``*.tokens``: one document per article, articles start at `` = Title = `` lines.

    Body lines are stripped of wikitext's surrounding spaces and joined with newlines; sub-headings
    are dropped, or kept as plain lines with ``headings == "keep"`` (the title too, then).
    """
    body: List[bytes] = []
    start = 1
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        level = _heading_level(stripped)
        if level == 1:
            if body:
                yield Record("text", path, start, b"\n".join(body))
            body, start = [], number
        if not stripped or (level and headings == "drop"):
            continue
        body.append(stripped.strip(b"= ").strip() if level else stripped)
    if body:
        yield Record("text", path, start, b"\n".join(body))


class CorpusReader:
    """Iterates the records of every input file in order, tracking input bytes for progress."""

    def __init__(self, paths: Sequence[str], options: ReaderOptions = ReaderOptions()):
        if options.input_format not in FORMATS:
            raise InputError(f"unknown input format {options.input_format!r} (expected one of {', '.join(FORMATS)})")
        self.files = expand_inputs(paths)
        self.options = options
        self.total_bytes = sum(os.path.getsize(f) for f in self.files)
        self._done_bytes = 0
        self._counter = None

    @property
    def bytes_read(self) -> int:
        """On-disk bytes consumed so far (compressed bytes for compressed inputs)."""
        return self._done_bytes + (self._counter.consumed if self._counter else 0)

    def __iter__(self) -> Iterator[Record]:
        for path in self.files:
            stream, self._counter = open_binary(path)
            with stream:
                yield from self._records(_lines(stream, path), path)
            self._done_bytes += os.path.getsize(path)
            self._counter = None

    def _records(self, lines: Iterator[bytes], path: str) -> Iterator[Record]:
        fmt = detect_format(path, self.options.input_format)
        if fmt == "jsonl":
            return read_jsonl(lines, path)
        if fmt == "wikitext":
            return read_wikitext(lines, path, self.options.wikitext_headings)
        return read_text(lines, path, self.options.text_documents)
