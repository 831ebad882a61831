"""Property tests: random documents of every dtype -> builder -> reader -> equal, checked against the
independent reference reader; multi-sequence documents and multimodal modes included."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from helpers.indexed_reference import read_index, read_sequence
from mfcore.data import IndexedDataset, IndexedDatasetBuilder

DTYPES = ["uint8", "int8", "int16", "int32", "int64", "float64", "float32", "uint16"]


@st.composite
def datasets(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    seq = arrays(dtype, st.integers(0, 40), elements=None if dtype.kind != "f" else st.floats(width=8 * dtype.itemsize, allow_nan=False))
    docs = draw(st.lists(st.lists(seq, min_size=0, max_size=3), min_size=0, max_size=8))
    multimodal = draw(st.booleans())
    modes = [[draw(st.integers(-128, 127)) for _ in doc] for doc in docs] if multimodal else None
    return dtype, docs, modes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=datasets())
def test_round_trip_every_dtype(tmp_path_factory, data):
    dtype, docs, modes = data
    prefix = tmp_path_factory.mktemp("rt") / "ds"
    multimodal = modes is not None
    with IndexedDatasetBuilder(prefix, dtype, multimodal=multimodal) as b:
        for d, doc in enumerate(docs):
            for s, seq in enumerate(doc):
                b.add_sequence(seq, mode=modes[d][s] if multimodal else 0)
            b.end_document()
    flat = [seq for doc in docs for seq in doc]
    ds = IndexedDataset(prefix, multimodal=multimodal)
    ref = read_index(f"{prefix}.idx", multimodal=multimodal)
    assert ds.dtype == dtype and ref["dtype"] == dtype
    assert len(ds) == len(flat) and ds.num_documents == len(docs)
    assert ds.document_indices.tolist() == np.cumsum([0] + [len(doc) for doc in docs]).tolist()
    np.testing.assert_array_equal(ds.sequence_lengths, ref["lengths"])
    np.testing.assert_array_equal(ds.sequence_pointers, ref["pointers"])
    for i, seq in enumerate(flat):
        np.testing.assert_array_equal(ds[i], seq)
        np.testing.assert_array_equal(read_sequence(prefix, ref, i), seq)
    if multimodal:
        assert ds.sequence_modes.tolist() == [m for doc in modes for m in doc]
    assert ds.num_tokens == sum(len(s) for s in flat)
