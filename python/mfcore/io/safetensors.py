"""Reading and writing Hugging Face weight files (``.safetensors``, single or sharded with an index).

Reading parses the format directly (8-byte little-endian header size, JSON header, raw data) so that
bfloat16 tensors, which NumPy has no type for, load as float32 (bfloat16 is the top half of a
float32). Writing uses the ``safetensors`` package and renames complete files into place.
"""
import json
import os
import struct

import numpy as np
from safetensors.numpy import save_file

from mfcore.errors import CheckpointError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
           "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def _read_header(path, fh, size):
    raw = fh.read(8)
    if len(raw) != 8:
        raise CheckpointError(f"{path}: too short to be a safetensors file")
    (length,) = struct.unpack("<Q", raw)
    if length > size - 8:
        raise CheckpointError(f"{path}: header length {length} exceeds the file size {size}")
    try:
        header = json.loads(fh.read(length))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors header: {exc}") from None
    header.pop("__metadata__", None)
    return header, 8 + length


def _decode(path, name, info, data):
    dtype, shape = info.get("dtype"), info.get("shape")
    begin, end = info.get("data_offsets", (0, -1))
    if dtype == "BF16":
        np_dtype, item = np.uint16, 2
    elif dtype in _DTYPES:
        np_dtype = _DTYPES[dtype]
        item = np.dtype(np_dtype).itemsize
    else:
        raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
    count = int(np.prod(shape)) if shape else 1
    if not 0 <= begin <= end <= len(data) or end - begin != count * item:
        raise CheckpointError(f"{path}: tensor {name!r} offsets {begin}..{end} do not match "
                              f"shape {shape} of {dtype} within {len(data)} data bytes")
    array = np.frombuffer(data, np_dtype, count, begin).reshape(shape)
    if dtype == "BF16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def read_safetensors(path):
    """All tensors of one ``.safetensors`` file as ``{name: numpy array}`` (bfloat16 → float32)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            header, start = _read_header(path, fh, size)
            fh.seek(start)
            data = fh.read()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror}") from None
    return {name: _decode(path, name, info, data) for name, info in header.items()}


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
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{index}: not a valid safetensors index ({exc})") from None
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        tensors.update(read_safetensors(os.path.join(directory, shard)))
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise CheckpointError(f"{index}: tensors listed but not found in the shards: {missing[:5]}")
    return tensors


def _atomic_save(tensors, path):
    tmp = path + ".tmp"
    save_file(tensors, tmp, metadata={"format": "pt"})
    os.replace(tmp, path)


def _shards(tensors, max_shard_bytes):
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
        _atomic_save(shards[0], os.path.join(directory, SINGLE_FILE))
        return [SINGLE_FILE]
    names, weight_map = [], {}
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        _atomic_save(shard, os.path.join(directory, name))
        weight_map.update({k: name for k in shard})
        names.append(name)
    index = {"metadata": {"total_size": int(sum(v.nbytes for v in tensors.values()))},
             "weight_map": weight_map}
    tmp = os.path.join(directory, INDEX_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(index, fh, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(directory, INDEX_FILE))
    return names
