"""Indexed dataset engine: random-read throughput and merge speed, side by side with their baselines.

    .venv/bin/python benchmarks/bench_indexed.py [--gb 2.1] [--read-mb 256] [--repeats 7]

Builds a >= 2 GB int32 dataset in benchmarks/_work/indexed-PID/ (three parts with 2 KB, 16 KB and 1 MB sequences,
merged into one), warms the page cache, then for each sequence size reads random sequences with
  * mfcore read_into   - the C++ reader's bulk call (bounds-checked, GIL released), batches of ~4 MB
  * mfcore get()+copy  - one Python call per sequence, copying its zero-copy view
  * numpy.memmap       - a plain memmap reader (slice + copy per sequence, Megatron style)
  * raw memcpy         - the limit: memcpy of the same byte ranges from the same mapping, in C, no checks
and times merge against cp of the same bytes. Everything is deleted at the end. Goals (issue 3): read_into
>= 80% of memcpy GB/s for 16 KB reads; merge >= 70% of cp speed.
"""
import argparse
import ctypes
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mfcore.data import IndexedDataset, IndexedDatasetBuilder, merge_datasets

# benchmarks/_work/ is shared by every benchmark: this one only ever touches its own subdirectory.
WORK = Path(__file__).resolve().parent / "_work" / f"indexed-{os.getpid()}"
SIZES = {"2 KB": 2 << 10, "16 KB": 16 << 10, "1 MB": 1 << 20}
BATCH_BYTES = 4 << 20
MEMCPY_C = r"""
#include <stdint.h>
#include <string.h>
void memcpy_ranges(const uint8_t* base, const int64_t* starts, const int64_t* sizes, int64_t n, uint8_t* out) {
  for (int64_t k = 0; k < n; ++k) { memcpy(out, base + starts[k], (size_t)sizes[k]); out += sizes[k]; }
}
"""


def build_memcpy() -> ctypes.CDLL:
    src, lib = WORK / "memcpy_ranges.c", WORK / "memcpy_ranges.so"
    src.write_text(MEMCPY_C)
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    fn = ctypes.CDLL(str(lib)).memcpy_ranges
    fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64, ctypes.c_void_p]
    return fn


def write_part(prefix: Path, seq_bytes: int, total_bytes: int) -> float:
    """Write int32 sequences of `seq_bytes` each, `total_bytes` in all; returns seconds."""
    tokens = np.random.default_rng(0).integers(0, 2**31 - 1, 1 << 22, dtype=np.int32)
    n = seq_bytes // 4
    t = time.perf_counter()
    with IndexedDatasetBuilder(prefix, np.int32) as b:
        for k in range(max(1, total_bytes // seq_bytes)):
            start = (k * 7919 * n) % (tokens.size - n)
            b.add_document(tokens[start:start + n])
    return time.perf_counter() - t


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def time_merge_vs_cp(parts, out: Path):
    t = time.perf_counter()
    merge_datasets(out, parts)
    merge_s = time.perf_counter() - t
    copy_dir = WORK / "cp"
    copy_dir.mkdir()
    t = time.perf_counter()
    for p in parts:
        for ext in (".bin", ".idx"):
            subprocess.run(["cp", f"{p}{ext}", str(copy_dir)], check=True)
    cp_s = time.perf_counter() - t
    for f in copy_dir.iterdir():  # merge's output is durable (fsync), so make cp's too for a fair figure
        fsync_file(f)
    cp_sync_s = time.perf_counter() - t
    shutil.rmtree(copy_dir)
    return merge_s, cp_s, cp_sync_s


def best_of(methods, repeats):
    """Best time of each method; the methods take turns so a noisy moment on the shared CPU hits all."""
    best = {name: float("inf") for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def read_methods(ds: IndexedDataset, mm: np.memmap, memcpy, idx: np.ndarray, out: np.ndarray):
    """The four readers over the same random sequence indices, each filling `out` batch by batch."""
    lengths = ds.sequence_lengths[idx].astype(np.int64)
    starts = ds.sequence_pointers[idx].astype(np.int64)
    per_batch = max(1, BATCH_BYTES // int(lengths[0] * 4))
    batches = [slice(k, k + per_batch) for k in range(0, idx.size, per_batch)]
    zeros = np.zeros(idx.size, np.int64)
    out_u8 = out.view(np.uint8)
    base = ds._bin.ctypes.data  # the reader's own mapping: the limit reads exactly what read_into reads
    nbytes = lengths * 4

    def cpp_bulk():
        for s in batches:
            ds.read_into(idx[s], zeros[s], lengths[s], out)

    def cpp_get():
        for s in batches:
            pos = 0
            for i, n in zip(idx[s].tolist(), lengths[s].tolist()):
                out[pos:pos + n] = ds.get(i)
                pos += n

    def numpy_memmap():
        for s in batches:
            pos = 0
            for p, n in zip(starts[s].tolist(), nbytes[s].tolist()):
                out_u8[pos:pos + n] = mm[p:p + n]
                pos += n

    def raw_memcpy():
        for s in batches:
            st, sz = starts[s], nbytes[s]
            memcpy(base, st.ctypes.data, sz.ctypes.data, st.size, out.ctypes.data)

    return {"mfcore read_into": cpp_bulk, "mfcore get()+copy": cpp_get, "numpy.memmap": numpy_memmap,
            "raw memcpy (limit)": raw_memcpy}


def touch_pages(arr: np.ndarray) -> None:
    """Fault every page of a mapping in once, so no method pays the first-touch cost for another."""
    int(arr[::4096].sum())


def bench_reads(prefix: Path, classes, read_bytes: int, memcpy, repeats: int):
    ds = IndexedDataset(prefix)
    mm = np.memmap(f"{prefix}.bin", dtype=np.uint8, mode="r")
    touch_pages(ds._bin)
    touch_pages(mm)
    rng = np.random.default_rng(1)
    rows = []
    for label, (first, count) in classes.items():
        reads = max(8, read_bytes // SIZES[label])
        idx = rng.integers(first, first + count, reads)
        out = np.empty(min(BATCH_BYTES, SIZES[label] * reads) // 4 + SIZES[label] // 4, np.int32)
        methods = read_methods(ds, mm, memcpy, idx, out)
        timings = best_of(methods, repeats)
        limit = timings["raw memcpy (limit)"]
        for name, sec in timings.items():
            rows.append((label, name, reads / sec, reads * SIZES[label] / sec / 1e9, limit / sec))
    del mm
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=2.1, help="dataset size in GB (default 2.1)")
    ap.add_argument("--read-mb", type=int, default=256, help="MB read per size and method (default 256)")
    ap.add_argument("--repeats", type=int, default=7, help="timed rounds per method, best kept (default 7)")
    args = ap.parse_args(argv)
    WORK.mkdir(parents=True)
    try:
        memcpy = build_memcpy()
        part_bytes = int(args.gb * 1e9 / len(SIZES))
        parts, classes, write_s, first = [], {}, 0.0, 0
        for label, size in SIZES.items():
            prefix = WORK / f"part_{size}"
            write_s += write_part(prefix, size, part_bytes)
            count = len(IndexedDataset(prefix))
            parts.append(prefix)
            classes[label] = (first, count)
            first += count
        total = sum(os.path.getsize(f"{p}.bin") for p in parts)
        merge_s, cp_s, cp_sync_s = time_merge_vs_cp(parts, WORK / "all")
        rows = bench_reads(WORK / "all", classes, args.read_mb << 20, memcpy, args.repeats)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    print(f"dataset: {total / 1e9:.2f} GB int32 in {len(SIZES)} parts; builder wrote it at {total / write_s / 1e9:.2f} GB/s")
    print(f"\n{'reads':<7}{'method':<22}{'reads/s':>12}{'GB/s':>9}{'% of memcpy':>13}")
    for label, name, rps, gbs, frac in rows:
        print(f"{label:<7}{name:<22}{rps:>12,.0f}{gbs:>9.2f}{frac:>12.0%}")
    print(f"\n{'copy':<29}{'seconds':>9}{'GB/s':>9}{'% of cp':>13}")
    for name, sec in [("mfcore merge (fsynced)", merge_s), ("cp", cp_s), ("cp + fsync", cp_sync_s)]:
        print(f"{name:<29}{sec:>9.2f}{total / sec / 1e9:>9.2f}{cp_s / sec:>12.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
