"""Sampling on the host: greedy picks the first maximum, the filters keep what they promise, a seed
reproduces a draw, and the draws follow the filtered distribution."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfcore.errors import ConfigError
from mfcore.generation.sampling import Sampler, SamplingOptions, filtered_probabilities

logit_rows = st.lists(st.floats(-20, 20), min_size=2, max_size=40).map(lambda r: np.array([r], np.float32))


def test_greedy_takes_the_first_maximum():
    logits = np.array([[0.0, 3.0, 3.0, 1.0], [5.0, -1.0, 5.0, 5.0]], np.float32)
    assert Sampler(SamplingOptions()).__call__(logits).tolist() == [1, 0]


@settings(max_examples=60, deadline=None)
@given(logit_rows, st.integers(1, 10))
def test_top_k_keeps_the_k_most_likely(logits, k):
    probs = filtered_probabilities(logits, SamplingOptions(temperature=1.0, top_k=k))
    assert np.isclose(probs.sum(), 1.0)
    kept = probs[0] > 0
    assert kept.sum() >= min(k, logits.shape[1])          # ties at the k-th value are all kept
    assert logits[0][kept].min() >= np.sort(logits[0])[::-1][min(k, logits.shape[1]) - 1]


@settings(max_examples=60, deadline=None)
@given(logit_rows, st.floats(0.05, 1.0))
def test_top_p_keeps_the_smallest_set_reaching_p(logits, p):
    full = filtered_probabilities(logits, SamplingOptions(temperature=1.0))[0]
    kept = filtered_probabilities(logits, SamplingOptions(temperature=1.0, top_p=p))[0] > 0
    assert kept.any()
    order = np.argsort(-full, kind="stable")
    n = int(kept.sum())
    assert set(order[:n]) == set(np.flatnonzero(kept))    # the most likely ones
    assert full[order[:n]].sum() >= p - 1e-9 or n == len(full)
    assert full[order[:n - 1]].sum() < p + 1e-9           # one fewer would not reach p


def test_a_seed_reproduces_the_draws_and_draws_follow_the_distribution():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]] * 4000, np.float32))
    opts = SamplingOptions(temperature=1.0, seed=7)
    first, again = Sampler(opts)(logits), Sampler(opts)(logits)
    assert np.array_equal(first, again)
    freq = np.bincount(first, minlength=4) / len(first)
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.03)
    top2 = Sampler(SamplingOptions(temperature=1.0, top_k=2, seed=1))(logits)
    assert set(top2.tolist()) == {0, 1}


@pytest.mark.parametrize("kwargs, match", [({"temperature": -1.0}, "temperature"),
                                           ({"top_k": -2}, "top_k"), ({"top_p": 0.0}, "top_p"),
                                           ({"top_p": 1.5}, "top_p")])
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SamplingOptions(**kwargs)
