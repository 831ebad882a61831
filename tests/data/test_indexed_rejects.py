"""Every malformed input in the spec's reject list raises IndexedDatasetError whose message names
the file and the field; `check_dataset` reports the same problem."""
import struct

import numpy as np
import pytest

from helpers.indexed_reference import write_dataset
from mfcore.data import IndexedDataset, IndexedDatasetError, check_dataset

# Base: 3 int32 sequences of lengths 2, 3, 1, one per document: N = 3, D = 4, .idx of 102 bytes.
LENGTHS, POINTERS, DOCS = 34, 46, 70


def _put(fmt, offset, value):
    def mutate(b):
        struct.pack_into(fmt, b, offset, value)
    return mutate


def _resize(n):
    def mutate(b):
        del b[n:]
    return mutate


CASES = {
    "wrong magic": (_put("<B", 0, ord("X")), "d.idx", "magic", "expected 4d 4d"),
    "version 2": (_put("<Q", 9, 2), "d.idx", "version", "expected 1, found 2"),
    "dtype code 0": (_put("<B", 17, 0), "d.idx", "dtype", "found 0"),
    "dtype code 9": (_put("<B", 17, 9), "d.idx", "dtype", "found 9"),
    "header cut": (_resize(30), "d.idx", "header", "expected at least 34 bytes, found 30"),
    "N too large": (_put("<Q", 18, 2**40), "d.idx", "sequence count", "N = 1099511627776"),
    "N overflowing": (_put("<Q", 18, 2**64 - 1), "d.idx", "sequence count", ""),
    "D too large": (_put("<Q", 26, 5), "d.idx", "document-index count", "D = 5"),
    "D zero": (_put("<Q", 26, 0), "d.idx", "document-index count", "expected D >= 1"),
    "arrays cut": (_resize(101), "d.idx", "document-index count", ""),
    "trailing bytes": (lambda b: b.extend(b"\0\0"), "d.idx", "file size", "found 104"),
    "negative length": (_put("<i", LENGTHS + 4, -3), "d.idx", "sequence lengths", "entry 1 is negative"),
    "pointer 0 not 0": (_put("<q", POINTERS, 8), "d.idx", "sequence pointers", "expected entry 0 to be 0"),
    "pointers decreasing": (_put("<q", POINTERS + 16, 4), "d.idx", "sequence pointers", "not monotonic"),
    "pointer vs lengths": (_put("<i", LENGTHS, 1), "d.idx", "sequence pointers", "entry 1 is 8, expected 4"),
    "bin too short for index": (_put("<i", LENGTHS + 8, 9), "d.bin", "file size", "expected at least 56 bytes"),
    "docs not from 0": (_put("<q", DOCS, 1), "d.idx", "document indices", "expected entry 0 to be 0"),
    "docs decreasing": (_put("<q", DOCS + 16, 0), "d.idx", "document indices", "decreasing"),
    "docs not ending at N": (_put("<q", DOCS + 24, 2), "d.idx", "document indices", "last entry to be N = 3"),
}


@pytest.fixture
def base(tmp_path):
    write_dataset(tmp_path / "d", [[np.arange(2)], [np.arange(3)], [np.arange(1)]], "int32")
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_rejected_with_file_and_field(base, case):
    mutate, file, field, detail = CASES[case]
    raw = bytearray((base / "d.idx").read_bytes())
    mutate(raw)
    (base / "d.idx").write_bytes(bytes(raw))
    with pytest.raises(IndexedDatasetError) as e:
        IndexedDataset(base / "d")
    message = str(e.value)
    assert message.startswith(f"{base / file}: {field}: "), message
    assert detail in message
    assert check_dataset(base / "d")[0] == message


def test_bin_truncated_on_disk(base):
    (base / "d.bin").write_bytes((base / "d.bin").read_bytes()[:-1])
    with pytest.raises(IndexedDatasetError, match=r"d\.bin: file size: expected at least 24 bytes .* found 23"):
        IndexedDataset(base / "d")


@pytest.mark.parametrize("missing", ["d.bin", "d.idx"])
def test_missing_file(base, missing):
    (base / missing).unlink()
    with pytest.raises(IndexedDatasetError, match=rf"{missing}: file: missing"):
        IndexedDataset(base / "d")
    assert any(missing in p for p in check_dataset(base / "d"))


def test_multimodal_flag_on_text_file(base):
    with pytest.raises(IndexedDatasetError, match=r"d\.idx: sequence modes: expected 3 mode bytes"):
        IndexedDataset(base / "d", multimodal=True)


def test_check_lists_several_problems(base):
    raw = bytearray((base / "d.idx").read_bytes())
    struct.pack_into("<i", raw, LENGTHS, -1)
    struct.pack_into("<q", raw, DOCS + 24, 9)
    (base / "d.idx").write_bytes(bytes(raw))
    problems = check_dataset(base / "d")
    assert any("sequence lengths" in p for p in problems) and any("document indices" in p for p in problems)
    assert len(check_dataset(base / "d", max_problems=1)) == 1
