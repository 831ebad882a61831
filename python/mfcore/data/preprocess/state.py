"""The work directory of a run: partial datasets plus ``state.json``, the record of finished chunks.

A chunk counts as finished only once its partial datasets are renamed into place *and* the state file
naming it has been atomically replaced, so ``--resume`` never trusts a half-written chunk. The state
carries a fingerprint of everything that decides the output bytes (inputs, tokenizer, options); a
resume against different inputs is refused instead of silently mixing two corpora.
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

STATE_FILE = "state.json"
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
    """Finished chunks of one run, persisted in ``work_dir/state.json``."""

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
        state.finished = {int(k): ChunkStats(**v) for k, v in saved["finished"].items()}
        return state

    def mark_finished(self, index: int, stats: ChunkStats) -> None:
        self.finished[index] = stats
        self.save()

    def save(self) -> None:
        """Atomically replaces the state file (write, fsync, rename)."""
        payload = {"version": FORMAT_VERSION, "fingerprint": self.fingerprint,
                   "finished": {str(k): dataclasses.asdict(v) for k, v in sorted(self.finished.items())}}
        path = os.path.join(self.work_dir, STATE_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def remove(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)
