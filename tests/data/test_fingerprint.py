"""A dataset's fingerprint names its sample order: a checkpoint compares it on resume.

Extending a run within the same number of epochs keeps every sample, so the fingerprint must not
change; crossing into another epoch count reshuffles, so it must."""
import numpy as np

from mfcore.data import IndexedDatasetBuilder, build_gpt_datasets


def _dataset(tmp_path, name, n_docs=20, seed=0):
    rng = np.random.default_rng(seed)
    prefix = str(tmp_path / name)
    with IndexedDatasetBuilder(prefix, np.uint16) as b:
        for _ in range(n_docs):
            b.add_document(rng.integers(1, 500, size=int(rng.integers(20, 60)), dtype=np.uint16))
    return prefix


def _train(blend, num_train, tmp_path):
    train, _, _ = build_gpt_datasets(blend, "100,0,0", 16, 1234, [num_train, 0, 0], str(tmp_path / "cache"))
    return train


def test_fingerprint_stable_when_run_is_extended_within_an_epoch(tmp_path):
    prefix = _dataset(tmp_path, "a")
    short, longer = _train(prefix, 10, tmp_path), _train(prefix, 30, tmp_path)
    assert short.fingerprint() == longer.fingerprint()
    np.testing.assert_array_equal(short[7]["tokens"], longer[7]["tokens"])


def test_fingerprint_changes_when_the_epoch_count_changes(tmp_path):
    prefix = _dataset(tmp_path, "a")
    one_epoch = _train(prefix, 10, tmp_path)
    many_epochs = _train(prefix, 10 * len(one_epoch), tmp_path)
    assert one_epoch.fingerprint() != many_epochs.fingerprint()


def test_fingerprint_changes_with_seed_and_data(tmp_path):
    a, b = _dataset(tmp_path, "a", seed=0), _dataset(tmp_path, "b", seed=1)
    base = _train(a, 10, tmp_path).fingerprint()
    assert _train(b, 10, tmp_path).fingerprint() != base
    other_seed, _, _ = build_gpt_datasets(a, "100,0,0", 16, 99, [10, 0, 0], str(tmp_path / "cache"))
    assert other_seed.fingerprint() != base


def test_blend_fingerprint_stable_when_run_is_extended(tmp_path):
    a, b = _dataset(tmp_path, "a", n_docs=60, seed=0), _dataset(tmp_path, "b", n_docs=60, seed=1)
    blend = ["30", a, "70", b]
    short, longer = _train(blend, 12, tmp_path), _train(blend, 24, tmp_path)
    assert short.fingerprint() == longer.fingerprint()
    for i in range(12):
        np.testing.assert_array_equal(short[i]["tokens"], longer[i]["tokens"])
