"""GPT datasets on disk: every sample's tokens and fields against the slow spec reference."""
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mfcore.data import GPTDataset, IndexedDatasetBuilder, build_gpt_datasets
from mfcore.errors import DataError
from tests.data import gpt_reference as ref

EOD = 1


def write_dataset(prefix, docs, dtype="uint16"):
    with IndexedDatasetBuilder(prefix, dtype) as b:
        for d in docs:
            b.add_document(np.asarray(d, dtype=np.int64))
    return [np.asarray(d, dtype=np.int64) for d in docs]


def random_docs(rng, n, max_len=40, eod=EOD):
    """Documents of random tokens >= 2 ending in EOD (as preprocessing with --append-eod writes)."""
    return [list(rng.integers(2, 500, size=int(rng.integers(0, max_len)))) + [eod] for _ in range(n)]


def reference_split(docs, split, k, L, X, seed, num_samples, drop_last=True):
    sizes = np.array([len(d) for d in docs], dtype=np.int32)
    begin, end = ref.split_ranges(split, len(docs))[k]
    return ref.gpt_indices(sizes, begin, end, L, X, seed, num_samples, drop_last)


@given(st.integers(0, 2**31), st.integers(1, 30), st.sampled_from(["1", "8,1,1", "949,50,1", "2,0,1"]),
       st.integers(1, 24), st.integers(0, 1), st.one_of(st.none(), st.integers(1, 200)),
       st.sampled_from(["uint16", "int32"]))
@settings(max_examples=40, deadline=None)
def test_every_sample_equals_reference(seed, ndocs, split, L, X, n_train, dtype):
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as d:
        docs = write_dataset(f"{d}/x", random_docs(rng, ndocs), dtype)
        sizes = [len(x) for x in docs]
        begin, end = ref.split_ranges(split, ndocs)[0]
        if sum(sizes[begin:end]) - X < L and n_train is None or end == begin:
            with pytest.raises(DataError):
                build_gpt_datasets(f"{d}/x", split, L, seed, [n_train, 0, 0], None, add_extra_token=bool(X))
            return
        train, _, _ = build_gpt_datasets(f"{d}/x", split, L, seed, [n_train, 0, 0], None, add_extra_token=bool(X))
        doc_idx, samples, shuffle = reference_split(docs, split, 0, L, X, seed, n_train)
        assert len(train) == len(shuffle)
        assert n_train is None or len(train) >= n_train
        text = train.text(np.arange(len(train)))
        for i in range(len(train)):
            assert np.array_equal(text[i], ref.sample_text(docs, doc_idx, samples, shuffle, i, L, X)), i


@given(st.integers(0, 2**31), st.integers(1, 12), st.booleans(), st.booleans(), st.booleans(), st.integers(0, 1))
@settings(max_examples=40, deadline=None)
def test_fields_equal_reference(seed, L, eod_mask_loss, reset_position_ids, reset_attention_mask, X):
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as d:
        docs = write_dataset(f"{d}/x", random_docs(rng, 12, max_len=6))
        opts = dict(eod_id=EOD, eod_mask_loss=eod_mask_loss, reset_position_ids=reset_position_ids,
                    reset_attention_mask=reset_attention_mask, create_attention_mask=True,
                    compressed_eod_mask=True, eod_pad_length=L + 1, add_extra_token=bool(X))
        # the valid split keeps its partial last sample: exercises padding
        _, valid, _ = build_gpt_datasets(f"{d}/x", "1,1,0", L, seed, [0, None, 0], None,
                                         drop_last_partial_validation_sequence=False, **opts)
        doc_idx, samples, shuffle = reference_split(docs, "1,1,0", 1, L, X, seed, None, drop_last=False)
        batch = valid.fill_batch(np.arange(len(valid)))
        for i in range(len(valid)):
            text = ref.sample_text(docs, doc_idx, samples, shuffle, i, L, X)
            want = ref.fields(text, L, X, -1, EOD, eod_mask_loss, reset_position_ids, reset_attention_mask, L + 1)
            for name, value in want.items():
                assert np.array_equal(batch[name][i], value), (i, name)


def test_sample_dict_dtypes_and_shapes(tmp_path):
    write_dataset(tmp_path / "x", random_docs(np.random.default_rng(0), 30))
    train, valid, test = build_gpt_datasets(str(tmp_path / "x"), "1", 8, 7, None, None, eod_id=EOD,
                                            create_attention_mask=True)
    assert isinstance(train, GPTDataset) and valid is None and test is None
    s = train[-1]
    assert s["tokens"].dtype == np.int32 and s["tokens"].shape == (8,)
    assert s["labels"].dtype == np.int32 and s["position_ids"].dtype == np.int32
    assert s["loss_mask"].dtype == np.float32
    assert s["attention_mask"].dtype == np.bool_ and s["attention_mask"].shape == (8, 8)
    assert np.array_equal(s["attention_mask"], ~np.tril(np.ones((8, 8), bool)))
    with pytest.raises(IndexError):
        train[len(train)]


def test_zero_copy_indices_keep_working_after_the_dataset_is_dropped(tmp_path):
    write_dataset(tmp_path / "x", random_docs(np.random.default_rng(0), 30))
    train = build_gpt_datasets(str(tmp_path / "x"), "1", 8, 7, [50, 0, 0], str(tmp_path / "c"))[0]
    shuffle = train.shuffle_index
    expect = shuffle.copy()
    del train
    assert np.array_equal(shuffle, expect) and not shuffle.flags.writeable


@pytest.mark.parametrize("split, message", [("a,b", "unexpected character"), ("0,0,0", "all weights are zero"),
                                            ("1,2,3,4", "more than three"), ("-1,2", "negative")])
def test_bad_split_is_a_clear_error(tmp_path, split, message):
    write_dataset(tmp_path / "x", random_docs(np.random.default_rng(0), 10))
    with pytest.raises(DataError, match=message):
        build_gpt_datasets(str(tmp_path / "x"), split, 8, 1, None, None)


def test_seq_length_longer_than_the_data_is_a_clear_error(tmp_path):
    write_dataset(tmp_path / "x", [[5, 6, EOD]] * 3)
    with pytest.raises(DataError, match="too few for one sample of seq_length 100"):
        build_gpt_datasets(str(tmp_path / "x"), "1", 100, 1, None, None)


def test_split_without_documents_and_empty_dataset_are_errors(tmp_path):
    write_dataset(tmp_path / "x", [[5, 6, EOD]] * 3)
    with pytest.raises(DataError, match="no documents"):
        build_gpt_datasets(str(tmp_path / "x"), "98,1,1", 2, 1, None, None)
    write_dataset(tmp_path / "empty", [])
    with pytest.raises(DataError):
        build_gpt_datasets(str(tmp_path / "empty"), "1", 2, 1, [10, 0, 0], None)


def test_options_are_checked(tmp_path):
    write_dataset(tmp_path / "x", random_docs(np.random.default_rng(0), 10))
    with pytest.raises(DataError, match="unknown dataset option"):
        build_gpt_datasets(str(tmp_path / "x"), "1", 4, 1, None, None, reset_position_id=True)
    with pytest.raises(DataError, match="eod_id is required"):
        build_gpt_datasets(str(tmp_path / "x"), "1", 4, 1, None, None, reset_position_ids=True)
    with pytest.raises(DataError, match="num_samples"):
        build_gpt_datasets(str(tmp_path / "x"), "1", 4, 1, [1, 2], None)
    with pytest.raises(DataError):
        build_gpt_datasets(str(tmp_path / "missing"), "1", 4, 1, None, None)


def test_too_many_documents_for_actual_seq_len_is_an_error(tmp_path):
    write_dataset(tmp_path / "x", [[EOD]] * 40)
    train = build_gpt_datasets(str(tmp_path / "x"), "1", 8, 1, None, None, eod_id=EOD, compressed_eod_mask=True,
                               eod_pad_length=4)[0]
    with pytest.raises(DataError, match="raise eod_pad_length"):
        train[0]


def test_fingerprint_changes_with_what_determines_samples(tmp_path):
    write_dataset(tmp_path / "x", random_docs(np.random.default_rng(0), 30))
    p = str(tmp_path / "x")
    a = build_gpt_datasets(p, "1", 8, 1, None, None)[0].fingerprint()
    assert a == build_gpt_datasets(p, "1", 8, 1, None, None)[0].fingerprint()
    assert a != build_gpt_datasets(p, "1", 8, 2, None, None)[0].fingerprint()
    assert a != build_gpt_datasets(p, "1", 9, 1, None, None)[0].fingerprint()
    assert a != build_gpt_datasets(p, "1", 8, 1, None, None, eod_id=EOD, eod_mask_loss=True)[0].fingerprint()
    write_dataset(tmp_path / "x", random_docs(np.random.default_rng(1), 30))
    assert a != build_gpt_datasets(p, "1", 8, 1, None, None)[0].fingerprint()


def test_fill_batch_into_caller_buffers(tmp_path):
    write_dataset(tmp_path / "x", random_docs(np.random.default_rng(0), 40))
    train = build_gpt_datasets(str(tmp_path / "x"), "1", 8, 3, None, None, eod_id=EOD, reset_position_ids=True)[0]
    idx = [5, 0, 3]
    full = train.fill_batch(idx)
    out_tokens = np.full((3, 8), -7, np.int32)
    assert train.fill_batch(idx, out_tokens) is out_tokens  # fill_batch(indices, out_tokens)
    assert np.array_equal(out_tokens, full["tokens"])
    buffers = train.empty_batch(3)
    assert train.fill_batch(np.array(idx), buffers) is buffers
    for name in full:
        assert np.array_equal(buffers[name], full[name])
    with pytest.raises(DataError, match="tokens"):
        train.fill_batch(idx, np.zeros((3, 8), np.int64))  # wrong dtype is refused, not reinterpreted
    with pytest.raises(IndexError):
        train.fill_batch([len(train)])


def test_bad_option_types_are_data_errors(tmp_path):
    write_dataset(tmp_path / "x", random_docs(np.random.default_rng(0), 10))
    with pytest.raises(DataError, match="sample options"):
        build_gpt_datasets(str(tmp_path / "x"), "1", 4, 1, None, None, eod_id="two")
