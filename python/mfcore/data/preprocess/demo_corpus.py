"""A small English-ish JSONL corpus built from text every machine has, for the demo and benchmarks.

Sources, in a fixed order: the docstrings of the Python standard library, then the plain-text files
under ``/usr/share/doc``; when those run out (or are missing, as in slim containers) a built-in
generator writes pseudo-English prose from a fixed word list and seed. The same machine always
produces the same bytes.
"""
from __future__ import annotations

import ast
import gzip
import json
import os
import random
import sysconfig
from typing import Iterator, List, Optional, Sequence

from mfcore.io.atomic import atomic_open

DOC_ROOTS = ("/usr/share/doc",)
_WORDS = ("the model data token train step layer weight value system file text number language read write "
          "learn small large fast slow first last new old good simple order point group result change "
          "process memory batch shard index sample loss rate time world people water light house river "
          "city music story paper table window answer question reason example pattern history future").split()
_MIN_DOC_CHARS = 200


def stdlib_docstrings(root: Optional[str] = None) -> Iterator[str]:
    """One document per standard-library module: its docstrings, in source order."""
    root = root or sysconfig.get_paths()["stdlib"]
    for path in _sorted_files(root, (".py",), skip_dirs=("test", "tests", "idlelib", "site-packages")):
        try:
            with open(path, "rb") as f:
                tree = ast.parse(f.read())
        except (SyntaxError, ValueError, OSError):
            continue
        docs = [ast.get_docstring(node) for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
        text = "\n\n".join(d for d in docs if d)
        if len(text) >= _MIN_DOC_CHARS:
            yield text


def text_files(roots: Sequence[str] = DOC_ROOTS, limit_bytes: int = 4 << 20) -> Iterator[str]:
    """Readable UTF-8 text files under ``roots`` (``.gz`` decompressed), one document each."""
    for root in roots:
        for path in _sorted_files(root, None, skip_dirs=()):
            text = read_text_file(path, limit_bytes)
            if text and len(text) >= _MIN_DOC_CHARS:
                yield text


def read_text_file(path: str, limit_bytes: int) -> Optional[str]:
    """The file's text, or ``None`` for a binary, non-UTF-8, unreadable or oversized file."""
    try:
        if os.path.getsize(path) > limit_bytes:
            return None
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            data = f.read(limit_bytes + 1)
        if len(data) > limit_bytes or b"\0" in data:
            return None
        return data.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError):
        return None


def generated_prose(seed: int = 0) -> Iterator[str]:
    """Endless pseudo-English paragraphs from a fixed vocabulary (the fallback source)."""
    rng = random.Random(seed)
    while True:
        sentences = []
        for _ in range(rng.randint(3, 12)):
            words = [rng.choice(_WORDS) for _ in range(rng.randint(5, 18))]
            sentences.append(" ".join(words).capitalize() + rng.choice((".", ".", ".", "?", "!")))
        yield " ".join(sentences)


def _sorted_files(root: str, suffixes, skip_dirs) -> List[str]:
    found = []
    for base, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip_dirs and not d.startswith((".", "__")))
        found.extend(os.path.join(base, n) for n in sorted(names) if suffixes is None or n.endswith(suffixes))
    return found


def demo_documents(doc_roots: Sequence[str] = DOC_ROOTS, stdlib_root: Optional[str] = None) -> Iterator[str]:
    yield from stdlib_docstrings(stdlib_root)
    yield from text_files(doc_roots)
    yield from generated_prose()


def write_demo_corpus(path: str, target_mb: float, doc_roots: Sequence[str] = DOC_ROOTS,
                      stdlib_root: Optional[str] = None) -> dict:
    """Writes about ``target_mb`` MiB of ``{"text": ...}`` lines to ``path``; returns counts."""
    target = int(target_mb * (1 << 20))
    written = documents = 0
    with atomic_open(path, "w") as f:
        for text in demo_documents(doc_roots, stdlib_root):
            line = json.dumps({"text": text}, ensure_ascii=False) + "\n"
            f.write(line)
            written += len(line.encode("utf-8"))
            documents += 1
            if written >= target:
                break
    return {"path": path, "documents": documents, "bytes": written}
