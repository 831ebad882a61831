"""The Python face of the reader: zero-copy views, bounds, read_into, prefixes and dtype choice."""
import gc

import numpy as np
import pytest

from helpers.indexed_reference import write_dataset
from mfcore.data import IndexedDataset, IndexedDatasetError, best_dtype
from mfcore.errors import DataError

DOCS = [[np.arange(5)], [np.arange(10, 13), np.arange(20, 24)], [np.array([], dtype=np.int64)]]


@pytest.fixture
def ds(tmp_path):
    write_dataset(tmp_path / "d", DOCS, "int32")
    return IndexedDataset(tmp_path / "d")


def test_counts_and_arrays(ds):
    assert len(ds) == 4 and ds.num_documents == 3 and ds.num_tokens == 12
    assert ds.dtype == np.int32
    assert ds.sequence_lengths.tolist() == [5, 3, 4, 0]
    assert ds.sequence_pointers.tolist() == [0, 20, 32, 48]
    assert ds.document_indices.tolist() == [0, 1, 3, 4]
    assert ds.sequence_modes is None


def test_views_are_zero_copy_read_only_and_keep_the_mapping_alive(tmp_path):
    write_dataset(tmp_path / "d", DOCS, "int32")
    ds = IndexedDataset(tmp_path / "d")
    view, lengths = ds.get(1), ds.sequence_lengths
    assert not view.flags.owndata and not view.flags.writeable and not lengths.flags.writeable
    del ds
    gc.collect()
    assert view.tolist() == [10, 11, 12] and lengths.tolist() == [5, 3, 4, 0]
    with pytest.raises(ValueError):
        view[0] = 1


def test_get_offsets_lengths_and_negative_index(ds):
    assert ds.get(2, offset=1, length=2).tolist() == [21, 22]
    assert ds.get(2, offset=3).tolist() == [23]
    assert ds[-1].tolist() == []
    assert [a.tolist() for a in ds[1:3]] == [[10, 11, 12], [20, 21, 22, 23]]
    for bad in [lambda: ds[4], lambda: ds[-5], lambda: ds.get(0, 4, 2), lambda: ds.get(0, -1), lambda: ds.get(0, 6)]:
        with pytest.raises(IndexError):
            bad()


def test_read_into_packs_requests(ds):
    out = np.full(6, -1, np.int32)
    ds.read_into([2, 0, 1], [1, 4, 0], [2, 1, 3], out)
    assert out.tolist() == [21, 22, 4, 10, 11, 12]


def test_read_into_rejects_bad_requests_before_copying(ds):
    out = np.full(4, -1, np.int32)
    with pytest.raises(IndexError):
        ds.read_into([0, 9], [0, 0], [1, 1], out)
    with pytest.raises(IndexError):
        ds.read_into([0, 1], [0, 2], [1, 2], out)
    with pytest.raises(ValueError):
        ds.read_into([0], [0], [5], out)  # 5 tokens do not fit 4
    assert out.tolist() == [-1, -1, -1, -1]
    with pytest.raises(DataError):
        ds.read_into([0], [0], [1], np.zeros(4, np.int64))
    with pytest.raises(ValueError):
        ds.read_into([0, 1], [0], [1], out)


def test_pickle_reopens_the_mapping(ds):
    import pickle

    data = pickle.dumps(ds)
    assert len(data) < 500
    again = pickle.loads(data)
    assert again.prefix == ds.prefix and again[2].tolist() == [20, 21, 22, 23]


def test_prefix_bin_or_idx_path(tmp_path):
    write_dataset(tmp_path / "d", DOCS, "int32")
    for p in ["d", "d.bin", "d.idx"]:
        assert IndexedDataset(str(tmp_path / p)).prefix == str(tmp_path / "d")


def test_missing_files_raise_data_error(tmp_path):
    with pytest.raises(IndexedDatasetError, match=r"nope\.idx: file: missing"):
        IndexedDataset(tmp_path / "nope")
    assert issubclass(IndexedDatasetError, DataError)


def test_best_dtype_follows_megatron():
    assert best_dtype(32000) == np.uint16
    assert best_dtype(65499) == np.uint16
    assert best_dtype(65500) == np.int32
    assert best_dtype(128256) == np.int32
    with pytest.raises(DataError):
        best_dtype(0)


def test_core_refuses_buffers_it_would_overrun(ds):
    # The public wrapper checks first; the extension must be safe on its own too.
    one = np.array([0], np.int64)
    out = np.zeros(16, np.int32)
    for bad in (out[::-2], out[::2]):
        with pytest.raises(ValueError, match="C-contiguous"):
            ds._core.read_into(one, one * 0, one + 3, bad)
    frozen = np.zeros(8, np.int32)
    frozen.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        ds._core.read_into(one, one * 0, one + 3, frozen)
