"""MindRecord output through MindSpore's own writer: one record per block, ``input_ids`` int32.

MindRecord keeps the data file's name inside its ``.db`` index, so the pair is written under its
final file name inside the work directory and moved next to the other outputs only when committed.
"""
from __future__ import annotations

import os
from typing import Iterable, List

import numpy as np

from mfcore.data.preprocess.errors import OutputError

SCHEMA = {"input_ids": {"type": "int32", "shape": [-1]}}
BATCH = 1024


def write_mindrecord(path: str, blocks: Iterable[np.ndarray], work_dir: str) -> None:
    """Writes ``blocks`` (each one record) to ``path`` and ``path.db``, atomically per file."""
    from mindspore.mindrecord import FileWriter

    staging = os.path.join(work_dir, os.path.basename(path))
    for stale in (staging, staging + ".db"):
        if os.path.exists(stale):
            os.remove(stale)
    writer = FileWriter(file_name=staging, shard_num=1, overwrite=True)
    writer.add_schema(SCHEMA, "mf-preprocess")
    batch: List[dict] = []
    count = 0
    for block in blocks:
        batch.append({"input_ids": np.asarray(block, dtype=np.int32)})
        if len(batch) == BATCH:
            writer.write_raw_data(batch)
            count, batch = count + len(batch), []
    if batch:
        writer.write_raw_data(batch)
        count += len(batch)
    if count == 0:
        raise OutputError(f"{path}: no block of tokens to write (corpus shorter than one sequence?)")
    writer.commit()
    for staged in (staging, staging + ".db"):  # MindSpore's writer makes them 0600; the umask decides
        os.chmod(staged, default_file_mode())
    os.replace(staging + ".db", path + ".db")
    os.replace(staging, path)


def default_file_mode() -> int:
    """The mode a plain new file gets under the process umask (0644 under the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
