"""safetensors files: the one reader (whole files, or any slice of a tensor) and writer in mfcore,
and the Hugging Face file set (``model.safetensors``, or shards + ``model.safetensors.index.json``).

The reader parses the format itself (8-byte little-endian header size, JSON header, raw data) and
memory-maps the data, so a slice reads only the bytes it covers, and bfloat16 tensors, which NumPy
has no type for, come out as float32 (bfloat16 is the top half of a float32). Writing uses the
``safetensors`` package and renames complete files into place (:mod:`mfcore.io.atomic`).
"""
import json
import math
import os
import struct
from typing import Dict, Iterable, List

import numpy as np
from safetensors.numpy import save_file

from mfcore.errors import CheckpointError
from mfcore.io.atomic import atomic_path, write_json
from mfcore.io.paths import contained_path

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_, "BF16": np.uint16}


class SafetensorsFile:
    """One ``.safetensors`` file: ``names()``, ``shape(name)``, ``read(name, index=())``."""

    def __init__(self, path: str):
        self.path = os.fspath(path)
        try:
            size = os.path.getsize(self.path)
            with open(self.path, "rb") as fh:
                self._header, start = _read_header(self.path, fh, size)
            self._data = np.memmap(self.path, np.uint8, "r", offset=start) if size > start \
                else np.zeros(0, np.uint8)
        except OSError as exc:
            raise CheckpointError(f"{self.path}: cannot read: {exc.strerror}") from None
        for name, info in self._header.items():
            _check_entry(self.path, name, info, len(self._data))

    def names(self) -> List[str]:
        return list(self._header)

    def shape(self, name: str):
        return tuple(self._entry(name)["shape"])

    def read(self, name: str, index=()) -> np.ndarray:
        """Tensor ``name`` (a copy), or its part ``index`` (a tuple of slices): bfloat16 → float32."""
        info = self._entry(name)
        begin, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        array = self._data[begin:end].view(dtype).reshape(info["shape"])
        part = np.array(array[index] if index else array)
        if info["dtype"] == "BF16":
            part = (part.astype(np.uint32) << 16).view(np.float32)
        return part

    def _entry(self, name: str) -> dict:
        if name not in self._header:
            raise CheckpointError(f"{self.path}: no tensor {name!r}")
        return self._header[name]


def _read_header(path, fh, size):
    raw = fh.read(8)
    if len(raw) != 8:
        raise CheckpointError(f"{path}: too short to be a safetensors file")
    (length,) = struct.unpack("<Q", raw)
    if length > size - 8:
        raise CheckpointError(f"{path}: header length {length} exceeds the file size {size}")
    try:
        header = json.loads(fh.read(length))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors header: {exc}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a mapping")
    header.pop("__metadata__", None)
    return header, 8 + length


def _check_entry(path, name, info, data_bytes):
    """One header entry must be {dtype: known, shape: [int >= 0], data_offsets: [int, int]} whose
    offsets lie within the data and match the shape."""
    well_formed = (isinstance(info, dict) and isinstance(info.get("dtype"), str)
                   and isinstance(info.get("shape"), list) and isinstance(info.get("data_offsets"), list)
                   and len(info["data_offsets"]) == 2
                   and all(type(v) is int and v >= 0 for v in info["shape"] + info["data_offsets"]))
    if not well_formed:
        raise CheckpointError(f"{path}: malformed safetensors header entry for {name!r}: {str(info)[:200]}")
    dtype, shape = info["dtype"], info["shape"]
    if dtype not in _DTYPES:
        raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
    begin, end = info["data_offsets"]
    count = math.prod(shape)  # exact: a huge shape cannot wrap around to match the offsets
    if not 0 <= begin <= end <= data_bytes or end - begin != count * np.dtype(_DTYPES[dtype]).itemsize:
        raise CheckpointError(f"{path}: tensor {name!r} offsets {begin}..{end} do not match "
                              f"shape {shape} of {dtype} within {data_bytes} data bytes")


def read_safetensors(path) -> Dict[str, np.ndarray]:
    """All tensors of one ``.safetensors`` file as ``{name: numpy array}`` (bfloat16 → float32)."""
    f = SafetensorsFile(path)
    return {name: f.read(name) for name in f.names()}


def write_safetensors(tensors: Dict[str, np.ndarray], path: str, metadata=None, durable: bool = True) -> None:
    """Write ``tensors`` to ``path`` atomically (complete, fsynced, then renamed into place)."""
    with atomic_path(path, durable) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, tmp, metadata=metadata)


def read_hf_weights(directory):
    """The tensors of an HF model directory: ``model.safetensors`` or the shards of its index."""
    single = os.path.join(directory, SINGLE_FILE)
    index = os.path.join(directory, INDEX_FILE)
    if os.path.isfile(single):
        return read_safetensors(single)
    if not os.path.isfile(index):
        raise CheckpointError(f"{directory}: neither {SINGLE_FILE} nor {INDEX_FILE} is present")
    try:
        with open(index, "r", encoding="utf-8") as fh:
            weight_map = json.load(fh)["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{index}: not a valid safetensors index ({exc})") from None
    tensors = {}
    for shard in shards:
        tensors.update(read_safetensors(contained_path(directory, shard, index, CheckpointError)))
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise CheckpointError(f"{index}: tensors listed but not found in the shards: {missing[:5]}")
    return tensors


def _shards(tensors, max_shard_bytes) -> Iterable[dict]:
    shards, current, size = [], {}, 0
    for name in tensors:
        nbytes = tensors[name].nbytes
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = tensors[name]
        size += nbytes
    shards.append(current)
    return shards


def write_hf_weights(tensors, directory, max_shard_bytes=5 * 1024 ** 3):
    """Write ``tensors`` as ``model.safetensors``, or as shards + index past ``max_shard_bytes``."""
    os.makedirs(directory, exist_ok=True)
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    shards = _shards(tensors, max_shard_bytes)
    if len(shards) == 1:
        write_safetensors(shards[0], os.path.join(directory, SINGLE_FILE), {"format": "pt"})
        return [SINGLE_FILE]
    names, weight_map = [], {}
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(shard, os.path.join(directory, name), {"format": "pt"})
        weight_map.update({k: name for k in shard})
        names.append(name)
    index = {"metadata": {"total_size": int(sum(v.nbytes for v in tensors.values()))},
             "weight_map": weight_map}
    write_json(os.path.join(directory, INDEX_FILE), index, indent=2, sort_keys=True)
    return names
