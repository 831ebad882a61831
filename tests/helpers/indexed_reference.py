"""An independent, slow reader and writer of the Megatron .idx/.bin format written from the spec with
struct + numpy only, so the C++ engine is held against a second implementation, not against itself."""
import struct

import numpy as np

MAGIC = b"MMIDIDX\x00\x00"
CODES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float64", 7: "float32", 8: "uint16"}
CODE_OF = {name: code for code, name in CODES.items()}


def read_index(path, multimodal=False):
    """Parse an .idx into a dict of plain Python / numpy values (asserting the layout)."""
    raw = open(path, "rb").read()
    magic, version, code, n, d = struct.unpack_from("<9sQBQQ", raw, 0)
    assert magic == MAGIC and version == 1, (magic, version)
    pos = 34
    lengths = np.frombuffer(raw, "<i4", n, pos)
    pos += 4 * n
    pointers = np.frombuffer(raw, "<i8", n, pos)
    pos += 8 * n
    docs = np.frombuffer(raw, "<i8", d, pos)
    pos += 8 * d
    modes = np.frombuffer(raw, "i1", n, pos) if multimodal else None
    pos += n if multimodal else 0
    assert pos == len(raw), (pos, len(raw))
    return {"dtype": np.dtype(CODES[code]), "lengths": lengths, "pointers": pointers, "docs": docs, "modes": modes}


def write_dataset(prefix, documents, dtype, modes=None):
    """Write documents (each a list of 1-D arrays = its sequences) the slow way; modes per sequence."""
    dtype = np.dtype(dtype)
    lengths, pointers, docs, pos = [], [], [0], 0
    with open(f"{prefix}.bin", "wb") as f:
        for doc in documents:
            for seq in doc:
                seq = np.asarray(seq, dtype=dtype)
                f.write(seq.astype(dtype.newbyteorder("<")).tobytes())
                lengths.append(len(seq))
                pointers.append(pos)
                pos += len(seq) * dtype.itemsize
            docs.append(len(lengths))
    with open(f"{prefix}.idx", "wb") as f:
        f.write(struct.pack("<9sQBQQ", MAGIC, 1, CODE_OF[dtype.name], len(lengths), len(docs)))
        f.write(np.asarray(lengths, "<i4").tobytes())
        f.write(np.asarray(pointers, "<i8").tobytes())
        f.write(np.asarray(docs, "<i8").tobytes())
        if modes is not None:
            f.write(np.asarray(modes, "i1").tobytes())


def read_sequence(prefix, index, i):
    """Sequence i read with plain file I/O."""
    with open(f"{prefix}.bin", "rb") as f:
        f.seek(int(index["pointers"][i]))
        raw = f.read(int(index["lengths"][i]) * index["dtype"].itemsize)
    return np.frombuffer(raw, index["dtype"].newbyteorder("<"))
