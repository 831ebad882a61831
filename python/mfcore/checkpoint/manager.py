"""`CheckpointManager`: the one object the trainer talks to for saving and resuming.

    mgr = CheckpointManager("output/checkpoints", keep_last_n=3, async_save=True)
    mgr.save(step, {"w": array, "b": (block, ShardSpec(global_shape, offsets))}, trainer_state)
    ckpt = mgr.load("auto")            # or a path; None when there is nothing to resume from
    ckpt.tensors, ckpt.trainer_state, ckpt.step, ckpt.skipped

Async saves copy the tensors to host memory on the caller's thread (the only stall training sees)
and write them in a background thread; at most one save is in flight, the next one waits for it.
"""
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Mapping, Optional, Union

import numpy as np

from mfcore.checkpoint import layout as L
from mfcore.checkpoint import save as S
from mfcore.checkpoint.compat import check_compatible
from mfcore.checkpoint.load import (LoadedCheckpoint, is_step_dir, load_newest_valid, load_tensors,
                                    read_index, read_trainer_state, resolve_step_dir)
from mfcore.errors import CheckpointError

log = logging.getLogger("mfcore.checkpoint")

TensorArg = Union[np.ndarray, "L.ShardSpec", tuple]


@dataclass
class SaveReport:
    """How long the caller was blocked (``stall_s``) and, once known, the total write time."""
    step: int
    path: str
    stall_s: float
    write_s: Optional[float] = None


def _to_block(name: str, value, host: Optional[Dict[str, np.ndarray]] = None):
    """Normalise a tensors-argument value to (numpy block, ShardSpec).

    With ``host`` (async saves) the data is copied into a host buffer kept from the previous save
    when the shape and dtype match: reusing it avoids page-faulting fresh memory on every save,
    which is most of the copy time, and is safe because one save at most is in flight."""
    arr, spec = value if isinstance(value, tuple) else (value, None)
    if hasattr(arr, "asnumpy"):  # a MindSpore Tensor/Parameter, without importing MindSpore here
        arr = arr.asnumpy()
    arr = np.asarray(arr)
    spec = spec or L.ShardSpec.whole(arr.shape)
    spec.check_block(name, arr.shape)
    if host is not None:
        buf = host.get(name)
        if buf is None or buf.shape != arr.shape or buf.dtype != arr.dtype:
            buf = host[name] = np.empty_like(arr, order="C")
        np.copyto(buf, arr)
        arr = buf
    return arr, spec


class CheckpointManager:
    """Saves and loads checkpoints under ``directory`` for one rank of a (possibly) parallel job.

    ``rank``/``world_size`` say which shard file this process writes; rank 0 commits the
    checkpoint once every rank's shard is on disk (the directory must be shared by all ranks).
    Rank 0 removes leftovers of crashed saves when the manager is created, so create it on every
    rank before the first training step (no rank can save before rank 0 has passed that step's
    collectives); a single process also clears them before every save. ``barrier``, if given, is
    called by all ranks before each save, and rank 0 clears leftovers before it.
    """

    def __init__(self, directory: str, keep_last_n: int = 0, async_save: bool = False,
                 rank: int = 0, world_size: int = 1, barrier: Optional[Callable[[], None]] = None,
                 commit_timeout: float = 600.0):
        self.directory = os.path.abspath(directory)
        self.keep_last_n, self.async_save = keep_last_n, async_save
        self.rank, self.world_size, self.barrier = rank, world_size, barrier
        self.commit_timeout = commit_timeout
        if rank == 0:
            S.remove_stale_tmp(self.directory)
        self.protect: set = set()  # e.g. the checkpoint this run resumed from
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self.last_report: Optional[SaveReport] = None
        self._host: Dict[str, np.ndarray] = {}  # async saves' host copies, reused between saves

    # ---- saving -------------------------------------------------------------------------------
    def save(self, step: int, tensors: Mapping[str, TensorArg], trainer_state: dict) -> SaveReport:
        """Save this rank's ``tensors`` and (rank 0) ``trainer_state`` as checkpoint ``step``."""
        t0 = time.perf_counter()
        self.wait()
        if self.barrier is not None:
            if self.rank == 0:
                S.remove_stale_tmp(self.directory)
            self.barrier()
        elif self.world_size == 1:
            S.remove_stale_tmp(self.directory)
        os.makedirs(self.directory, exist_ok=True)
        host = self._host if self.async_save else None
        blocks = {n: _to_block(n, v, host) for n, v in tensors.items()}
        if host is not None:
            for stale in set(host) - set(blocks):
                del host[stale]
        state = L.freeze_state(trainer_state)
        report = SaveReport(int(step), os.path.join(self.directory, L.step_dir_name(step)), 0.0)
        if self.async_save:
            self._thread = threading.Thread(target=self._write_guarded, args=(step, blocks, state, report, t0),
                                            name=f"mfcore-ckpt-{step}", daemon=True)
            self._thread.start()
            report.stall_s = time.perf_counter() - t0
        else:
            try:
                self._write(step, blocks, state, report, t0)
            except Exception as e:
                raise save_error(report.path, e) from e
            report.stall_s = time.perf_counter() - t0
        log.info("checkpoint step %d: training stalled %.3f s (%s save)", step, report.stall_s,
                 "async" if self.async_save else "sync")
        self.last_report = report
        return report

    def _write_guarded(self, step, blocks, state, report, t0):
        try:
            self._write(step, blocks, state, report, t0)
        except BaseException as e:  # surfaced by check() (the trainer asks every step), save() or wait()
            self._error = save_error(report.path, e)

    def _write(self, step, blocks, state, report, t0):
        tmp = S.tmp_dir_for(self.directory, step)
        manifest = S.write_rank_shard(tmp, step, self.rank, self.world_size, blocks)
        if self.rank == 0:
            manifests = [manifest] if self.world_size == 1 else \
                S.collect_manifests(tmp, step, self.world_size, self.commit_timeout)
            final = S.commit(self.directory, step, tmp, manifests, state)
            # the checkpoint just written is never rotated away, whatever steps sit beside it
            removed = S.rotate(self.directory, self.keep_last_n, self.protect | {final})
            for path in removed:
                log.info("checkpoint rotation removed %s", path)
        report.write_s = time.perf_counter() - t0
        log.info("checkpoint step %d written to %s in %.3f s", step, report.path, report.write_s)

    def wait(self) -> None:
        """Block until an in-flight async save is on disk; re-raise its error if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.check()

    def check(self) -> None:
        """Without blocking: raise the error of an async save that has failed (once)."""
        if self._thread is not None and not self._thread.is_alive():
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    close = wait

    # ---- loading ------------------------------------------------------------------------------
    def load(self, path: str = "auto", names: Optional[Iterable[str]] = None,
             shards=None,
             block_shapes: Optional[Dict[str, tuple]] = None,
             expect: Optional[dict] = None, allow_mismatch: bool = False,
             verify: bool = True) -> Optional[LoadedCheckpoint]:
        """Load ``path`` (a step directory or root) or, with ``"auto"``, the newest valid checkpoint.

        Tensors come back whole unless ``shards``/``block_shapes`` ask for this rank's block
        (see :func:`~mfcore.checkpoint.load.load_tensors`).
        ``expect`` holds this run's ``model_config`` / ``dataset_fingerprint`` to compare with the
        saved trainer state. ``"auto"`` returns None when there is no checkpoint at all, and skips
        (reporting in ``skipped`` and the log) newer checkpoints that are incomplete or corrupt.
        """
        self.wait()

        def one(step_dir: str) -> LoadedCheckpoint:
            index = read_index(step_dir)
            state = read_trainer_state(step_dir)
            check_compatible(state, expect or {}, step_dir, allow_mismatch)
            tensors = load_tensors(step_dir, index, names, shards, block_shapes, verify)
            return LoadedCheckpoint(step_dir, int(index["step"]), tensors, state)

        if path != "auto":
            found = one(resolve_step_dir(path))
            self.protect.add(found.path)
            return found
        found, skipped = load_newest_valid(self.directory, one)
        if found is None:
            if skipped:
                raise CheckpointError(f"{self.directory}: no usable checkpoint; " +
                                      "; ".join(f"{p}: {why}" for p, why in skipped))
            return None
        found.skipped = skipped
        self.protect.add(found.path)
        return found


def save_error(path: str, cause: BaseException) -> CheckpointError:
    """One clear error for a failed save: the checkpoint's path and the cause (the file, the errno).
    Nothing of it was committed, so the previous checkpoint stays the resume point."""
    if isinstance(cause, CheckpointError):
        why = str(cause)
    elif isinstance(cause, OSError):
        why = f"{cause.strerror or cause}" + (f" ({cause.filename})" if cause.filename else "")
    else:
        why = f"{type(cause).__name__}: {cause}"
    return CheckpointError(f"{path}: checkpoint not saved: {why}; the previous checkpoint stays the "
                           "resume point")


def load_checkpoint(path: str, **kwargs) -> LoadedCheckpoint:
    """Load one checkpoint directory, or the newest valid one under a checkpoint root."""
    if is_step_dir(path):
        return CheckpointManager(os.path.dirname(os.path.abspath(path))).load(path, **kwargs)
    found = CheckpointManager(path).load("auto", **kwargs)
    if found is None:
        raise CheckpointError(f"{path}: no checkpoint here (expected step_XXXXXXXX directories)")
    for bad, why in found.skipped:
        log.warning("skipped %s: %s", bad, why)
    return found
