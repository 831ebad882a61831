"""GPT sample engine: cold index build, warm open and sample throughput, side by side with a
pure-numpy implementation of the same spec (written here) and memcpy of the same bytes.

    .venv/bin/python benchmarks/bench_gpt_samples.py [--tokens 37e6] [--samples 50000,1000000,10000000]

Builds a uint16 dataset of ~37M tokens (documents of log-normal length, mean ~1000 tokens, EOD
appended) in benchmarks/_work/, then for each sample count (seq_length 4096):
  * cold build: mfcore without a cache (first of three builds, paying for fresh memory, and the
    best), with one (dataset ready; entries of 64 MB and more are
    written in the background) and until the cache entry is written and fsynced, vs numpy
    (RandomState shuffles, cumsum + searchsorted sample index) — the arrays are checked equal;
  * warm open: mfcore mapping its cache (no load, no copy) vs numpy.load of the same arrays;
then random samples/s (tokens only; full samples with labels, loss mask, position ids and the
compressed EOD mask, reset options and EOD loss masking on), single thread and all threads, against a
numpy per-sample implementation and memcpy of the same output bytes; a 2-dataset 0.5/0.5 blend of
1M samples; and a blend of 1,000 small datasets. Everything in _work/ is deleted at the end.
Goals (issue 4): cold build of 10M samples <= 0.5 s; warm open <= 50 ms; full samples >= 100k/s with
all threads; a blend of 1,000 datasets cold in <= 10 s.
"""
import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np

from mfcore import _core
from mfcore.data import IndexedDataset, IndexedDatasetBuilder, build_gpt_datasets, wait_for_index_cache

WORK = Path(__file__).resolve().parent / "_work" / "gpt"
L, SEED, EOD = 4096, 1234, 0


def make_dataset(prefix: Path, tokens: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = np.maximum(rng.lognormal(6.5, 0.8, size=int(tokens / 900) + 16).astype(np.int64), 2)
    lengths = lengths[: np.searchsorted(np.cumsum(lengths), tokens) + 1]
    data = rng.integers(1, 50000, size=int(lengths.sum()), dtype=np.uint16)
    ends = np.cumsum(lengths)
    data[ends - 1] = EOD
    with IndexedDatasetBuilder(prefix, "uint16") as b:
        for s, e in zip(ends - lengths, ends):
            b.add_document(data[s:e])


# ---- the same spec in pure numpy (the baseline) -------------------------------------------------
def numpy_indices(sizes: np.ndarray, num_samples: int, seed: int = SEED, X: int = 1):
    T = int(sizes.sum(dtype=np.int64))
    E = max(1, -(-(num_samples * L + X) // T))
    per_epoch, before_last = (T - X) // L, ((E - 1) * T - X) // L
    separate = E > 1 and num_samples - before_last < int(0.80 * per_epoch)
    rs = np.random.RandomState(seed)
    docs = np.arange(len(sizes), dtype=np.int32)
    if separate:
        first, last = np.tile(docs, E - 1), docs.copy()
        rs.shuffle(first)
        rs.shuffle(last)
        doc_idx = np.concatenate([first, last])
    else:
        doc_idx = np.tile(docs, E)
        rs.shuffle(doc_idx)
    cum = np.zeros(len(doc_idx) + 1, dtype=np.int64)
    np.cumsum(sizes[doc_idx], out=cum[1:])
    n = (E * T - X) // L
    last_token = np.arange(1, n + 1, dtype=np.int64) * L + X - 1  # last token of sample r - 1
    d = np.searchsorted(cum, last_token, side="right") - 1
    sample_idx = np.zeros((n + 1, 2), dtype=np.int32)
    sample_idx[1:, 0] = d
    sample_idx[1:, 1] = last_token - X + 1 - cum[d]
    first = before_last if separate else n
    a = np.arange(first, dtype=np.uint32)
    rs.shuffle(a)
    b = np.arange(first, n, dtype=np.uint32)
    rs.shuffle(b)
    return doc_idx, sample_idx, np.concatenate([a, b])


def numpy_sample(ds, doc_idx, sample_idx, shuffle, i: int, full: bool):
    """Megatron's __getitem__ on numpy: text, then the fields (reset options, EOD loss masking)."""
    j = shuffle[i]
    (d0, o0), (d1, o1) = sample_idx[j], sample_idx[j + 1]
    parts = [ds.get(int(doc_idx[d0]), int(o0))] if d0 != d1 else [ds.get(int(doc_idx[d0]), int(o0), int(o1 - o0 + 1))]
    if d0 != d1:
        parts += [ds.get(int(doc_idx[d])) for d in range(d0 + 1, d1)]
        parts.append(ds.get(int(doc_idx[d1]), 0, int(o1 + 1)))
    text = np.concatenate(parts).astype(np.int32)
    if not full:
        return text
    tokens, labels = text[:-1], text[1:]
    loss_mask = np.ones(L, np.float32)
    loss_mask[tokens == EOD] = 0.0
    eods = np.flatnonzero(tokens == EOD)
    starts = np.zeros(L, np.int64)
    starts[eods[eods + 1 < L] + 1] = eods[eods + 1 < L] + 1
    position_ids = (np.arange(L) - np.maximum.accumulate(starts)).astype(np.int32)
    ends = np.append(eods + 1, L)[:128]
    actual = np.pad(ends, (0, 128 - len(ends)), constant_values=L).astype(np.int32)
    return tokens, labels, loss_mask, position_ids, actual


def timed(fn, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def row(label, mine, base, unit, better="lower"):
    ratio = (base / mine if better == "lower" else mine / base) if mine and base else float("nan")
    print(f"  {label:<44} {mine:>12.4g} {base:>12.4g}  {unit:<10} x{ratio:.1f}")


def bench_build(prefix: Path, n: int, sizes: np.ndarray) -> None:
    cache = WORK / f"cache-{n}"
    shutil.rmtree(cache, ignore_errors=True)

    def open_train(cache_dir):
        return build_gpt_datasets(str(prefix), "1", L, SEED, [n, 0, 0], cache_dir)[0]

    # The first build of a process pays for memory the VM has not backed yet (0.25-2 ms per fresh
    # MB here); repeats reuse freed pages, as a long-running process would: both are shown.
    walls, cpus = [], []
    for _ in range(3):
        c0, t0 = time.process_time(), time.perf_counter()
        open_train(None)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    t_cold, train = timed(lambda: open_train(str(cache)))
    t0 = time.perf_counter()
    wait_for_index_cache()
    t_synced = t_cold + time.perf_counter() - t0
    c0 = time.process_time()
    t_numpy, (doc, smp, shf) = timed(lambda: numpy_indices(sizes, n))
    cpu_numpy = time.process_time() - c0
    assert np.array_equal(train.document_index, doc) and np.array_equal(train.sample_index, smp)
    assert np.array_equal(train.shuffle_index, shf), "numpy baseline and mfcore disagree"
    for name, arr in (("doc", doc), ("smp", smp), ("shf", shf)):
        np.save(WORK / f"np-{name}.npy", arr)
    del train, doc, smp, shf
    t_warm, warm = timed(lambda: build_gpt_datasets(str(prefix), "1", L, SEED, [n, 0, 0], str(cache)), repeat=5)
    assert not warm[0].built
    t_load, _ = timed(lambda: [np.load(WORK / f"np-{k}.npy") for k in ("doc", "smp", "shf")], repeat=3)
    print(f"{n:,} samples (seq_length {L}, {warm[0].num_epochs} epochs, "
          f"{len(warm[0].document_index):,} document-index entries)      mfcore        numpy")
    row("cold build, no cache, first of 3 (s)", walls[0], t_numpy, "s")
    row("cold build, no cache, best of 3 (s)", min(walls), t_numpy, "s")
    row("cold build, no cache (CPU-s of the best)", cpus[walls.index(min(walls))], cpu_numpy, "CPU-s")
    row("cold build with cache: dataset ready (s)", t_cold, t_numpy, "s")
    row("  ... and cache entry written + fsynced (s)", t_synced, t_numpy, "s")
    row("warm open (ms)", t_warm * 1e3, t_load * 1e3, "ms")


def cpu_throughput(fn, count, repeat=3):
    """Samples per CPU-second of this process (all threads): meaningful on a shared, loaded machine."""
    fn()
    c0 = time.process_time()
    for _ in range(repeat):
        fn()
    return repeat * count / (time.process_time() - c0)


def throughput(fn, count):
    fn()  # warm-up: page faults of the mapping and the output buffers
    t, _ = timed(fn, repeat=2)
    return count / t


def bench_samples(prefix: Path, n: int) -> None:
    common = dict(eod_id=EOD, eod_mask_loss=True, reset_position_ids=True, reset_attention_mask=True,
                  compressed_eod_mask=True)
    cache = str(WORK / f"cache-{n}")
    train = build_gpt_datasets(str(prefix), "1", L, SEED, [n, 0, 0], cache, **common)[0]
    one = build_gpt_datasets(str(prefix), "1", L, SEED, [n, 0, 0], cache, threads=1, **common)[0]
    ds = IndexedDataset(prefix)
    idx = np.random.default_rng(0).integers(0, len(train), size=4096)
    batch, text = train.empty_batch(len(idx)), np.empty((len(idx), L + 1), np.int32)
    doc, smp, shf = (np.asarray(a) for a in (train.document_index, train.sample_index, train.shuffle_index))
    few = idx[:400]
    np_text = throughput(lambda: [numpy_sample(ds, doc, smp, shf, int(i), False) for i in few], len(few))
    np_full = throughput(lambda: [numpy_sample(ds, doc, smp, shf, int(i), True) for i in few], len(few))
    src = np.frombuffer(ds.bin_bytes() if hasattr(ds, "bin_bytes") else ds._bin, np.uint8)
    out_full = np.empty(len(idx) * (4 * L * 4 + 128 * 4), np.uint8)
    starts = np.random.default_rng(1).integers(0, len(src) - 4 * L * 4 - 512, size=len(idx))
    chunk = 4 * L * 4 + 128 * 4

    def memcpy_full():
        for k, s in enumerate(starts):
            out_full[k * chunk:(k + 1) * chunk] = src[s:s + chunk]

    mem = throughput(memcpy_full, len(idx))
    print(f"random samples/s, {n:,}-sample dataset, {_core.hardware_threads()} threads       mfcore     baseline")
    row("tokens only, 1 thread   (vs numpy)", throughput(lambda: one.text(idx), len(idx)), np_text, "samples/s", "higher")
    row("tokens only, all threads (vs numpy)", throughput(lambda: train.text(idx), len(idx)), np_text, "samples/s",
        "higher")
    row("full samples, 1 thread   (vs numpy)", throughput(lambda: one.fill_batch(idx, batch), len(idx)), np_full,
        "samples/s", "higher")
    row("full samples, all threads (vs numpy)", throughput(lambda: train.fill_batch(idx, batch), len(idx)), np_full,
        "samples/s", "higher")
    row("full samples, all threads (vs memcpy)", throughput(lambda: train.fill_batch(idx, batch), len(idx)), mem,
        "samples/s", "higher")
    row("full samples per CPU-second (vs numpy)", cpu_throughput(lambda: train.fill_batch(idx, batch), len(idx)),
        cpu_throughput(lambda: [numpy_sample(ds, doc, smp, shf, int(i), True) for i in few], len(few), 1),
        "samples/s", "higher")
    del text


def numpy_blending(weights, size):
    """The greedy assignment vectorised over datasets (the loop over samples stays in Python)."""
    w = np.asarray(weights, np.float64) / np.sum(weights)
    count = np.zeros(len(w), np.int64)
    which, sample = np.empty(size, np.int16), np.empty(size, np.int64)
    for s in range(size):
        k = int(np.argmax(w * max(float(s), 1.0) - count))
        which[s], sample[s] = k, count[k]
        count[k] += 1
    return which, sample


def bench_blend(prefixes, n: int) -> None:
    cache = WORK / "cache-blend"
    shutil.rmtree(cache, ignore_errors=True)
    blend = ["0.5", str(prefixes[0]), "0.5", str(prefixes[1])]
    t_cold, (train, _, _) = timed(lambda: build_gpt_datasets(blend, "1", L, SEED, [n, 0, 0], str(cache)))
    sizes = [IndexedDataset(p).sequence_lengths for p in prefixes]
    members = _core.blend_member_sizes([0.5, 0.5], n)
    few = min(200_000, n)  # the Python-level greedy loop is slow: time a prefix and scale linearly
    t_np_members = sum(timed(lambda s=s, m=m: numpy_indices(s, m))[0] for s, m in zip(sizes, members))
    t_np_blend, (which, _) = timed(lambda: numpy_blending([0.5, 0.5], few))
    assert np.array_equal(train.dataset_index[:few], which)
    t_warm, _ = timed(lambda: build_gpt_datasets(blend, "1", L, SEED, [n, 0, 0], str(cache)), repeat=5)
    print(f"2-dataset 0.5/0.5 blend of {n:,} samples                           mfcore        numpy")
    row("cold build incl. members (s)", t_cold, t_np_members + t_np_blend * (len(train) / few), "s")
    row("warm open (ms)", t_warm * 1e3, float("nan"), "ms")


def bench_many(count: int, n: int) -> None:
    root = WORK / "many"
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    blend = []
    for k in range(count):
        prefix = root / f"d{k}"
        with IndexedDatasetBuilder(prefix, "uint16") as b:
            for length in rng.integers(200, 3000, size=12):
                b.add_document(rng.integers(1, 50000, size=int(length), dtype=np.uint16))
        blend += ["1", str(prefix)]
    cache = root / "cache"
    t_cold, (train, _, _) = timed(lambda: build_gpt_datasets(blend, "1", L, SEED, [n, 0, 0], str(cache)))
    t_warm, _ = timed(lambda: build_gpt_datasets(blend, "1", L, SEED, [n, 0, 0], str(cache)))
    print(f"blend of {count:,} small datasets, {len(train):,} samples                 mfcore")
    print(f"  {'cold build (s)':<44} {t_cold:>12.4g}")
    print(f"  {'warm open (s)':<44} {t_warm:>12.4g}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=float, default=37e6)
    p.add_argument("--samples", default="50000,1000000,10000000")
    p.add_argument("--blend-samples", type=int, default=1_000_000)
    p.add_argument("--many", type=int, default=1000)
    p.add_argument("--many-samples", type=int, default=100_000)
    args = p.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    try:
        prefixes = [WORK / "a", WORK / "b", WORK / "c"]
        make_dataset(prefixes[0], args.tokens, 0)
        make_dataset(prefixes[1], args.tokens / 2, 1)
        make_dataset(prefixes[2], args.tokens / 2, 2)
        sizes = IndexedDataset(prefixes[0]).sequence_lengths
        print(f"dataset: {int(sizes.sum()):,} tokens in {len(sizes):,} documents; "
              f"{_core.hardware_threads()} hardware threads, load average {os.getloadavg()[0]:.1f}\n")
        for n in (int(s) for s in args.samples.split(",") if s):
            bench_build(prefixes[0], n, sizes)
            bench_samples(prefixes[0], n)
            print()
        if args.blend_samples:
            bench_blend(prefixes[1:], args.blend_samples)
            print()
        if args.many:
            bench_many(args.many, args.many_samples)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
