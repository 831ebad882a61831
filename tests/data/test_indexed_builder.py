"""The builder: dtype choice and safe casts, Megatron-style split documents, atomicity."""
import os

import numpy as np
import pytest

from mfcore.data import IndexedDataset, IndexedDatasetBuilder, IndexedDatasetError
from mfcore.errors import DataError


def test_auto_dtype_needs_vocab_size(tmp_path):
    with pytest.raises(DataError, match="vocab_size"):
        IndexedDatasetBuilder(tmp_path / "a", "auto")
    with IndexedDatasetBuilder(tmp_path / "a", "auto", vocab_size=50000) as b:
        b.add_document([1, 49999])
    assert IndexedDataset(tmp_path / "a").dtype == np.uint16
    with IndexedDatasetBuilder(tmp_path / "b", "auto", vocab_size=128256) as b:
        b.add_document([128255])
    assert IndexedDataset(tmp_path / "b").dtype == np.int32


@pytest.mark.parametrize("dtype", ["bfloat16", "complex64", "bool", "nonsense"])
def test_unsupported_dtype(tmp_path, dtype):
    with pytest.raises(DataError):
        IndexedDatasetBuilder(tmp_path / "a", dtype)
    assert os.listdir(tmp_path) == []


def test_out_of_range_tokens_are_refused_not_wrapped(tmp_path):
    with IndexedDatasetBuilder(tmp_path / "a", np.uint16) as b:
        with pytest.raises(DataError, match=r"\[-1, 3\] do not fit uint16"):
            b.add_document([-1, 3])
        with pytest.raises(DataError, match="do not fit uint16"):
            b.add_document([70000])
        with pytest.raises(DataError, match="float64 tokens"):
            b.add_document([1.5])
        b.add_document(np.array([65535], dtype=np.int64))
    ds = IndexedDataset(tmp_path / "a")
    assert len(ds) == 1 and ds[0].tolist() == [65535]


def test_add_document_with_lengths_and_modes(tmp_path):
    with IndexedDatasetBuilder(tmp_path / "a", "int16", multimodal=True) as b:
        b.add_document(np.arange(6), lengths=[2, 0, 4], modes=[1, 0, 2])
        with pytest.raises(DataError, match="do not split"):
            b.add_document(np.arange(3), lengths=[2])
        with pytest.raises(DataError, match="modes"):
            b.add_document(np.arange(3), lengths=[1, 2], modes=[0])
    ds = IndexedDataset(tmp_path / "a", multimodal=True)
    assert ds.sequence_lengths.tolist() == [2, 0, 4]
    assert ds.sequence_modes.tolist() == [1, 0, 2]
    assert ds.document_indices.tolist() == [0, 3]


def test_exception_in_context_leaves_no_dataset(tmp_path):
    with pytest.raises(RuntimeError):
        with IndexedDatasetBuilder(tmp_path / "a", "int32") as b:
            b.add_document(np.arange(1000))
            assert os.listdir(tmp_path) != []  # the temporary .bin exists while writing
            raise RuntimeError("crash while writing")
    assert os.listdir(tmp_path) == []
    with pytest.raises(IndexedDatasetError):
        IndexedDataset(tmp_path / "a")


def test_abandoned_builder_leaves_no_dataset(tmp_path):
    b = IndexedDatasetBuilder(tmp_path / "a", "int32")
    b.add_document([1, 2])
    del b
    assert os.listdir(tmp_path) == []


def test_nothing_visible_until_finalize_and_old_dataset_replaced(tmp_path):
    with IndexedDatasetBuilder(tmp_path / "a", "int32") as b:
        b.add_document([1])
    b = IndexedDatasetBuilder(tmp_path / "a", "int32")
    b.add_document([7, 8, 9])
    assert IndexedDataset(tmp_path / "a")[0].tolist() == [1]  # old dataset intact while writing
    b.finalize()
    assert IndexedDataset(tmp_path / "a")[0].tolist() == [7, 8, 9]
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "a.idx"]
    with pytest.raises(RuntimeError, match="after finalize"):
        b.add_document([1])


def test_unwritable_directory_names_the_file(tmp_path):
    with pytest.raises(IndexedDatasetError, match=r"missing-dir/a\.bin: file: cannot create"):
        IndexedDatasetBuilder(tmp_path / "missing-dir" / "a", "int32")
