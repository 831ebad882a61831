"""Blends: weight parsing, member sizes with the 0.5 % surplus, and every blend sample against the
reference composition of member samples."""
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st
import tempfile

from mfcore.data import BlendedDataset, build_gpt_datasets
from mfcore.data.blended import parse_blend
from mfcore.errors import DataError
from tests.data import gpt_reference as ref
from tests.data.test_gpt_dataset import random_docs, write_dataset


@given(st.integers(0, 2**31), st.lists(st.integers(0, 9), min_size=2, max_size=4).filter(lambda w: sum(w) > 0),
       st.integers(1, 150), st.integers(4, 12))
@settings(max_examples=25, deadline=None)
@example(0, [5, 9], 42, 4)  # a target of 27.000000000000004 (rounds up to 28)
def test_weighted_blend_samples_equal_reference(seed, weights, size, L):
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as d:
        docs, blend = [], []
        for k, w in enumerate(weights):
            docs.append(write_dataset(f"{d}/p{k}", random_docs(rng, 15)))
            blend += [str(w), f"{d}/p{k}"]
        train, _, _ = build_gpt_datasets(blend, "1", L, seed, [size, 0, 0], f"{d}/cache")
        assert isinstance(train, BlendedDataset)
        # The spec normalises the weights first, then takes ceil(size * w): 42 * (9/14) is
        # 27.000000000000004 and rounds up to 28, where 42 * 9 / 14 would give exactly 27.
        targets = [int(np.ceil(size * (w / sum(weights)))) for w in weights]
        assert len(train) == sum(targets)
        which, sample = ref.blending(weights, len(train))
        assert np.array_equal(train.dataset_index, which) and np.array_equal(train.dataset_sample_index, sample)
        text = train.text(range(len(train)))
        for k, w in enumerate(weights):
            if w == 0:
                continue
            n_k = int(np.ceil(np.ceil(size * (w / sum(weights))) * 1.005))
            assert len(train.members[k]) >= n_k
            sizes = np.array([len(x) for x in docs[k]], dtype=np.int32)
            ix = ref.gpt_indices(sizes, 0, len(sizes), L, 1, seed, n_k)
            for s in np.flatnonzero(which == k):
                assert np.array_equal(text[s], ref.sample_text(docs[k], *ix, sample[s], L, 1)), s


def test_unweighted_blend_uses_every_sample_once(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(3):
        write_dataset(tmp_path / f"p{k}", random_docs(rng, 10 * (k + 1)))
    prefixes = [str(tmp_path / f"p{k}") for k in range(3)]
    train = build_gpt_datasets(prefixes, "1", 8, 1, [10**6, 0, 0], None)[0]
    lengths = [len(m) for m in train.members]
    assert len(train) == sum(lengths) and train.counts == lengths
    which, sample = ref.exhaustive_blending(lengths)
    assert np.array_equal(train.dataset_index, which) and np.array_equal(train.dataset_sample_index, sample)


def test_blend_is_cached(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(2):
        write_dataset(tmp_path / f"p{k}", random_docs(rng, 20))
    blend = ["0.5", str(tmp_path / "p0"), "0.5", str(tmp_path / "p1")]
    a = build_gpt_datasets(blend, "1", 8, 1, [300, 0, 0], str(tmp_path / "c"))[0]
    b = build_gpt_datasets(blend, "1", 8, 1, [300, 0, 0], str(tmp_path / "c"))[0]
    assert a.built and not b.built and np.array_equal(a.text(range(300)), b.text(range(300)))


def test_parse_blend_forms():
    assert parse_blend("a") == (["a"], None)
    assert parse_blend(["a", "b"]) == (["a", "b"], None)
    assert parse_blend(["30", "a", "70", "b"]) == (["a", "b"], [30.0, 70.0])
    assert parse_blend([0.3, "a", 0.7, "b"]) == (["a", "b"], [0.3, 0.7])
    assert parse_blend(["a"]) == (["a"], None)


@pytest.mark.parametrize("blend, message", [
    (["-1", "a", "2", "b"], "finite and >= 0"),
    (["0", "a", "0", "b"], "all blend weights are zero"),
    (["1", "a", "x", "b"], "weight does not parse"),
    (["a", "1", "b", "2"], "weights must come before"),
    ([], "names no dataset"),
])
def test_bad_weights_are_clear_errors(blend, message):
    with pytest.raises(DataError, match=message):
        build_gpt_datasets(blend, "1", 8, 1, [10, 0, 0], None)
