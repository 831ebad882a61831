"""Packing documents into fixed ``seq_length + 1`` token blocks, streamed, in bounded memory.

* ``stitch`` (the MindSpore Transformers wikitext recipe): all documents are concatenated in order
  and every full block of ``seq_length + 1`` tokens becomes one document; the remainder that does not
  fill a block is dropped.
* ``pad``: each document on its own is cut into blocks of ``seq_length + 1`` tokens and its last,
  partial block is filled up with the pad id, so no token is lost and no block mixes documents.
"""
from __future__ import annotations

from typing import Iterable, Iterator, List

import numpy as np

PACK_MODES = ("none", "stitch", "pad")


def stitch(documents: Iterable[np.ndarray], block: int) -> Iterator[np.ndarray]:
    """Blocks of exactly ``block`` tokens cut from the concatenation of ``documents``."""
    pending: List[np.ndarray] = []
    count = 0
    for doc in documents:
        pending.append(doc)
        count += len(doc)
        if count < block:
            continue
        joined = np.concatenate(pending)
        full = (len(joined) // block) * block
        for start in range(0, full, block):
            yield joined[start:start + block]
        rest = joined[full:]
        pending, count = ([rest] if len(rest) else []), len(rest)


def pad(documents: Iterable[np.ndarray], block: int, pad_id: int) -> Iterator[np.ndarray]:
    """Each document cut into ``block``-token blocks, its last block filled with ``pad_id``."""
    for doc in documents:
        for start in range(0, len(doc), block):
            piece = doc[start:start + block]
            if len(piece) < block:
                filled = np.full(block, pad_id, dtype=doc.dtype)
                filled[:len(piece)] = piece
                piece = filled
            yield piece


def pack(documents: Iterable[np.ndarray], mode: str, seq_length: int, pad_id: int = 0) -> Iterator[np.ndarray]:
    """Documents as they are (``none``) or packed into ``seq_length + 1`` blocks."""
    if mode == "none":
        return iter(documents)
    if mode == "stitch":
        return stitch(documents, seq_length + 1)
    if mode == "pad":
        return pad(documents, seq_length + 1, pad_id)
    raise ValueError(f"unknown pack mode {mode!r}")
