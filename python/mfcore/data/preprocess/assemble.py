"""The final outputs: partial datasets merged (C++), or streamed through packing into a sink.

Every final file is written under a temporary name and renamed into place when complete (the C++
builder and merge do so; the MindRecord sink moves its finished pair), so an interrupted or failed
run leaves the earlier outputs as they were (or none), never a partial or an emptied one.
"""
from __future__ import annotations

import glob
import os
from typing import Iterator, List, Sequence

import numpy as np

from mfcore.data.preprocess.packing import pack
from mfcore.data.preprocess.worker import partial_prefix

OUTPUT_FORMATS = ("megatron", "mindrecord")


def output_paths(prefix: str, key: str, output_format: str) -> List[str]:
    """The files one key's dataset consists of (Megatron's ``{prefix}_{key}_document`` naming)."""
    if output_format == "mindrecord":
        path = f"{prefix}_{key}_document.mindrecord"
        return [path, path + ".db"]
    return [f"{prefix}_{key}_document.bin", f"{prefix}_{key}_document.idx"]


def remove_dead_temporaries(prefix: str, keys: Sequence[str]) -> List[str]:
    """Removes ``<output>.tmp-<pid>-<n>`` files of runs that were killed while writing the outputs
    (their pid no longer runs); returns the removed paths. Earlier complete outputs are kept: the
    new ones replace them only once complete."""
    removed = []
    for key in keys:
        for path in output_paths(prefix, key, "megatron"):
            for tmp in glob.glob(glob.escape(path) + ".tmp-*"):
                pid = tmp[len(path) + len(".tmp-"):].split("-")[0]
                if pid.isdigit() and not _running(int(pid)):
                    os.remove(tmp)
                    removed.append(tmp)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def iter_documents(prefixes: Sequence[str]) -> Iterator[np.ndarray]:
    """Every document of the partial datasets, in order."""
    from mfcore.data import IndexedDataset

    for prefix in prefixes:
        ds = IndexedDataset(prefix)
        for i in range(len(ds)):
            yield ds[i]


def assemble_key(work_dir: str, chunks: int, key: str, prefix: str, dtype: str, output_format: str,
                 pack_mode: str, seq_length: int, pad_id: int) -> List[str]:
    """Writes the final dataset of ``key`` from ``chunks`` partial datasets; returns its files."""
    from mfcore.data import IndexedDatasetBuilder, merge_datasets

    partials = [partial_prefix(work_dir, i, key) for i in range(chunks)]
    paths = output_paths(prefix, key, output_format)
    if output_format == "mindrecord":
        from mfcore.data.preprocess.mindrecord import write_mindrecord

        blocks = pack(iter_documents(partials), pack_mode, seq_length, pad_id)
        write_mindrecord(paths[0], blocks, work_dir)
        return paths
    final = f"{prefix}_{key}_document"
    if pack_mode == "none":
        merge_datasets(final, partials)
        return paths
    builder = IndexedDatasetBuilder(final, dtype)
    for block in pack(iter_documents(partials), pack_mode, seq_length, pad_id):
        builder.add_document(np.ascontiguousarray(block, dtype=dtype))
    builder.finalize()
    return paths
