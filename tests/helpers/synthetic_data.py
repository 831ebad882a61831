"""Deterministic synthetic corpora written as real indexed datasets (through mfcore's builder), so
the end-to-end tests train on the same .bin/.idx path as users do."""
import numpy as np

from mfcore.data import IndexedDatasetBuilder

EOD = 0


def write_pattern_corpus(prefix, documents=400, seed=0, alphabet=200):
    """Documents of 20-120 tokens from a few fixed linear recurrences (learnable, not trivial):
    token[i+1] = (a * token[i] + b) mod alphabet + 1, with (a, b) per document, then EOD (id 0)."""
    rng = np.random.default_rng(seed)
    rules = [(3, 7), (5, 1), (7, 11), (11, 3)]
    builder = IndexedDatasetBuilder(str(prefix), np.uint16)
    for _ in range(documents):
        a, b = rules[rng.integers(len(rules))]
        n = int(rng.integers(20, 121))
        doc = np.empty(n + 1, np.int64)
        doc[0] = rng.integers(1, alphabet + 1)
        for i in range(1, n):
            doc[i] = (a * doc[i - 1] + b) % alphabet + 1
        doc[n] = EOD
        builder.add_document(doc.astype(np.uint16))
    builder.finalize()
    return str(prefix)
