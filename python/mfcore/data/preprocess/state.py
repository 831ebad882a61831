"""The work directory of a run: partial datasets, ``state.json`` and ``chunks.log``.

``state.json`` (written once, atomically) holds a fingerprint of everything that decides the output
bytes (inputs, tokenizer, options); a resume against different inputs is refused instead of silently
mixing two corpora. ``chunks.log`` gets one JSON line per finished chunk, appended and fsynced only
after the chunk's partial datasets were renamed into place, so ``--resume`` never trusts a
half-written chunk; a torn last line (a kill during the append) is ignored and that chunk redone.
Appending keeps the cost per chunk constant however many chunks a corpus has.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from typing import Dict, Sequence

from mfcore.data.preprocess.errors import OutputError
from mfcore.data.preprocess.worker import ChunkStats
from mfcore.io.atomic import write_json

STATE_FILE = "state.json"
LOG_FILE = "chunks.log"
FORMAT_VERSION = 1


def fingerprint(files: Sequence[str], tokenizer: str, options: dict) -> str:
    """A digest of the inputs (name, size, mtime), the tokenizer's bytes and the output options."""
    digest = hashlib.sha256()
    with open(tokenizer, "rb") as f:
        digest.update(hashlib.sha256(f.read()).digest())
    for path in files:
        st = os.stat(path)
        digest.update(f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    digest.update(json.dumps(options, sort_keys=True).encode())
    return digest.hexdigest()


class WorkState:
    """Finished chunks of one run, persisted in ``work_dir``."""

    def __init__(self, work_dir: str, fingerprint_: str):
        self.work_dir = work_dir
        self.fingerprint = fingerprint_
        self.finished: Dict[int, ChunkStats] = {}

    @classmethod
    def start(cls, work_dir: str, fingerprint_: str, resume: bool) -> "WorkState":
        """A fresh state, or with ``resume`` the saved one (which must match ``fingerprint_``)."""
        path = os.path.join(work_dir, STATE_FILE)
        if resume and os.path.exists(path):
            return cls._load(work_dir, fingerprint_, path)
        if os.path.isdir(work_dir):
            shutil.rmtree(work_dir)
        try:
            os.makedirs(work_dir)
        except OSError as e:
            raise OutputError(f"{work_dir}: cannot create the work directory ({e.strerror})") from None
        state = cls(work_dir, fingerprint_)
        state.save()
        return state

    @classmethod
    def _load(cls, work_dir: str, fingerprint_: str, path: str) -> "WorkState":
        try:
            with open(path) as f:
                saved = json.load(f)
        except (OSError, ValueError) as e:
            raise OutputError(f"{path}: cannot read the resume state ({e}); rerun without --resume") from None
        if saved.get("version") != FORMAT_VERSION or saved.get("fingerprint") != fingerprint_:
            raise OutputError(f"{path}: the unfinished run used other inputs, tokenizer or options; "
                              "rerun without --resume to start over")
        state = cls(work_dir, fingerprint_)
        state.finished = _read_log(os.path.join(work_dir, LOG_FILE))
        return state

    def is_finished(self, index: int, prefixes) -> bool:
        """Was chunk ``index`` finished, and are its partial datasets (``prefixes``) still there?"""
        return index in self.finished and all(os.path.exists(p + ".idx") and os.path.exists(p + ".bin")
                                              for p in prefixes)

    def mark_finished(self, index: int, stats: ChunkStats) -> None:
        """Records a chunk whose partial datasets are complete (append + fsync)."""
        self.finished[index] = stats
        line = json.dumps({"chunk": index, "stats": dataclasses.asdict(stats)}) + "\n"
        with open(os.path.join(self.work_dir, LOG_FILE), "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def save(self) -> None:
        """Atomically writes the state header (write, fsync, rename)."""
        payload = {"version": FORMAT_VERSION, "fingerprint": self.fingerprint}
        write_json(os.path.join(self.work_dir, STATE_FILE), payload)

    def remove(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)


def _read_log(path: str) -> Dict[int, ChunkStats]:
    finished: Dict[int, ChunkStats] = {}
    if not os.path.exists(path):
        return finished
    with open(path) as f:
        for line in f:
            try:
                entry = json.loads(line)
                finished[int(entry["chunk"])] = ChunkStats(**entry["stats"])
            except (ValueError, KeyError, TypeError):
                break  # a torn last line: everything after it is redone
    return finished
