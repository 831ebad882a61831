"""The on-disk layout of an mfcore checkpoint: names, the JSON index, the shard spec, checksums.

A checkpoint root (``output/checkpoints``) holds one directory per saved step and a ``latest``
pointer::

    checkpoints/
      latest                       text: "step_00001000"
      step_00001000/
        rank_00000.safetensors     the tensors (or slices of tensors) rank 0 wrote
        rank_00001.safetensors
        index.json                 every tensor: global shape, dtype, which file holds which slice;
                                   every file: sha256 and size
        trainer_state.json         step, consumed samples/tokens, schedule, RNG, config, ...
        COMPLETE                   written last; holds the sha256 of index.json

A directory without ``COMPLETE`` (or whose ``COMPLETE`` does not match its index) is never loaded.

A tensor saved whole has one slice covering it. A sharded tensor (tensor parallel, ZeRO) is
described by a :class:`ShardSpec`: the global shape and where this rank's block starts in it. A
block is a contiguous box (a slice along every dimension); the union of the blocks saved by all
ranks must tile the global tensor exactly, which :func:`check_coverage` enforces. ZeRO shards must
be described per parameter in the parameter's global shape (or as 1-D slices of its unpadded,
flattened size), never as slices of a padded flat buffer, so that they can be re-sliced at another
data-parallel size.
"""
import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from mfcore.errors import CheckpointError
from mfcore.io.paths import contained_path

FORMAT_NAME = "mfcore-checkpoint"
FORMAT_VERSION = 1
INDEX_FILE = "index.json"
STATE_FILE = "trainer_state.json"
MARKER_FILE = "COMPLETE"
LATEST_FILE = "latest"
TMP_PREFIX = ".tmp-"
_STEP_RE = re.compile(r"^step_(\d{8,})$")

# safetensors dtype codes <-> numpy dtypes (the ones numpy can hold without extensions).
_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}


@dataclass(frozen=True)
class ShardSpec:
    """Where a rank's block sits in a global tensor: ``global[offsets[i]:offsets[i]+shape[i], ...]``.

    Filled by the parallel code for tensor-parallel and ZeRO shards; the block's own shape is the
    numpy array's shape, so only the global shape and the offsets are needed here.
    """
    global_shape: Tuple[int, ...]
    offsets: Tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "global_shape", tuple(int(d) for d in self.global_shape))
        object.__setattr__(self, "offsets", tuple(int(o) for o in self.offsets))
        if len(self.global_shape) != len(self.offsets):
            raise CheckpointError(f"shard spec: {len(self.offsets)} offsets for a "
                                  f"{len(self.global_shape)}-d tensor {self.global_shape}")

    @staticmethod
    def whole(shape: Sequence[int]) -> "ShardSpec":
        return ShardSpec(tuple(shape), (0,) * len(shape))

    @staticmethod
    def split(global_shape: Sequence[int], dim: int, index: int, parts: int) -> "ShardSpec":
        """The ``index``-th of ``parts`` equal blocks along ``dim`` (the usual TP / ZeRO split)."""
        size = int(global_shape[dim])
        if size % parts:
            raise CheckpointError(f"shard spec: dimension {dim} of {tuple(global_shape)} "
                                  f"is not divisible into {parts} parts")
        offsets = [0] * len(global_shape)
        offsets[dim] = index * (size // parts)
        return ShardSpec(tuple(global_shape), tuple(offsets))

    def block_shape(self, dim: int, parts: int) -> Tuple[int, ...]:
        shape = list(self.global_shape)
        shape[dim] //= parts
        return tuple(shape)

    def check_block(self, name: str, block_shape: Sequence[int]) -> None:
        """Raise unless a block of ``block_shape`` at these offsets fits in the global shape."""
        if len(block_shape) != len(self.global_shape):
            raise CheckpointError(f"tensor {name!r}: block of rank {len(block_shape)} for a global "
                                  f"shape {self.global_shape}")
        for o, b, g in zip(self.offsets, block_shape, self.global_shape):
            if o < 0 or o + b > g:
                raise CheckpointError(f"tensor {name!r}: block {tuple(block_shape)} at offsets "
                                      f"{self.offsets} does not fit in global shape {self.global_shape}")


def step_dir_name(step: int) -> str:
    return f"step_{int(step):08d}"


def parse_step_dir(name: str):
    """The step of a ``step_XXXXXXXX`` directory name, or None for anything else."""
    m = _STEP_RE.match(name)
    return int(m.group(1)) if m else None


def rank_file_name(rank: int) -> str:
    return f"rank_{int(rank):05d}.safetensors"


def dtype_code(dtype) -> str:
    try:
        return _CODES[np.dtype(dtype)]
    except KeyError:
        raise CheckpointError(f"dtype {np.dtype(dtype)} cannot be stored in a checkpoint "
                              f"(supported: {', '.join(sorted(_DTYPES))})") from None


def numpy_dtype(code: str, where: str) -> np.dtype:
    try:
        return np.dtype(_DTYPES[code])
    except KeyError:
        raise CheckpointError(f"{where}: unsupported dtype {code!r}") from None


def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            buf = f.read(chunk)
            if not buf:
                return h.hexdigest()
            h.update(buf)


def write_json(path: str, obj) -> bytes:
    """Write ``obj`` as JSON, flushed and fsynced; returns the bytes written (for the marker hash)."""
    data = json.dumps(obj, indent=1, sort_keys=True, default=_json_default).encode()
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return data


def freeze_state(state: dict) -> dict:
    """A JSON round-tripped copy of ``state``: proves it can be saved, and later edits by the caller
    (training continues during an async save) cannot leak into the checkpoint."""
    try:
        return json.loads(json.dumps(state, default=_json_default))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"trainer state cannot be saved: {e}") from None


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"trainer state value of type {type(o).__name__} is not JSON-serialisable")


def read_json(path: str, what: str):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing {what}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt {what} ({e})") from None


def build_index(step: int, rank_manifests: List[dict]) -> dict:
    """Merge every rank's manifest (its file, checksum and blocks) into one index; check tiling."""
    tensors: Dict[str, dict] = {}
    files: Dict[str, dict] = {}
    for man in sorted(rank_manifests, key=lambda m: m["rank"]):
        files[man["file"]] = {"sha256": man["sha256"], "bytes": man["bytes"], "rank": man["rank"]}
        for name, t in man["tensors"].items():
            entry = tensors.setdefault(name, {"shape": t["global_shape"], "dtype": t["dtype"], "slices": []})
            if entry["shape"] != t["global_shape"] or entry["dtype"] != t["dtype"]:
                raise CheckpointError(
                    f"tensor {name!r}: rank {man['rank']} saved global shape {t['global_shape']} "
                    f"{t['dtype']}, another rank {entry['shape']} {entry['dtype']}")
            piece = {"file": man["file"], "offsets": t["offsets"], "shape": t["shape"]}
            # Replicated copies of the same block (e.g. every DP rank) are recorded once.
            if not any(s["offsets"] == piece["offsets"] and s["shape"] == piece["shape"]
                       for s in entry["slices"]):
                entry["slices"].append(piece)
    for name, entry in tensors.items():
        check_coverage(name, entry)
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "step": int(step),
            "world_size": len(rank_manifests), "files": files, "tensors": tensors}


def check_coverage(name: str, entry: dict) -> None:
    """Raise unless the slices of a tensor tile its global shape exactly (no gap, no overlap)."""
    shape = entry["shape"]
    total = int(np.prod(shape, dtype=np.int64))
    covered = sum(int(np.prod(s["shape"], dtype=np.int64)) for s in entry["slices"])
    boxes = [(s["offsets"], s["shape"]) for s in entry["slices"]]
    for i, (oa, sa) in enumerate(boxes):
        for ob, sb in boxes[i + 1:]:
            if all(a < b + lb and b < a + la for a, la, b, lb in zip(oa, sa, ob, sb)) and total:
                raise CheckpointError(f"tensor {name!r}: saved slices at {oa} and {ob} overlap")
    if covered != total:
        raise CheckpointError(f"tensor {name!r}: saved slices cover {covered} of {total} elements "
                              f"of global shape {tuple(shape)}")


def validate_index(index: dict, where: str) -> None:
    """Raise a CheckpointError naming ``where`` unless ``index`` is a well-formed index."""
    if not isinstance(index, dict) or index.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{where}: not an {FORMAT_NAME} index")
    if index.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{where}: index version {index.get('version')}, "
                              f"this mfcore reads version {FORMAT_VERSION}")
    for key in ("step", "files", "tensors"):
        if key not in index:
            raise CheckpointError(f"{where}: index has no {key!r}")
    for fname in index["files"]:  # names of files are joined to the checkpoint directory
        contained_path(os.path.dirname(where), fname, where, CheckpointError)
    for name, entry in index["tensors"].items():
        numpy_dtype(entry["dtype"], f"{where}: tensor {name!r}")
        for s in entry["slices"]:
            if s["file"] not in index["files"]:
                raise CheckpointError(f"{where}: tensor {name!r} refers to unknown file {s['file']!r}")
