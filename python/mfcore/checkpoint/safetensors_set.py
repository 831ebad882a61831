"""A "safetensors set": the Hugging Face way of storing one model's tensors in several files.

    model-00001-of-00003.safetensors ... model-00003-of-00003.safetensors
    model.safetensors.index.json      {"metadata": {"total_size": N}, "weight_map": {name: file}}

Used by ``mf-ckpt merge`` (unified, un-sharded tensors of an mfcore checkpoint) and by the Hugging
Face export/import. Files carry ``{"format": "pt"}`` metadata, which ``transformers`` requires.
"""
import json
import os
import re
import struct
from typing import Dict, List, Mapping, Optional

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from mfcore.errors import CheckpointError

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def parse_size(text: str) -> int:
    """``"5GB"`` → 5_000_000_000, ``"500MiB"`` → 524_288_000 (the units HF's max_shard_size takes)."""
    m = _SIZE_RE.match(str(text))
    unit = m.group(2).upper() if m else None
    if not m or unit not in _UNITS or float(m.group(1)) <= 0:
        raise CheckpointError(f"bad size {text!r} (expected e.g. 5GB, 500MB, 2GiB)")
    return int(float(m.group(1)) * _UNITS[unit])


def shard_names(tensors: Mapping[str, np.ndarray], max_shard_bytes: int) -> List[List[str]]:
    """Group tensor names (in order) into files of at most ``max_shard_bytes`` (a larger tensor
    gets a file of its own)."""
    groups, size = [[]], 0
    for name, arr in tensors.items():
        if groups[-1] and size + arr.nbytes > max_shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += arr.nbytes
    return [g for g in groups if g]


def write_set(tensors: Mapping[str, np.ndarray], out_dir: str, max_shard_bytes: int = 5 * 10**9,
              metadata: Optional[Dict[str, str]] = None) -> List[str]:
    """Write ``tensors`` as ``model-0000i-of-0000n.safetensors`` + index; returns the file names."""
    os.makedirs(out_dir, exist_ok=True)
    groups = shard_names(tensors, max_shard_bytes)
    n = len(groups)
    weight_map, files = {}, []
    for i, names in enumerate(groups, start=1):
        fname = f"model-{i:05d}-of-{n:05d}.safetensors"
        arrays = {k: np.ascontiguousarray(tensors[k]) for k in names}
        save_file(arrays, os.path.join(out_dir, fname), metadata={"format": "pt", **(metadata or {})})
        weight_map.update({k: fname for k in names})
        files.append(fname)
    total = int(sum(np.asarray(a).nbytes for a in tensors.values()))
    with open(os.path.join(out_dir, INDEX_NAME), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
    return files


def read_set(in_dir: str) -> Dict[str, np.ndarray]:
    """Every tensor of a set (sharded with an index, or a single ``model.safetensors``)."""
    index_path = os.path.join(in_dir, INDEX_NAME)
    if os.path.exists(index_path):
        try:
            with open(index_path) as f:
                weight_map = json.load(f)["weight_map"]
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index_path}: not a safetensors index ({e!r})") from None
        files = sorted(set(weight_map.values()))
    elif os.path.exists(os.path.join(in_dir, SINGLE_NAME)):
        weight_map, files = None, [SINGLE_NAME]
    else:
        raise CheckpointError(f"{in_dir}: no {INDEX_NAME} or {SINGLE_NAME}")
    out: Dict[str, np.ndarray] = {}
    for fname in files:
        path = os.path.join(in_dir, fname)
        try:
            with safe_open(path, framework="np") as f:
                for key in f.keys():
                    bf16 = f.get_slice(key).get_dtype() == "BF16"
                    out[key] = read_bf16_as_f32(path, key) if bf16 else f.get_tensor(key)
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{path}: cannot read ({e})") from None
    if weight_map is not None:
        missing = sorted(set(weight_map) - set(out))
        if missing:
            raise CheckpointError(f"{index_path}: tensors listed but not in their files: {missing[:5]}")
    return out


def read_bf16_as_f32(path: str, key: str) -> np.ndarray:
    """A bfloat16 tensor widened exactly to float32 (numpy has no bfloat16; HF weights often are).

    bfloat16 is the upper half of a float32, so shifting the 16 bits up is lossless."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        meta = json.loads(f.read(n))[key]
        begin, end = meta["data_offsets"]
        f.seek(8 + n + begin)
        raw = np.frombuffer(f.read(end - begin), dtype="<u2")
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(meta["shape"])
