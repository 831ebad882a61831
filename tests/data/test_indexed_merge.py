"""Merging equals writing all documents into one dataset, byte for byte."""
import numpy as np
import pytest

from helpers.indexed_reference import write_dataset
from mfcore.data import IndexedDataset, IndexedDatasetError, merge_datasets


def _random_docs(rng, count):
    return [[rng.integers(0, 60000, rng.integers(0, 30)) for _ in range(rng.integers(1, 3))] for _ in range(count)]


@pytest.mark.parametrize("multimodal", [False, True])
def test_merge_equals_single_write(tmp_path, multimodal):
    rng = np.random.default_rng(3)
    parts = [_random_docs(rng, n) for n in (5, 0, 7, 1)]
    modes = [[int(rng.integers(-3, 3)) for doc in docs for _ in doc] for docs in parts]
    for k, docs in enumerate(parts):
        write_dataset(tmp_path / f"p{k}", docs, "uint16", modes[k] if multimodal else None)
    write_dataset(tmp_path / "all", [d for docs in parts for d in docs], "uint16",
                  [m for ms in modes for m in ms] if multimodal else None)
    merge_datasets(tmp_path / "m", [tmp_path / f"p{k}" for k in range(4)], multimodal=multimodal)
    assert (tmp_path / "m.idx").read_bytes() == (tmp_path / "all.idx").read_bytes()
    assert (tmp_path / "m.bin").read_bytes() == (tmp_path / "all.bin").read_bytes()
    assert IndexedDataset(tmp_path / "m", multimodal=multimodal).num_documents == 13


def test_merge_refuses_mixed_dtypes_naming_the_input(tmp_path):
    write_dataset(tmp_path / "a", [[np.arange(3)]], "int32")
    write_dataset(tmp_path / "b", [[np.arange(3)]], "uint16")
    with pytest.raises(IndexedDatasetError, match=r"b\.idx: dtype: expected int32"):
        merge_datasets(tmp_path / "m", [tmp_path / "a", tmp_path / "b"])
    assert not (tmp_path / "m.idx").exists() and not (tmp_path / "m.bin").exists()


def test_merge_refuses_corrupt_input(tmp_path):
    write_dataset(tmp_path / "a", [[np.arange(3)]], "int32")
    write_dataset(tmp_path / "b", [[np.arange(3)]], "int32")
    (tmp_path / "b.bin").write_bytes(b"\0")
    with pytest.raises(IndexedDatasetError, match=r"b\.bin: file size"):
        merge_datasets(tmp_path / "m", [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(IndexedDatasetError, match="at least one"):
        merge_datasets(tmp_path / "m", [])
