"""The preprocessing run: read → chunks → worker pool → partial datasets → merge, resumable.

The main process reads records in one fixed order and cuts them into chunks of about ``chunk_mb``
of raw input. Workers tokenise chunks in parallel, each into its own partial dataset; at most a few
chunks per worker (four) are in flight, so memory stays bounded whatever the corpus size. Chunks are
recorded as finished in order, and the final datasets are assembled from the partials in chunk
order, which makes the output bytes independent of the number of workers.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple

from mfcore.data.preprocess import assemble
from mfcore.data.preprocess.encode import SpecVocab, choose_backend, find_eod_id, load_tokenizer, load_tokenizer_spec
from mfcore.data.preprocess.errors import InputError, OutputError, PreprocessError
from mfcore.data.preprocess.packing import PACK_MODES
from mfcore.data.preprocess.progress import Progress, Summary
from mfcore.data.preprocess.readers import CorpusReader, ReaderOptions, Record
from mfcore.data.preprocess.state import WorkState, fingerprint
from mfcore.data.preprocess.worker import ChunkStats, EncodeOptions, init_worker, partial_prefix, process_chunk


@dataclass
class PreprocessConfig:
    """Every option of ``mf-preprocess`` (the command line maps onto it one to one)."""

    inputs: Sequence[str]
    output_prefix: str
    tokenizer: str
    json_keys: Tuple[str, ...] = ("text",)
    append_eod: bool = False
    eod_id: Optional[int] = None
    dtype: str = "auto"
    workers: int = 1
    threads_per_worker: Optional[int] = None
    chunk_mb: Optional[float] = None  # None: input size / 64, within [1, 64] MiB
    reader: ReaderOptions = field(default_factory=ReaderOptions)
    invalid_utf8: str = "error"
    skip_bad_lines: bool = False
    seq_length: Optional[int] = None
    pack: str = "none"
    pad_id: Optional[int] = None
    output_format: str = "megatron"
    add_special_tokens: bool = False
    split_long: bool = True
    tokenizer_backend: str = "auto"   # auto | native | hf
    resume: bool = False
    allow_empty: bool = False         # an input without documents writes an empty dataset
    progress: Optional[bool] = None   # None: only on a terminal


def run(config: PreprocessConfig) -> Summary:
    """Runs the whole preprocessing; returns the summary (also the numbers the CLI prints)."""
    start = time.perf_counter()
    _check_options(config)
    _check_output_dir(config.output_prefix)
    spec = load_tokenizer_spec(config.tokenizer)
    backend, _, backend_note = choose_backend(spec, config.tokenizer, config.tokenizer_backend,
                                              config.add_special_tokens)
    # The native backend's checks already proved the spec sound; tokenizers is not loaded for it.
    tok = SpecVocab(spec) if backend == "native" else load_tokenizer(config.tokenizer)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    options = _encode_options(config, tok, vocab, backend)
    pad_id = _pad_id(config, tok)
    reader = CorpusReader(config.inputs, config.reader)
    chunk_bytes = _chunk_bytes(config.chunk_mb, reader.total_bytes)
    work_dir = config.output_prefix + ".mf-preprocess-work"
    # Neither the thread count nor the backend changes the output bytes: a run may resume with others.
    fp_options = {k: v for k, v in dataclasses.asdict(options).items() if k not in ("threads", "backend")}
    fp_options.update(chunk_bytes=chunk_bytes, reader=dataclasses.asdict(config.reader))
    state = WorkState.start(work_dir, fingerprint(reader.files, config.tokenizer, fp_options), config.resume)
    assemble.remove_dead_temporaries(config.output_prefix, config.json_keys)
    progress = Progress(reader.total_bytes, enabled=config.progress)
    totals = ChunkStats()
    with progress:
        chunks = _tokenize_all(reader, chunk_bytes, config.workers, options, state, progress, totals)
    if not sum(totals.documents.values()) and not config.allow_empty:
        raise InputError(f"{', '.join(reader.files)}: no documents in the input (empty, or every record "
                         "empty); pass --allow-empty to write an empty dataset")
    outputs: List[str] = []
    for key in config.json_keys:
        outputs += assemble.assemble_key(work_dir, chunks, key, config.output_prefix, options.dtype,
                                         config.output_format, config.pack, config.seq_length or 0, pad_id)
    state.remove()
    return Summary(totals, reader.total_bytes, time.perf_counter() - start, outputs, backend, backend_note)


def _check_options(config: PreprocessConfig) -> None:
    if config.workers < 1:
        raise PreprocessError(f"--workers must be at least 1, got {config.workers}")
    if config.pack not in PACK_MODES:
        raise PreprocessError(f"--pack must be one of {', '.join(PACK_MODES)}, got {config.pack!r}")
    if config.output_format not in assemble.OUTPUT_FORMATS:
        raise PreprocessError(f"--output-format must be one of {', '.join(assemble.OUTPUT_FORMATS)}")
    if config.pack != "none" and not (config.seq_length and config.seq_length > 0):
        raise PreprocessError(f"--pack {config.pack} needs a positive --seq-length")
    if config.output_format == "mindrecord" and config.pack == "none":
        raise PreprocessError("--output-format mindrecord writes seq_length + 1 blocks: give --seq-length "
                              "and --pack stitch|pad")
    if config.chunk_mb is not None and config.chunk_mb <= 0:
        raise PreprocessError(f"--chunk-mb must be positive, got {config.chunk_mb}")


def _check_output_dir(prefix: str) -> None:
    directory = os.path.dirname(os.path.abspath(prefix))
    if not os.path.isdir(directory):
        raise OutputError(f"{directory}: output directory does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"{directory}: output directory is not writable")


def _encode_options(config: PreprocessConfig, tok, vocab: int, backend: str) -> EncodeOptions:
    from mfcore.data import best_dtype

    eod = find_eod_id(tok, config.tokenizer, config.eod_id) if config.append_eod else None
    dtype = str(best_dtype(vocab)) if config.dtype == "auto" else config.dtype
    if config.output_format == "mindrecord":
        dtype = "int32"
    if dtype not in ("uint16", "int32"):
        raise PreprocessError(f"--dtype must be auto, uint16 or int32, got {config.dtype!r}")
    if dtype == "uint16" and vocab > 65536:
        raise PreprocessError(f"--dtype uint16 cannot hold ids of a {vocab}-token vocabulary; use int32")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # The native engine: --workers K means K encoding threads in all (one per worker process).
    # tokenizers: its thread pool in each worker shares out the CPUs.
    default_threads = 1 if backend == "native" else max(1, cpus // config.workers)
    threads = config.threads_per_worker or default_threads
    return EncodeOptions(config.tokenizer, tuple(config.json_keys), config.append_eod, eod,
                         config.add_special_tokens, config.split_long, dtype, config.invalid_utf8,
                         config.skip_bad_lines, threads, backend)


def _pad_id(config: PreprocessConfig, tok) -> int:
    if config.pad_id is not None:
        return config.pad_id
    if config.pack != "pad":
        return 0
    for name in ("<pad>", "<|pad|>", "[PAD]", "<｜▁pad▁｜>"):
        found = tok.token_to_id(name)
        if found is not None:
            return found
    return find_eod_id(tok, config.tokenizer, config.eod_id)


def _chunk_bytes(chunk_mb: Optional[float], total_bytes: int) -> int:
    """Chunks small enough to keep every worker busy to the end, large enough to merge few files.

    Depends on the input size only (not on ``--workers``), so a run resumes with any worker count.
    """
    if chunk_mb is not None:
        return max(1, int(chunk_mb * (1 << 20)))
    return min(max(total_bytes // 64, 1 << 20), 64 << 20)


def _chunks(reader: CorpusReader, chunk_bytes: int) -> Iterator[Tuple[int, List[Record], int]]:
    """(index, records, input bytes read so far) for consecutive chunks of about ``chunk_bytes``."""
    records: List[Record] = []
    size, index = 0, 0
    for record in reader:
        records.append(record)
        size += len(record.data)
        if size >= chunk_bytes:
            yield index, records, reader.bytes_read
            records, size, index = [], 0, index + 1
    if records or index == 0:
        yield index, records, reader.bytes_read


def _tokenize_all(reader: CorpusReader, chunk_bytes: int, workers: int, options: EncodeOptions,
                  state: WorkState, progress: Progress, totals: ChunkStats) -> int:
    """Feeds every unfinished chunk to the pool; returns the number of chunks."""
    # Not forked from here: a caller that already ran tokenizers' thread pool would hand forked
    # children a pool that tokenizers then disables (silently single-threaded workers). The fork
    # server is a clean process, started once and reused by later runs in this process.
    context = multiprocessing.get_context("forkserver" if hasattr(os, "fork") else "spawn")
    if hasattr(os, "fork"):
        context.set_forkserver_preload(["mfcore.data.preprocess.worker"])
    chunks = 0
    with context.Pool(workers, initializer=init_worker, initargs=(options,)) as pool:
        inflight: deque = deque()
        for index, records, position in _chunks(reader, chunk_bytes):
            chunks = index + 1
            if state.is_finished(index, [partial_prefix(state.work_dir, index, k) for k in options.keys]):
                totals.add(state.finished[index])
                progress.update(position, totals)
                continue
            inflight.append((position, pool.apply_async(process_chunk, (index, records, state.work_dir))))
            while len(inflight) >= 4 * workers:  # room to work around one huge chunk
                _collect(inflight.popleft(), state, progress, totals)
        while inflight:
            _collect(inflight.popleft(), state, progress, totals)
    return chunks


def _collect(item, state: WorkState, progress: Progress, totals: ChunkStats) -> None:
    position, result = item
    index, stats = result.get()
    state.mark_finished(index, stats)
    totals.add(stats)
    progress.update(position, totals)
