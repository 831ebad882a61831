"""The on-disk index cache: warm starts map instead of building, several processes building at once,
stale/partial entries rebuilt, unwritable directories refused."""
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from mfcore.data import build_gpt_datasets, wait_for_index_cache
from mfcore.errors import DataError
from tests.data.test_gpt_dataset import random_docs, write_dataset


@pytest.fixture
def dataset(tmp_path):
    write_dataset(tmp_path / "x", random_docs(np.random.default_rng(0), 200))
    return str(tmp_path / "x")


def open_train(prefix, cache, n=500, seed=3):
    return build_gpt_datasets(prefix, "98,2,0", 16, seed, [n, 5, 0], cache)[0]


def test_second_open_maps_the_cached_arrays(dataset, tmp_path):
    cache = str(tmp_path / "cache")
    cold = open_train(dataset, cache)
    warm = open_train(dataset, cache)
    assert cold.built and not warm.built and warm.cache_path == cold.cache_path
    assert np.array_equal(cold.text(range(len(cold))), warm.text(range(len(warm))))
    files = sorted(os.listdir(cold.cache_path))
    assert files == ["description.json", "document_index.npy", "sample_index.npy", "shuffle_index.npy"]
    desc = json.load(open(os.path.join(cold.cache_path, "description.json")))
    assert desc["key"]["seq_length"] == 16 and desc["key"]["num_samples"] == 500
    assert desc["info"]["prefix"] == os.path.realpath(dataset)
    # plain numpy can inspect the cache
    assert np.array_equal(np.load(os.path.join(cold.cache_path, "shuffle_index.npy")), warm.shuffle_index)


def test_other_parameters_get_other_entries(dataset, tmp_path):
    cache = str(tmp_path / "cache")
    a, b = open_train(dataset, cache, seed=3), open_train(dataset, cache, seed=4)
    assert a.cache_path != b.cache_path and b.built


@pytest.mark.parametrize("damage", ["truncate", "delete", "description"])
def test_damaged_entry_is_rebuilt_not_used(dataset, tmp_path, damage):
    cache = str(tmp_path / "cache")
    first = open_train(dataset, cache)
    expect = first.text(range(len(first)))
    path = first.cache_path
    del first
    target = os.path.join(path, "sample_index.npy")
    if damage == "truncate":
        os.truncate(target, os.path.getsize(target) - 8)
    elif damage == "delete":
        os.remove(target)
    else:
        with open(os.path.join(path, "description.json"), "w") as f:
            f.write("{}")
    again = open_train(dataset, cache)
    assert again.built
    assert np.array_equal(again.text(range(len(again))), expect)


def test_partial_build_left_by_a_dead_process_is_cleaned(dataset, tmp_path):
    cache = str(tmp_path / "cache")
    entry = open_train(dataset, cache).cache_path
    os.rename(entry, entry + ".tmp-99999")  # as if the builder died before its rename
    again = open_train(dataset, cache)
    assert again.built and not os.path.exists(entry + ".tmp-99999")


def test_changed_dataset_gets_new_indices(dataset, tmp_path):
    cache = str(tmp_path / "cache")
    old = open_train(dataset, cache)
    write_dataset(dataset, random_docs(np.random.default_rng(5), 150))
    new = open_train(dataset, cache)
    assert new.built and new.cache_path != old.cache_path


def test_unwritable_cache_dir_is_a_clear_error(dataset, tmp_path):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        cache = str(blocker / "cache")  # root ignores permissions; a file in the path blocks anyone
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        cache = str(ro / "cache")
    with pytest.raises(DataError, match="cache directory"):
        open_train(dataset, cache)


def test_valid_entry_in_a_read_only_directory_is_used(dataset, tmp_path):
    cache = tmp_path / "cache"
    open_train(dataset, str(cache))
    os.chmod(cache, 0o500)
    try:
        assert not open_train(dataset, str(cache)).built
    finally:
        os.chmod(cache, 0o700)


WORKER = textwrap.dedent("""
    import sys, hashlib, time
    import numpy as np
    from mfcore.data import build_gpt_datasets
    prefix, cache, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
    while time.time() < start_at:  # all processes open at the same moment
        time.sleep(0.001)
    ds = build_gpt_datasets(prefix, "98,2,0", 16, 3, [150000, 5, 0], cache)[0]
    digest = hashlib.sha256(ds.text(np.arange(len(ds))).tobytes()).hexdigest()
    print(int(ds.built), digest)
""")


def test_processes_opening_together_build_once(dataset, tmp_path):
    cache = str(tmp_path / "cache")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    start_at = str(time.time() + 3.0)
    procs = [subprocess.Popen([sys.executable, str(script), dataset, cache, start_at], stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]
    results = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(int(r[0]) for r in results) == [0, 0, 0, 1]  # exactly one built
    assert len({r[1] for r in results}) == 1  # all see identical samples
    entries = [e for e in os.listdir(cache) if e.startswith("GPTDataset-train") and not e.endswith(".lock")]
    assert len(entries) == 1 and ".tmp-" not in entries[0]


def test_long_document_index_is_cached_as_uint16_and_served_as_int32(tmp_path):
    """Past 2^20 document-index entries the two-thread build keeps the ids as uint16 (up to 65,536
    documents) and the cache stores them so; `document_index` still gives the spec's int32, and a
    warm open serves the same samples as the cold build."""
    docs = random_docs(np.random.default_rng(1), 1000, max_len=18)
    write_dataset(tmp_path / "small", docs)
    cache = str(tmp_path / "cache")
    tokens = sum(len(d) for d in docs)
    n = (1100 * tokens) // 16  # ~1,100 epochs: ~1.1M document-index entries

    def open_it():
        return build_gpt_datasets(str(tmp_path / "small"), "1", 16, 7, [n, 0, 0], cache)[0]

    cold = open_it()
    warm = open_it()
    assert cold.built and not warm.built and len(cold.document_index) >= 2**20
    stored = np.load(os.path.join(cold.cache_path, "document_index.npy"), mmap_mode="r")
    assert stored.dtype == np.uint16
    assert cold.document_index.dtype == np.int32 and np.array_equal(cold.document_index, warm.document_index)
    assert np.array_equal(stored, warm.document_index)
    from mfcore import _core
    sizes = np.array([len(d) for d in docs], dtype=np.int32)
    seq = _core.build_gpt_indices(sizes, 0, len(docs), 16, 1, 7, n, True)  # the same two-thread build
    assert np.array_equal(seq["document_index"], warm.document_index)
    picks = np.random.default_rng(2).choice(len(warm), 2000, replace=False)
    assert np.array_equal(cold.text(picks), warm.text(picks))
    tokens_of = np.concatenate(docs)
    starts = np.concatenate([[0], np.cumsum([len(d) for d in docs])])
    i = int(picks[0])  # one sample rebuilt by hand from the indices, as the spec reads them
    j = warm.shuffle_index[i]
    (d0, o0), (d1, o1) = warm.sample_index[j], warm.sample_index[j + 1]
    ids = warm.document_index[d0:d1 + 1]
    parts = [tokens_of[starts[k]:starts[k + 1]] for k in ids]
    parts[-1] = parts[-1][:o1 + 1]
    parts[0] = parts[0][o0:]
    assert np.array_equal(np.concatenate(parts), warm.text([i])[0])


def test_large_entry_is_written_in_the_background_and_waited_for(dataset, tmp_path, monkeypatch):
    """Entries from MFCORE_INDEX_CACHE_ASYNC_BYTES up (64 MB by default; 0 here) are written by a
    background thread: the cold open serves its indices from memory, a second open waits for the
    entry and maps it, and wait_for_index_cache() returns once the files are complete."""
    monkeypatch.setenv("MFCORE_INDEX_CACHE_ASYNC_BYTES", "0")
    cache = str(tmp_path / "cache")
    cold = open_train(dataset, cache)
    warm = open_train(dataset, cache)  # blocks on the entry's lock until it is in place
    assert cold.built and not warm.built
    assert np.array_equal(cold.text(range(len(cold))), warm.text(range(len(warm))))
    wait_for_index_cache()
    files = sorted(os.listdir(cold.cache_path))
    assert files == ["description.json", "document_index.npy", "sample_index.npy", "shuffle_index.npy"]
    assert np.array_equal(np.load(os.path.join(cold.cache_path, "sample_index.npy")), cold.sample_index)
    assert not [e for e in os.listdir(cache) if ".tmp-" in e]


EXIT_AFTER_BUILD = textwrap.dedent("""
    import sys
    from mfcore.data import build_gpt_datasets
    ds = build_gpt_datasets(sys.argv[1], "98,2,0", 16, 3, [500, 5, 0], sys.argv[2])[0]
    print(int(ds.built))  # and exit at once: the background write must still complete
""")


def test_process_exit_waits_for_background_writes(dataset, tmp_path):
    cache = str(tmp_path / "cache")
    script = tmp_path / "exit_after_build.py"
    script.write_text(EXIT_AFTER_BUILD)
    env = dict(os.environ, MFCORE_INDEX_CACHE_ASYNC_BYTES="0")
    out = subprocess.run([sys.executable, str(script), dataset, cache], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ["1"], out.stderr
    again = open_train(dataset, cache)
    assert not again.built  # the entry the exiting process left is complete and valid
