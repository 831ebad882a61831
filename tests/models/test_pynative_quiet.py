"""Eager (PyNative) use of a model prints nothing on stderr.

MindSpore 2.10 is compiled against NumPy 1.x; under NumPy 2 its first eager op (argument parsing in
``libmindspore_common``) fails to load NumPy's C API and prints "A module that was compiled using
NumPy 1.x cannot be run in NumPy 2..." with a traceback. ``pyproject.toml`` pins ``numpy<2`` for
that; this test runs a fresh interpreter, as a user's first eager forward would be.
"""
import os
import subprocess
import sys

SCRIPT = """
import mindspore as ms
import numpy as np
from mindspore import Tensor, ops
ms.set_context(mode=ms.PYNATIVE_MODE)
from mfcore.models import build_model
model = build_model("tiny-llama3")
ids = Tensor(np.arange(12, dtype=np.int32).reshape(2, 6))
logits = model(ids).asnumpy()
assert logits.shape == (2, 6, model.config.vocab_size), logits.shape
assert np.isfinite(logits).all()
print(int(ops.arange(5).sum()))
"""


def test_pynative_forward_prints_nothing_on_stderr(tmp_path):
    env = dict(os.environ, GLOG_v="3")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "10"
    assert proc.stderr == "", proc.stderr
