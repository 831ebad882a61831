"""The victim of tests/test_fault_injection.py, run in a subprocess so that a crash shows as a
signal exit. ``python tests/fault_victim.py KIND DIR...``: uses the artefacts under each DIR the way
mfcore does, printing ``BEGIN DIR`` first and then ``RESULT DIR ok`` or ``RESULT DIR error:
<message>`` for an mfcore error. Anything else escaping (exit 1 with a traceback) or a signal is a
failure, and the last BEGIN line names the case."""
import os
import sys

import numpy as np

from mfcore.errors import MfcoreError


def use_dataset(d):
    from mfcore.data import IndexedDataset, build_gpt_datasets
    ds = IndexedDataset(os.path.join(d, "data"))
    for i in range(len(ds)):
        ds[i]
    train = build_gpt_datasets(os.path.join(d, "data"), "98,2,0", 16, 3, [300, 5, 0], os.path.join(d, "cache"))[0]
    np.asarray(train.text(range(len(train)))).sum()


def use_checkpoints(d):
    from mfcore.checkpoint import CheckpointManager
    from mfcore.checkpoint.summary import describe, verify
    root = os.path.join(d, "ck")
    describe(root)
    for result in verify(root):
        if not result.ok:
            print(f"corrupt: {result.message}", flush=True)
    loaded = CheckpointManager(root).load("auto")
    assert loaded is not None and loaded.step in (2, 4), loaded


def use_hf(d):
    from mfcore.io.safetensors import read_hf_weights
    read_hf_weights(os.path.join(d, "hf"))


KINDS = {"dataset": use_dataset, "cache": use_dataset, "checkpoint": use_checkpoints, "hf": use_hf}


def main() -> int:
    kind = sys.argv[1]
    for d in sys.argv[2:]:
        print(f"BEGIN {d}", flush=True)
        try:
            KINDS[kind](d)
        except MfcoreError as e:
            print(f"RESULT {d} error: {e}", flush=True)
        else:
            print(f"RESULT {d} ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
