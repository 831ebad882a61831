"""Fuzz the index-cache entries the C++ engine maps (atheris, libFuzzer flags pass through).

    .venv/bin/python tools/fuzz_index_cache.py -runs=100000 -seed=1    # the long run
    .venv/bin/python tools/fuzz_index_cache.py -runs=300               # the bounded run of the tests

Beside tools/fuzz_indexed.py (the .bin/.idx parser): one small dataset's cache entry is built once;
each input copies it to a fresh cache directory, perturbs it (values of one array at fuzz-chosen
positions, or raw bytes of one .npy file, header included) and opens and reads every sample. An
independent Python oracle, written here from the cache's contract, says whether the perturbed values
are sound; the engine must then map them (sound) or rebuild the entry (not sound: the samples equal
the original ones). Reading may also refuse a sound-looking entry with SampleEngineError naming it;
anything else (a signal, another exception, a wrong verdict) stops the run with a crash-* input.
"""
import os
import shutil
import sys
import tempfile

import atheris
import numpy as np

with atheris.instrument_imports():
    from mfcore.data import SampleEngineError, build_gpt_datasets

NAMES = ("document_index", "sample_index", "shuffle_index")
ARGS = ("98,2,0", 16, 3, [400, 5, 0])


def oracle(arrays, sizes, documents) -> bool:
    """True when the arrays are sound: the cache contract, independent of the C++ check."""
    docs, rows, shuffle = (arrays[n] for n in NAMES)
    if docs.size and (docs.min() < documents[0] or docs.max() >= documents[1]):
        return False
    d, o = rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64)
    if d.min() < 0 or d.max() >= docs.size:
        return False
    if (np.diff(d) < 0).any() or ((np.diff(d) == 0) & (np.diff(o) < 0)).any():
        return False
    lengths = sizes[docs[d]]
    if (o < -1).any() or (o > lengths).any():
        return False
    n = shuffle.size
    return bool(shuffle.size == 0 or (shuffle.min() >= 0 and shuffle.max() < n and np.unique(shuffle).size == n))


class Scene:
    """A dataset, its pristine cache entry and the samples it gives."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mfcore-fuzz-cache-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        rng = np.random.default_rng(0)
        from mfcore.data import IndexedDatasetBuilder
        self.prefix = os.path.join(self.dir, "d")
        builder = IndexedDatasetBuilder(self.prefix, np.uint16)
        for _ in range(60):
            builder.add_document(rng.integers(1, 1000, rng.integers(1, 40)).astype(np.uint16))
        builder.finalize()
        first = build_gpt_datasets(self.prefix, *ARGS, os.path.join(self.dir, "pristine"))[0]
        self.entry = os.path.basename(first.cache_path)
        self.pristine = first.cache_path
        self.expect = np.asarray(first.text(range(len(first)))).copy()
        self.arrays = {n: np.load(os.path.join(first.cache_path, n + ".npy")) for n in NAMES}
        self.documents = first._core.documents  # the split's [begin, end) document ids
        from mfcore.data import IndexedDataset
        self.sizes = np.asarray(IndexedDataset(self.prefix).sequence_lengths, np.int64)
        self.count = 0

    def fresh_cache(self) -> str:
        self.count += 1
        cache = os.path.join(self.dir, f"c{self.count}")
        shutil.copytree(self.pristine, os.path.join(cache, self.entry))
        return cache


SCENE = None


def perturb_values(fdp, entry: str):
    name = fdp.PickValueInList(list(NAMES))
    a = SCENE.arrays[name].copy()
    flat = a.reshape(-1)
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        at = fdp.ConsumeIntInRange(0, flat.size - 1)
        info = np.iinfo(flat.dtype)
        big = fdp.ConsumeBool()
        value = fdp.ConsumeIntInRange(int(info.min), int(info.max)) if big else int(flat[at]) + fdp.ConsumeIntInRange(-3, 3)
        flat[at] = np.clip(value, info.min, info.max)
    np.save(os.path.join(entry, name + ".npy"), a)
    return {**SCENE.arrays, name: a}


def perturb_bytes(fdp, entry: str):
    path = os.path.join(entry, fdp.PickValueInList(list(NAMES)) + ".npy")
    raw = bytearray(open(path, "rb").read())
    at = fdp.ConsumeIntInRange(0, len(raw) - 1)
    patch = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 8))
    raw[at:at + len(patch)] = patch
    with open(path, "wb") as f:
        f.write(raw)
    return None  # no oracle: whatever maps must read safely


def test_one_input(data: bytes) -> None:
    global SCENE
    SCENE = SCENE or Scene()
    fdp = atheris.FuzzedDataProvider(data)
    cache = SCENE.fresh_cache()
    entry = os.path.join(cache, SCENE.entry)
    arrays = perturb_values(fdp, entry) if fdp.ConsumeIntInRange(0, 3) else perturb_bytes(fdp, entry)
    ds = build_gpt_datasets(SCENE.prefix, *ARGS, cache)[0]
    if arrays is not None:
        sound = oracle(arrays, SCENE.sizes, SCENE.documents)
        assert ds.built == (not sound), ("verdict", sound, ds.built)
    try:
        text = np.asarray(ds.text(range(len(ds))))
    except SampleEngineError as e:
        assert not ds.built and SCENE.entry in str(e), str(e)
    else:
        if ds.built:
            assert np.array_equal(text, SCENE.expect)
    del ds
    shutil.rmtree(cache)


def main(argv=None) -> int:
    """Fuzz in a child process (libFuzzer exits without Python cleanup); the parent removes the scratch."""
    global SCENE
    SCENE = Scene()
    pid = os.fork()
    if pid == 0:
        atheris.Setup(list(argv or sys.argv), test_one_input)
        atheris.Fuzz()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    shutil.rmtree(SCENE.dir, ignore_errors=True)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
