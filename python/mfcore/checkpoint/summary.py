"""Describe and verify checkpoints on disk (what ``mf-ckpt info`` and ``mf-ckpt verify`` print)."""
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from mfcore.checkpoint import layout as L
from mfcore.checkpoint.load import is_step_dir, read_index, read_trainer_state, resolve_step_dir, verify_files
from mfcore.checkpoint.save import is_complete, list_steps
from mfcore.errors import CheckpointError

# trainer-state entries worth a line in `info` (the rest is in trainer_state.json)
STATE_KEYS = ("consumed_samples", "consumed_tokens", "loss_scale", "dataset_fingerprint")


@dataclass
class VerifyResult:
    path: str
    ok: bool
    message: str


def step_dirs(path: str) -> List[str]:
    """The step directories ``path`` stands for: itself, or every one under a checkpoint root."""
    if is_step_dir(path):
        return [path]
    found = [p for _, p in list_steps(path)]
    if not found:
        raise CheckpointError(f"{path}: no checkpoints here (expected step_XXXXXXXX directories)")
    return found


def verify(path: str) -> List[VerifyResult]:
    """Check marker, index, trainer state and every file's size and sha256 of each checkpoint."""
    results = []
    for step_dir in step_dirs(path):
        try:
            index = read_index(step_dir)
            read_trainer_state(step_dir)
            verify_files(step_dir, index)
            n = len(index["files"])
            results.append(VerifyResult(step_dir, True, f"{n} file{'s' * (n != 1)}, "
                                        f"{len(index['tensors'])} tensors, checksums match"))
        except CheckpointError as e:
            results.append(VerifyResult(step_dir, False, str(e)))
    return results


def _bytes(entry: dict) -> int:
    itemsize = L.numpy_dtype(entry["dtype"], "index").itemsize
    return int(np.prod(entry["shape"], dtype=np.int64)) * itemsize


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n} B"  # unreachable


def describe(path: str, max_tensors: Optional[int] = None) -> List[str]:
    """Lines describing the checkpoints under ``path`` and, in detail, the one it resolves to."""
    lines = []
    if not is_step_dir(path):
        lines.append(f"checkpoints in {path}: " + (", ".join(
            f"{s}{'' if is_complete(p) else ' (incomplete)'}" for s, p in sorted(list_steps(path))) or "none"))
    step_dir = resolve_step_dir(path)
    index = read_index(step_dir)
    state = read_trainer_state(step_dir)
    total = sum(_bytes(e) for e in index["tensors"].values())
    on_disk = sum(f["bytes"] for f in index["files"].values())
    lines += [f"checkpoint {step_dir}", f"  step: {index['step']}",
              f"  layout: {index['world_size']} rank file(s), {len(index['tensors'])} tensors, "
              f"{human_bytes(total)} of tensor data, {human_bytes(on_disk)} on disk"]
    lines += [f"  {k}: {state[k]}" for k in STATE_KEYS if k in state]
    lines.append("  tensors:")
    names = sorted(index["tensors"])
    for name in names[:max_tensors]:
        e = index["tensors"][name]
        lines.append(f"    {name}  {e['dtype']}{list(e['shape'])}  {len(e['slices'])} slice(s)  "
                     f"{human_bytes(_bytes(e))}")
    if max_tensors is not None and len(names) > max_tensors:
        lines.append(f"    ... {len(names) - max_tensors} more (--all to list them)")
    return lines
