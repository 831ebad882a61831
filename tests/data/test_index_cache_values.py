"""Issue 21 row 1: index-cache entries whose values were edited (same shapes) are checked before the
C++ engine trusts them and rebuilt with a warning; a damaged entry that bypasses the check (swapped
in after the open) is an error naming the entry, never a wild read. Each case runs in a subprocess
so a segfault shows as a signal exit, not as a dead test runner."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mfcore.data import build_gpt_datasets
from tests.data.test_gpt_dataset import random_docs, write_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def dataset(tmp_path):
    write_dataset(tmp_path / "x", random_docs(np.random.default_rng(0), 200))
    return str(tmp_path / "x")


def open_train(prefix, cache):
    return build_gpt_datasets(prefix, "98,2,0", 16, 3, [500, 5, 0], cache)[0]


OPEN_AND_READ = textwrap.dedent("""
    import sys
    import numpy as np
    from mfcore.data import build_gpt_datasets
    d = build_gpt_datasets(sys.argv[1], "98,2,0", 16, 3, [500, 5, 0], sys.argv[2])[0]
    print("built" if d.built else "mapped", int(np.asarray(d.text(range(len(d)))).sum()))
""")


def run_victim(prefix, cache):
    return subprocess.run([sys.executable, "-c", OPEN_AND_READ, prefix, cache], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def edit(path, name, change):
    """Rewrites one .npy of the entry in place with the same dtype and shape."""
    f = os.path.join(path, name + ".npy")
    a = np.load(f)
    change(a)
    np.save(f, a)


EDITS = {
    "sample_index_huge": ("sample_index", lambda a: a.__setitem__((slice(None), 0), 2**30)),
    "sample_index_negative": ("sample_index", lambda a: a.__setitem__((3, 0), -5)),
    "sample_offset_past_document": ("sample_index", lambda a: a.__setitem__((4, 1), 10**6)),
    "sample_index_backwards": ("sample_index", lambda a: a.__setitem__((5, 0), 0)),
    "document_id_out_of_split": ("document_index", lambda a: a.__setitem__(0, 10**6)),
    "document_id_negative": ("document_index", lambda a: a.__setitem__(7, -1)),
    "shuffle_out_of_range": ("shuffle_index", lambda a: a.__setitem__(0, 10**6)),
    "shuffle_not_a_permutation": ("shuffle_index", lambda a: a.__setitem__(1, a[0])),
}


@pytest.mark.parametrize("case", sorted(EDITS))
def test_edited_entry_is_rebuilt_with_a_warning(dataset, tmp_path, case):
    cache = str(tmp_path / "cache")
    first = open_train(dataset, cache)
    expect = int(np.asarray(first.text(range(len(first)))).sum())
    path = first.cache_path
    del first
    name, change = EDITS[case]
    edit(path, name, change)
    r = run_victim(dataset, cache)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["built", str(expect)]
    assert "warning: the index cache entry " + path + " is damaged" in r.stderr
    assert name in r.stderr
    # the rebuilt entry is trusted again (mapped) and gives the same samples
    again = run_victim(dataset, cache)
    assert again.stdout.split() == ["mapped", str(expect)] and "damaged" not in again.stderr


def test_unchanged_entry_is_mapped_without_a_value_check(dataset, tmp_path):
    cache = str(tmp_path / "cache")
    path = open_train(dataset, cache).cache_path
    stamps = json.load(open(os.path.join(path, "description.json")))["stamps"]
    assert sorted(stamps) == ["document_index.npy", "sample_index.npy", "shuffle_index.npy"]
    assert not open_train(dataset, cache).built


def test_copied_entry_with_sound_values_is_used(dataset, tmp_path):
    """A copy changes the stamps: the values are checked once, pass, and the entry is mapped."""
    cache = str(tmp_path / "cache")
    first = open_train(dataset, cache)
    path, expect = first.cache_path, first.text(range(len(first)))
    del first
    stamps = json.load(open(os.path.join(path, "description.json")))["stamps"]
    edit(path, "shuffle_index", lambda a: None)  # rewritten with the same values
    again = open_train(dataset, cache)
    assert not again.built and np.array_equal(again.text(range(len(again))), expect)
    # checked once: the new stamp is recorded, the other files' stamps are unchanged
    restamped = json.load(open(os.path.join(path, "description.json")))["stamps"]
    assert restamped["shuffle_index.npy"] != stamps["shuffle_index.npy"]
    assert {k: v for k, v in restamped.items() if k != "shuffle_index.npy"} == \
        {k: v for k, v in stamps.items() if k != "shuffle_index.npy"}


SWAP_AFTER_OPEN = textwrap.dedent("""
    import os, sys
    import numpy as np
    from mfcore.data import build_gpt_datasets, SampleEngineError
    d = build_gpt_datasets(sys.argv[1], "98,2,0", 16, 3, [500, 5, 0], sys.argv[2])[0]
    rows = np.load(os.path.join(d.cache_path, "sample_index.npy"), mmap_mode="r+")
    rows[:, 0] = int(sys.argv[3])   # edited under the running engine (shared mapping)
    rows.flush()
    try:
        d.text(range(len(d)))
    except SampleEngineError as e:
        print("refused:", e)
""")


@pytest.mark.parametrize("value", [2**30, -3])
def test_damage_after_the_open_is_an_error_not_a_segfault(dataset, tmp_path, value):
    cache = str(tmp_path / "cache")
    open_train(dataset, cache)
    r = subprocess.run([sys.executable, "-c", SWAP_AFTER_OPEN, dataset, cache, str(value)], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert r.stdout.startswith("refused: the index cache entry ") and "is damaged: sample_index" in r.stdout


def test_edited_blending_entry_is_rebuilt(tmp_path):
    for k, seed in enumerate((1, 2)):
        write_dataset(tmp_path / f"d{k}", random_docs(np.random.default_rng(seed), 120))
    cache = str(tmp_path / "cache")
    blend = ["0.5", str(tmp_path / "d0"), "0.5", str(tmp_path / "d1")]
    first = build_gpt_datasets(blend, "1", 16, 3, [300, 0, 0], cache)[0]
    expect = first.text(range(len(first)))
    del first
    entry = [e for e in os.listdir(cache) if e.startswith("Blended") and not e.endswith(".lock")]
    assert len(entry) == 1
    edit(os.path.join(cache, entry[0]), "dataset_sample_index", lambda a: a.__setitem__(0, 10**9))
    again = build_gpt_datasets(blend, "1", 16, 3, [300, 0, 0], cache)[0]
    assert again.built and np.array_equal(again.text(range(len(again))), expect)


def test_bounded_cache_fuzz_run(tmp_path):
    """tools/fuzz_index_cache.py: perturbed entries are mapped when sound, else rebuilt; no crash."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "fuzz_index_cache.py"), "-runs=300", "-seed=7",
                           f"-artifact_prefix={tmp_path}/"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Done 300 runs" in proc.stderr and "is damaged" in proc.stderr
    assert not list(tmp_path.glob("crash-*"))
