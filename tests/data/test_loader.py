"""The DP sampler and the prefetching loader."""
import numpy as np
import pytest

from mfcore.data import PretrainingLoader, PretrainingSampler, build_gpt_datasets
from mfcore.errors import ConfigError, DataError
from tests.data.test_gpt_dataset import random_docs, write_dataset


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    d = tmp_path_factory.mktemp("loader")
    write_dataset(d / "x", random_docs(np.random.default_rng(0), 80))
    return build_gpt_datasets(str(d / "x"), "1", 8, 1, [200, 0, 0], None, eod_id=1)[0]


@pytest.mark.parametrize("gbs, mbs, dp", [(8, 1, 1), (8, 2, 2), (8, 1, 4), (12, 3, 2)])
def test_global_order_is_independent_of_dp_size(gbs, mbs, dp):
    steps = 5
    per_rank = [list(PretrainingSampler(1000, gbs, mbs, r, dp).step_indices(s * gbs).reshape(-1)
                     for s in range(steps)) for r in range(dp)]
    merged = [np.concatenate([per_rank[r][s] for r in range(dp)]) for s in range(steps)]
    assert np.array_equal(np.concatenate(merged), np.arange(steps * gbs))


def test_resume_with_another_dp_size_continues_the_order():
    a = PretrainingSampler(1000, 8, 2, 0, 2)
    for _ in range(3):
        a.next_step()
    b = PretrainingSampler(1000, 8, 1, 0, 4, consumed_samples=a.consumed_samples)
    assert b.next_step().reshape(-1).tolist() == [24, 25]


def test_sizes_that_do_not_divide_are_errors():
    with pytest.raises(ConfigError, match="not a multiple"):
        PretrainingSampler(100, 10, 3, 0, 1)
    with pytest.raises(ConfigError, match="dp_rank"):
        PretrainingSampler(100, 8, 1, 2, 2)
    with pytest.raises(DataError, match="empty"):
        PretrainingSampler(0, 8, 1, 0, 1)


def test_loader_yields_this_ranks_micro_batches(train):
    with PretrainingLoader(train, 8, 2, 1, 2, consumed_samples=16) as loader:
        step = next(loader)
        assert loader.consumed_samples == 24 and len(step) == 2
        assert step[0]["tokens"].shape == (2, 8) and step[0]["loss_mask"].dtype == np.float32
        want = train.fill_batch([20, 21, 22, 23])
        got = np.concatenate([m["tokens"] for m in step])
        assert np.array_equal(got, want["tokens"])
        assert loader.wait_time >= 0.0


def test_loader_wraps_or_stops(train):
    n = len(train)
    gbs = 50
    stop = PretrainingLoader(train, gbs, 10, 0, 1, wrap=False)
    assert len(list(stop)) == n // gbs and stop.consumed_samples == (n // gbs) * gbs
    wrap = PretrainingLoader(train, gbs, 10, 0, 1, consumed_samples=(n // gbs) * gbs)
    step = next(wrap)
    tokens = np.concatenate([m["tokens"] for m in step])
    idx = np.arange((n // gbs) * gbs, (n // gbs) * gbs + gbs) % n
    assert np.array_equal(tokens, train.fill_batch(idx)["tokens"])
    wrap.close()


def test_loader_reports_data_errors(tmp_path):
    write_dataset(tmp_path / "x", [[1]] * 40)
    ds = build_gpt_datasets(str(tmp_path / "x"), "1", 8, 1, None, None, eod_id=1, compressed_eod_mask=True,
                            eod_pad_length=2)[0]
    loader = PretrainingLoader(ds, 2, 1, 0, 1)
    with pytest.raises(DataError, match="eod_pad_length"):
        next(loader)
