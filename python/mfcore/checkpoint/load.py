"""Reading a checkpoint: pick the newest valid one, verify it, re-slice tensors to the current layout.

A tensor is read as any block of its global shape (:class:`~mfcore.checkpoint.layout.ShardSpec`),
assembled from whichever saved slices overlap it, so a checkpoint written at one parallel layout
(e.g. DP=2 with ZeRO, or TP=2) loads at another. Only the overlapping parts of each file are read.
"""
import hashlib
import logging
import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from mfcore.checkpoint import layout as L
from mfcore.checkpoint.compat import CheckpointMismatchError
from mfcore.checkpoint.save import is_complete, list_steps
from mfcore.errors import CheckpointError
from mfcore.io.paths import contained_path
from mfcore.io.safetensors import SafetensorsFile

log = logging.getLogger("mfcore.checkpoint")


@dataclass
class LoadedCheckpoint:
    """What a load returns: where it came from, the tensors, the trainer state, what was skipped."""
    path: str
    step: int
    tensors: Dict[str, np.ndarray]
    trainer_state: dict
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (path, why) of newer bad ones


def read_index(step_dir: str) -> dict:
    """The verified index of a complete checkpoint directory (marker present and matching)."""
    if not os.path.isdir(step_dir):
        raise CheckpointError(f"{step_dir}: no such checkpoint directory")
    if not os.path.exists(os.path.join(step_dir, L.MARKER_FILE)):
        raise CheckpointError(f"{step_dir}: incomplete checkpoint (no {L.MARKER_FILE} marker)")
    if not is_complete(step_dir):
        raise CheckpointError(f"{step_dir}: {L.INDEX_FILE} does not match its {L.MARKER_FILE} marker")
    index = L.read_json(os.path.join(step_dir, L.INDEX_FILE), "index")
    L.validate_index(index, os.path.join(step_dir, L.INDEX_FILE))
    return index


def read_trainer_state(step_dir: str) -> dict:
    path = os.path.join(step_dir, L.STATE_FILE)
    marker = L.read_json(os.path.join(step_dir, L.MARKER_FILE), "completion marker")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing trainer state") from None
    if hashlib.sha256(data).hexdigest() != marker.get("state_sha256"):
        raise CheckpointError(f"{path}: checksum mismatch (file corrupt)")
    return L.read_json(path, "trainer state")


def verify_files(step_dir: str, index: dict, files: Optional[Iterable[str]] = None) -> None:
    """Raise naming the file unless each of ``files`` (default all) has its recorded size and sha256."""
    for fname in sorted(files if files is not None else index["files"]):
        rec = index["files"][fname]
        path = contained_path(step_dir, fname, os.path.join(step_dir, L.INDEX_FILE), CheckpointError)
        if not os.path.exists(path):
            raise CheckpointError(f"{path}: missing shard file")
        size = os.path.getsize(path)
        if size != rec["bytes"]:
            raise CheckpointError(f"{path}: {size} bytes, the index records {rec['bytes']} (truncated?)")
        if L.sha256_file(path) != rec["sha256"]:
            raise CheckpointError(f"{path}: checksum mismatch (file corrupt)")


def _overlap(a_off, a_shape, b_off, b_shape):
    """The intersection of two boxes as (start, stop) per dimension, or None if they are disjoint."""
    box = []
    for ao, al, bo, bl in zip(a_off, a_shape, b_off, b_shape):
        lo, hi = max(ao, bo), min(ao + al, bo + bl)
        if lo >= hi:
            return None
        box.append((lo, hi))
    return box


def _pieces(entry: dict, spec: L.ShardSpec, shape: Tuple[int, ...]):
    """Yield (saved slice, intersection box) for every saved slice overlapping the wanted block."""
    for s in entry["slices"]:
        box = _overlap(spec.offsets, shape, s["offsets"], s["shape"])
        if box is not None or not shape:
            yield s, box or []


def read_block(step_dir: str, name: str, entry: dict, spec: L.ShardSpec,
               shape: Tuple[int, ...], handles: dict) -> np.ndarray:
    """Assemble the block ``shape`` at ``spec.offsets`` of tensor ``name`` from the saved slices."""
    dtype = L.numpy_dtype(entry["dtype"], f"{step_dir}: tensor {name!r}")
    out = np.empty(shape, dtype=dtype)
    for s, box in _pieces(entry, spec, shape):
        f = handles.get(s["file"])
        if f is None:
            path = contained_path(step_dir, s["file"], os.path.join(step_dir, L.INDEX_FILE), CheckpointError)
            f = handles[s["file"]] = SafetensorsFile(path)
        src = tuple(slice(lo - so, hi - so) for (lo, hi), so in zip(box, s["offsets"]))
        dst = tuple(slice(lo - wo, hi - wo) for (lo, hi), wo in zip(box, spec.offsets))
        part = f.read(name, src)
        out[dst] = np.asarray(part).reshape(out[dst].shape)
        if not shape:
            break
    return out


def load_tensors(step_dir: str, index: dict, names: Optional[Iterable[str]] = None,
                 shards=None, block_shapes=None, verify: bool = True) -> Dict[str, np.ndarray]:
    """Read ``names`` (default all; or a predicate on names) whole, or as blocks.

    ``shards`` maps a name to its :class:`ShardSpec` (with the block's shape in ``block_shapes``),
    or is a function ``(name, saved global shape) -> (ShardSpec, block shape) | None`` for callers
    that choose the block only once they see how the tensor was saved (None: read it whole)."""
    if callable(names):
        names = [n for n in index["tensors"] if names(n)]
    names = list(index["tensors"] if names is None else names)
    plans = {}
    for name in names:
        entry = index["tensors"].get(name)
        if entry is None:
            raise CheckpointError(f"{step_dir}: checkpoint has no tensor {name!r}")
        spec, shape = _block_for(name, entry, shards, block_shapes or {})
        if list(spec.global_shape) != list(entry["shape"]):
            raise CheckpointError(f"{step_dir}: tensor {name!r} has global shape {tuple(entry['shape'])}, "
                                  f"the current model wants {spec.global_shape}")
        spec.check_block(name, shape)
        plans[name] = (entry, spec, shape)
    if verify:
        needed = {s["file"] for e, sp, sh in plans.values() for s, _ in _pieces(e, sp, sh)}
        verify_files(step_dir, index, needed)
    handles: dict = {}
    return {name: read_block(step_dir, name, *plan, handles) for name, plan in plans.items()}


def _block_for(name: str, entry: dict, shards, block_shapes) -> Tuple[L.ShardSpec, Tuple[int, ...]]:
    whole = L.ShardSpec.whole(entry["shape"])
    if callable(shards):
        planned = shards(name, tuple(entry["shape"]))
        return planned if planned is not None else (whole, tuple(entry["shape"]))
    spec = (shards or {}).get(name, whole)
    return spec, tuple(block_shapes.get(name, spec.global_shape))


def is_step_dir(path: str) -> bool:
    """Whether ``path`` names one checkpoint (rather than a root holding several)."""
    return (os.path.exists(os.path.join(path, L.INDEX_FILE))
            or L.parse_step_dir(os.path.basename(os.path.normpath(path))) is not None)


def resolve_step_dir(path: str) -> str:
    """``path`` itself if it is a step directory, else the complete checkpoint its ``latest`` names,
    else (no ``latest``, or one that is unreadable, leads outside the root or names an incomplete
    checkpoint: warned about) the newest complete one, as a resume falls back."""
    if is_step_dir(path):
        return path
    named = latest_target(path)
    if named is not None:
        return named
    complete = [p for _, p in list_steps(path) if is_complete(p)]  # e.g. killed before `latest` moved
    if complete:
        return complete[0]
    raise CheckpointError(f"{path}: neither a checkpoint directory nor a checkpoint root "
                          f"(no '{L.LATEST_FILE}', no complete step_XXXXXXXX directory)")


def latest_target(root: str) -> Optional[str]:
    """The complete checkpoint ``root/latest`` names, or None (absent, or not usable: warned)."""
    latest = os.path.join(root, L.LATEST_FILE)
    if not os.path.lexists(latest):
        return None
    try:
        with open(latest, "rb") as f:
            name = f.read(4096).decode("utf-8").strip()
        target = contained_path(root, name, latest, CheckpointError)
    except (OSError, UnicodeDecodeError, CheckpointError) as e:
        log.warning("%s is not usable (%s); using the newest complete checkpoint instead", latest,
                    e if isinstance(e, CheckpointError) else f"unreadable: {e}")
        return None
    if L.parse_step_dir(os.path.basename(os.path.normpath(target))) is None or not is_complete(target):
        log.warning("%s names %r, not a complete checkpoint; using the newest complete checkpoint "
                    "instead", latest, name)
        return None
    return target


def candidates(root: str) -> List[str]:
    """Complete-looking step directories under ``root``, newest first."""
    return [p for _, p in list_steps(root)]


def load_newest_valid(root: str, loader) -> Tuple[Optional[object], List[Tuple[str, str]]]:
    """Call ``loader(step_dir)`` on the newest checkpoint that loads; skip (and report) bad ones."""
    skipped = []
    for step_dir in candidates(root):
        try:
            return loader(step_dir), skipped
        except CheckpointMismatchError:
            raise  # an intact checkpoint of another run: falling back would only hide it
        except CheckpointError as e:
            log.warning("checkpoint %s is not usable, trying the previous one: %s", step_dir, e)
            skipped.append((step_dir, str(e)))
    return None, skipped
