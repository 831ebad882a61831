"""Writing a checkpoint atomically: temporary directory, fsync, rename, then move ``latest``.

Every rank writes its own safetensors file and a small manifest (its blocks, the file's sha256)
into ``.tmp-step_XXXXXXXX/``; rank 0 waits for all manifests, merges them into ``index.json``,
writes the trainer state and the ``COMPLETE`` marker, fsyncs, renames the directory to
``step_XXXXXXXX`` and only then repoints ``latest``. A crash at any moment leaves either the old
checkpoints untouched or a new complete one; a half-written directory is never named like a step.
"""
import hashlib
import json
import os
import shutil
import time
from typing import Dict, Iterable, List, Tuple

import numpy as np
from safetensors.numpy import save_file

from mfcore.checkpoint import layout as L
from mfcore.errors import CheckpointError

Block = Tuple[np.ndarray, L.ShardSpec]


def tmp_dir_for(root: str, step: int) -> str:
    """Where the ranks assemble checkpoint ``step`` (one name for all of them)."""
    return os.path.join(root, L.TMP_PREFIX + L.step_dir_name(step))


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_rank_shard(tmp_dir: str, step: int, rank: int, world_size: int,
                     blocks: Dict[str, Block]) -> dict:
    """Write this rank's blocks as one safetensors file plus its manifest; returns the manifest."""
    os.makedirs(tmp_dir, exist_ok=True)
    fname = L.rank_file_name(rank)
    path = os.path.join(tmp_dir, fname)
    arrays, described = {}, {}
    for name, (arr, spec) in blocks.items():
        spec.check_block(name, arr.shape)
        arrays[name] = np.ascontiguousarray(arr)
        described[name] = {"global_shape": list(spec.global_shape), "offsets": list(spec.offsets),
                           "shape": list(arr.shape), "dtype": L.dtype_code(arr.dtype)}
    save_file(arrays, path, metadata={"format": L.FORMAT_NAME, "rank": str(rank)})
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    manifest = {"rank": rank, "world_size": world_size, "step": int(step), "file": fname,
                "sha256": L.sha256_file(path), "bytes": os.path.getsize(path), "tensors": described}
    man_path = os.path.join(tmp_dir, f"rank_{rank:05d}.json")
    L.write_json(man_path + ".part", manifest)
    os.replace(man_path + ".part", man_path)  # a manifest is visible only once complete
    return manifest


def collect_manifests(tmp_dir: str, step: int, world_size: int, timeout: float) -> List[dict]:
    """Rank 0 waits (polling the shared directory) until every rank's manifest for ``step`` is there."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for r in range(world_size):
            p = os.path.join(tmp_dir, f"rank_{r:05d}.json")
            if os.path.exists(p):
                man = L.read_json(p, "rank manifest")
                if man.get("step") == int(step) and man.get("world_size") == world_size:
                    found.append(man)
        if len(found) == world_size:
            return found
        if time.monotonic() > deadline:
            missing = sorted(set(range(world_size)) - {m["rank"] for m in found})
            raise CheckpointError(f"{tmp_dir}: ranks {missing} did not write their shard of step "
                                  f"{step} within {timeout:.0f} s")
        time.sleep(0.05)


def commit(root: str, step: int, tmp_dir: str, manifests: List[dict], trainer_state: dict) -> str:
    """Write index, state and marker into ``tmp_dir``, then rename it into place and move ``latest``."""
    index = L.build_index(step, manifests)
    index_bytes = L.write_json(os.path.join(tmp_dir, L.INDEX_FILE), index)
    state_bytes = L.write_json(os.path.join(tmp_dir, L.STATE_FILE), dict(trainer_state, step=int(step)))
    L.write_json(os.path.join(tmp_dir, L.MARKER_FILE), {
        "index_sha256": hashlib.sha256(index_bytes).hexdigest(),
        "state_sha256": hashlib.sha256(state_bytes).hexdigest(),
        "step": int(step)})
    for man in manifests:
        os.remove(os.path.join(tmp_dir, f"rank_{man['rank']:05d}.json"))
    fsync_dir(tmp_dir)
    final = os.path.join(root, L.step_dir_name(step))
    if os.path.exists(final):  # the same step saved again (e.g. after a resume): replace it
        trash = os.path.join(root, L.TMP_PREFIX + "old-" + L.step_dir_name(step))
        shutil.rmtree(trash, ignore_errors=True)
        os.rename(final, trash)
        os.rename(tmp_dir, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp_dir, final)
    fsync_dir(root)
    write_latest(root, L.step_dir_name(step))
    return final


def write_latest(root: str, name: str) -> None:
    tmp = os.path.join(root, L.TMP_PREFIX + L.LATEST_FILE)
    with open(tmp, "w") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(root, L.LATEST_FILE))
    fsync_dir(root)


def is_complete(step_dir: str) -> bool:
    """A directory counts as a checkpoint only if its marker matches its index (cheap check)."""
    try:
        with open(os.path.join(step_dir, L.MARKER_FILE), "rb") as f:
            marker = json.loads(f.read())
        with open(os.path.join(step_dir, L.INDEX_FILE), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest() == marker.get("index_sha256")
    except (OSError, ValueError, AttributeError):
        return False


def list_steps(root: str) -> List[Tuple[int, str]]:
    """All ``step_*`` directories under ``root`` as (step, path), newest first (complete or not)."""
    if not os.path.isdir(root):
        return []
    out = []
    for name in os.listdir(root):
        step = L.parse_step_dir(name)
        if step is not None and os.path.isdir(os.path.join(root, name)):
            out.append((step, os.path.join(root, name)))
    return sorted(out, reverse=True)


def rotate(root: str, keep_last_n: int, protect: Iterable[str] = ()) -> List[str]:
    """Delete the oldest complete checkpoints beyond ``keep_last_n``; returns the removed paths.

    Only complete checkpoints are counted and removed, and the newest complete one is always kept,
    so rotation can never leave the run without a valid checkpoint. ``protect`` lists paths never
    to remove (e.g. the checkpoint the run resumed from).
    """
    if keep_last_n is None or keep_last_n <= 0:
        return []
    complete = [p for _, p in list_steps(root) if is_complete(p)]
    keep = set(complete[:max(1, keep_last_n)]) | {os.path.abspath(p) for p in protect}
    removed = []
    for path in complete:
        if path not in keep and os.path.abspath(path) not in keep:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def remove_stale_tmp(root: str) -> None:
    """Remove leftovers of saves that crashed (only safe while no rank is saving)."""
    if not os.path.isdir(root):
        return
    for name in os.listdir(root):
        if name.startswith(L.TMP_PREFIX):
            path = os.path.join(root, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
