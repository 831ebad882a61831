"""Fuzz the indexed dataset parser (atheris, libFuzzer flags pass through).

    .venv/bin/python tools/fuzz_indexed.py -runs=1000000 -seed=1      # the long run
    .venv/bin/python tools/fuzz_indexed.py -runs=20000                # the bounded run of the tests

The C++ core is not coverage-instrumented (gcc has no libFuzzer), so inputs are made structure-aware:
most are near-valid .idx images (valid header and arrays with one fuzz-chosen perturbation), the rest
raw bytes. Each input is checked three ways: the in-memory validator must agree with an independent
Python validity oracle written here from the spec; every message must name the file and a field; and
a sample of the inputs is written to disk and opened with mfcore.data.IndexedDataset, which must either
raise IndexedDatasetError or read every sequence exactly as the oracle's own parse says. A crash
(signal, wrong verdict, other exception) stops the run and libFuzzer saves the input as crash-*;
add it to tests/data/fuzz_regressions/ so the test suite replays it forever.
"""
import os
import re
import shutil
import struct
import sys
import tempfile

import atheris
import numpy as np

with atheris.instrument_imports():
    from mfcore import _core
    from mfcore.data import IndexedDataset, IndexedDatasetError
from mfcore.io.atomic import atomic_open

MAGIC = b"MMIDIDX\x00\x00"
ITEMSIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 8, 7: 4, 8: 2}
MESSAGE = re.compile(r"^<(idx|bin)>: [a-z -]+: \S")


@atheris.instrument_func  # its branches are the spec's checks: coverage feedback for the mutator
def oracle(idx: bytes, bin_size: int, multimodal: bool):
    """Independent parse: (lengths, pointers, itemsize) when the spec says the image is valid, else None."""
    if len(idx) < 34 or idx[:9] != MAGIC:
        return None
    version, code, n, d = struct.unpack_from("<QBQQ", idx, 9)
    if version != 1 or code not in ITEMSIZE or d < 1:
        return None
    expected = 34 + (13 if multimodal else 12) * n + 8 * d
    if len(idx) != expected and (multimodal or len(idx) != expected + n):
        return None
    lengths = np.frombuffer(idx, "<i4", n, 34).astype(np.int64)
    pointers = np.frombuffer(idx, "<i8", n, 34 + 4 * n)
    docs = np.frombuffer(idx, "<i8", d, 34 + 12 * n)
    if (lengths < 0).any():
        return None
    starts = np.concatenate([[0], np.cumsum(lengths * ITEMSIZE[code])])
    if not np.array_equal(pointers, starts[:-1]) or int(starts[-1]) > bin_size:
        return None
    if docs[0] != 0 or (np.diff(docs) < 0).any() or docs[-1] != n:
        return None
    return lengths, pointers, ITEMSIZE[code]


@atheris.instrument_func
def near_valid(fdp: atheris.FuzzedDataProvider):
    """A valid .idx image with at most a couple of fuzz-chosen corruptions, and a .bin size."""
    multimodal = fdp.ConsumeBool()
    code = fdp.ConsumeIntInRange(1, 8)
    n = fdp.ConsumeIntInRange(0, 6)
    lengths = [fdp.ConsumeIntInRange(0, 4) for _ in range(n)]
    pointers = np.concatenate([[0], np.cumsum(np.asarray(lengths, np.int64) * ITEMSIZE[code])])
    cuts = sorted({fdp.ConsumeIntInRange(0, n) for _ in range(fdp.ConsumeIntInRange(0, n))} | {0, n})
    header = [MAGIC, 1, code, n, len(cuts)]
    body = [np.asarray(lengths, "<i4"), pointers[:-1].astype("<i8"), np.asarray(cuts, "<i8"),
            np.asarray([fdp.ConsumeIntInRange(-128, 127) for _ in range(n)] if multimodal else [], "i1")]
    raw = bytearray(struct.pack("<9sQBQQ", *header) + b"".join(a.tobytes() for a in body))
    for _ in range(fdp.ConsumeIntInRange(0, 2)):  # corruptions: overwrite a field, or cut/extend the file
        kind = fdp.ConsumeIntInRange(0, 2)
        if kind == 0 and raw:
            at = fdp.ConsumeIntInRange(0, len(raw) - 1)
            width = fdp.PickValueInList([1, 4, 8])
            value = fdp.ConsumeIntInRange(-(2**63), 2**63 - 1) if fdp.ConsumeBool() else fdp.ConsumeIntInRange(-3, 12)
            raw[at:at + width] = value.to_bytes(8, "little", signed=True)[:width]
        elif kind == 1:
            del raw[fdp.ConsumeIntInRange(0, len(raw)):]
        else:
            raw += fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 16))
    bin_size = int(pointers[-1]) + fdp.ConsumeIntInRange(-2, 2)
    return bytes(raw[:]), max(bin_size, 0), multimodal


class DiskCheck:
    """Writes an input as a real dataset (new inodes each time, so no mapping ever sees a rewrite)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mfcore-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        self.prefix = os.path.join(self.dir, "d")

    def _replace(self, path: str, data: bytes) -> None:
        with atomic_open(path, "wb", durable=False) as f:  # /dev/shm, thousands of times: no fsync
            f.write(data)

    def run(self, idx: bytes, bin_bytes: bytes, multimodal: bool, parsed) -> None:
        self._replace(self.prefix + ".idx", idx)
        self._replace(self.prefix + ".bin", bin_bytes)
        try:
            ds = IndexedDataset(self.prefix, multimodal=multimodal)
        except IndexedDatasetError:
            assert parsed is None, "a valid dataset was refused on disk"
            return
        assert parsed is not None, "an invalid dataset opened from disk"
        lengths, pointers, itemsize = parsed
        assert ds.sequence_lengths.tolist() == lengths.tolist()
        for i in range(len(ds)):
            expected = bin_bytes[pointers[i]:pointers[i] + lengths[i] * itemsize]
            assert ds[i].tobytes() == expected
        if len(ds):
            out = np.empty(int(lengths.sum()), ds.dtype)
            ds.read_into(np.arange(len(ds)), np.zeros(len(ds)), lengths, out)
            assert out.tobytes() == bin_bytes[:int(lengths.sum()) * itemsize]


DISK = None
COUNT = 0


@atheris.instrument_func
def test_one_input(data: bytes) -> None:
    global DISK, COUNT
    COUNT += 1
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeIntInRange(0, 3) == 0:
        multimodal, bin_size = fdp.ConsumeBool(), fdp.ConsumeIntInRange(0, 64)
        idx = fdp.ConsumeBytes(fdp.remaining_bytes())
    else:
        idx, bin_size, multimodal = near_valid(fdp)
    problems = _core.check_index_bytes(idx, bin_size, multimodal)
    parsed = oracle(idx, bin_size, multimodal)
    assert (parsed is not None) == (not problems), (problems, parsed is not None)
    assert all(MESSAGE.match(p) for p in problems), problems
    if parsed is not None or COUNT % 64 == 0:  # the disk path is slower: every valid input, a sample of the rest
        DISK = DISK or DiskCheck()
        DISK.run(idx, bytes(range(256)) * (bin_size // 256) + bytes(range(bin_size % 256)), multimodal, parsed)


def main(argv=None) -> int:
    """Fuzz in a child process: libFuzzer ends with exit(), skipping any Python cleanup, so the parent
    removes the scratch directory and passes the child's status on."""
    global DISK
    DISK = DiskCheck()
    pid = os.fork()
    if pid == 0:
        atheris.Setup(list(argv or sys.argv), test_one_input)
        atheris.Fuzz()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    shutil.rmtree(DISK.dir, ignore_errors=True)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
