"""Golden bytes: the .idx the C++ writer produces, checked byte for byte against the spec and against
an independent struct+numpy reader/writer (tests/helpers/indexed_reference.py)."""
import struct

import numpy as np

from helpers.indexed_reference import read_index, read_sequence, write_dataset
from mfcore.data import IndexedDataset, IndexedDatasetBuilder

# Two documents: [5, 6, 7] and the two-sequence document [65535], [1, 2] (uint16).
GOLDEN_IDX = (
    b"MMIDIDX\x00\x00"
    + struct.pack("<Q", 1) + bytes([8]) + struct.pack("<QQ", 3, 3)
    + struct.pack("<3i", 3, 1, 2)
    + struct.pack("<3q", 0, 6, 8)
    + struct.pack("<3q", 0, 1, 3)
)
GOLDEN_BIN = struct.pack("<6H", 5, 6, 7, 65535, 1, 2)


def test_writer_produces_golden_bytes(tmp_path):
    with IndexedDatasetBuilder(tmp_path / "g", "uint16") as b:
        b.add_document([5, 6, 7])
        b.add_sequence([65535])
        b.add_sequence(np.array([1, 2], dtype=np.int64))
        b.end_document()
    assert (tmp_path / "g.idx").read_bytes() == GOLDEN_IDX
    assert (tmp_path / "g.bin").read_bytes() == GOLDEN_BIN


def test_reader_reads_golden_bytes(tmp_path):
    (tmp_path / "g.idx").write_bytes(GOLDEN_IDX)
    (tmp_path / "g.bin").write_bytes(GOLDEN_BIN)
    ds = IndexedDataset(tmp_path / "g")
    assert ds.dtype == np.uint16 and len(ds) == 3 and ds.num_documents == 2
    assert ds.sequence_lengths.tolist() == [3, 1, 2]
    assert ds.sequence_pointers.tolist() == [0, 6, 8]
    assert ds.document_indices.tolist() == [0, 1, 3]
    assert ds[1].tolist() == [65535]
    assert ds.get_document(1).tolist() == [65535, 1, 2]


def test_reference_and_engine_agree_both_ways(tmp_path):
    rng = np.random.default_rng(7)
    docs = [[rng.integers(-(2**31), 2**31 - 1, rng.integers(0, 50)) for _ in range(rng.integers(1, 4))] for _ in range(30)]
    write_dataset(tmp_path / "ref", docs, "int32")
    with IndexedDatasetBuilder(tmp_path / "eng", np.int32) as b:
        for doc in docs:
            for seq in doc:
                b.add_sequence(seq)
            b.end_document()
    assert (tmp_path / "ref.idx").read_bytes() == (tmp_path / "eng.idx").read_bytes()
    assert (tmp_path / "ref.bin").read_bytes() == (tmp_path / "eng.bin").read_bytes()
    index = read_index(tmp_path / "eng.idx")
    ds = IndexedDataset(tmp_path / "ref")
    for i in range(len(ds)):
        np.testing.assert_array_equal(ds[i], read_sequence(tmp_path / "eng", index, i))
