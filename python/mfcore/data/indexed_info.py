"""Summary figures of an indexed dataset (for ``mf-data info``): counts, length statistics and a
power-of-two length histogram, computed from the zero-copy index arrays without touching tokens."""
from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np

from mfcore.data.indexed import IndexedDataset


@dataclass
class DatasetSummary:
    prefix: str
    dtype: str
    documents: int
    sequences: int
    tokens: int
    bin_bytes: int
    min_length: int
    mean_length: float
    max_length: int
    #: ((low, high), count) per bucket: sequences with low <= length < high; (0, 1) holds empty ones.
    histogram: List[Tuple[Tuple[int, int], int]] = field(default_factory=list)
    #: (mode, number of sequences) for multimodal datasets, else empty.
    modes: List[Tuple[int, int]] = field(default_factory=list)


def length_histogram(lengths: np.ndarray) -> List[Tuple[Tuple[int, int], int]]:
    """Counts of sequence lengths in buckets [0,1), [1,2), [2,4), [4,8), ... up to the longest."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size == 0:
        return []
    # Bucket b >= 1 holds [2^(b-1), 2^b); bucket 0 holds the empty sequences.
    buckets = np.zeros(lengths.shape, dtype=np.int64)
    nonzero = lengths > 0
    buckets[nonzero] = np.floor(np.log2(lengths[nonzero])).astype(np.int64) + 1
    counts = np.bincount(buckets)
    out = []
    for b, count in enumerate(counts.tolist()):
        low, high = (0, 1) if b == 0 else (1 << (b - 1), 1 << b)
        out.append(((low, high), count))
    return out


def summarize(ds: IndexedDataset) -> DatasetSummary:
    lengths = ds.sequence_lengths
    n = len(ds)
    return DatasetSummary(
        prefix=ds.prefix,
        dtype=ds.dtype.name,
        documents=ds.num_documents,
        sequences=n,
        tokens=int(ds.num_tokens),
        bin_bytes=int(ds.num_tokens) * ds.dtype.itemsize,
        min_length=int(lengths.min()) if n else 0,
        mean_length=float(lengths.mean()) if n else 0.0,
        max_length=int(lengths.max()) if n else 0,
        histogram=length_histogram(lengths),
        modes=_mode_counts(ds.sequence_modes),
    )


def _mode_counts(modes) -> List[Tuple[int, int]]:
    if modes is None or modes.size == 0:
        return []
    values, counts = np.unique(modes, return_counts=True)
    return list(zip(values.tolist(), counts.tolist()))
