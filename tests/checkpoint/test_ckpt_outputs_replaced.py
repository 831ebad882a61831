"""Issue 21 rows 3 and 8: mf-ckpt export-hf and merge replace their output directory whole. A sharded
export over an older single-file export leaves no stale model.safetensors (import-hf loaded it: wrong
weights, no warning); a non-empty directory mfcore did not write is refused unless --overwrite (and
then moved aside, not deleted); a failing export leaves the old directory as it was."""
import os

import numpy as np
import pytest

from mfcore.checkpoint.manager import load_checkpoint
from mfcore.cli.ckpt import main
from mfcore.io.safetensors import read_hf_weights
from test_ckpt_hf import _random_model, _save_two_ranks


def _snapshot(d):
    return {f: open(os.path.join(d, f), "rb").read() for f in sorted(os.listdir(d))}


@pytest.fixture
def two_checkpoints(in_tmp):
    """Two checkpoints of one tiny model with different weights (roots a/ and b/)."""
    a = _save_two_ranks(in_tmp / "a", _random_model("tiny-llama3"))
    model_b = _random_model("tiny-llama3")
    import mindspore as ms
    for p in model_b.get_parameters():
        p.set_data(ms.Tensor(p.asnumpy() * 2))
    b = _save_two_ranks(in_tmp / "b", model_b)
    return in_tmp, a, b


def test_sharded_export_over_a_single_file_export_leaves_no_stale_file(two_checkpoints, capsys):
    tmp, _, arrays_b = two_checkpoints
    hf = tmp / "hf"
    assert main(["export-hf", str(hf), "-c", str(tmp / "a")]) == 0
    assert "model.safetensors" in os.listdir(hf)
    assert main(["export-hf", str(hf), "-c", str(tmp / "b"), "--max-shard-size", "200KB"]) == 0
    files = os.listdir(hf)
    assert "model.safetensors" not in files and "model.safetensors.index.json" in files
    assert not [f for f in os.listdir(tmp) if f.startswith("hf.")]  # no temporary or old dir left
    # what import-hf reads is checkpoint b's weights
    assert main(["import-hf", str(hf), "-c", str(tmp / "imported")]) == 0
    got = load_checkpoint(str(tmp / "imported")).tensors
    for name, arr in arrays_b.items():
        assert np.array_equal(got[name], arr), name


def test_export_into_a_foreign_directory_is_refused_unless_overwrite(two_checkpoints, capsys):
    tmp, _, _ = two_checkpoints
    foreign = tmp / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("my notes")
    capsys.readouterr()
    assert main(["export-hf", str(foreign), "-c", str(tmp / "a")]) == 2
    err = capsys.readouterr().err
    assert str(foreign) in err and "--overwrite" in err and "Traceback" not in err
    assert _snapshot(foreign) == {"notes.txt": b"my notes"}
    assert main(["merge", str(foreign), "-c", str(tmp / "a")]) == 2
    assert main(["export-hf", str(foreign), "-c", str(tmp / "a"), "--overwrite"]) == 0
    assert "model.safetensors" in os.listdir(foreign)
    aside = [f for f in os.listdir(tmp) if f.startswith("mine.old-")]
    assert len(aside) == 1 and _snapshot(tmp / aside[0]) == {"notes.txt": b"my notes"}


def test_merge_replaces_its_own_output_whole(two_checkpoints, capsys):
    tmp, _, arrays_b = two_checkpoints
    out = tmp / "merged"
    assert main(["merge", str(out), "-c", str(tmp / "a"), "--max-shard-size", "200KB"]) == 0
    assert "model.safetensors.index.json" in os.listdir(out)
    assert main(["merge", str(out), "-c", str(tmp / "b")]) == 0
    assert sorted(f for f in os.listdir(out) if not f.startswith(".")) == ["model.safetensors", "trainer_state.json"]
    got = read_hf_weights(str(out))
    assert set(got) == set(arrays_b)
    for name, arr in arrays_b.items():
        assert np.array_equal(got[name], arr), name


def test_failed_export_leaves_the_old_directory(two_checkpoints, capsys):
    tmp, _, _ = two_checkpoints
    hf = tmp / "hf"
    assert main(["export-hf", str(hf), "-c", str(tmp / "a")]) == 0
    before = _snapshot(hf)
    assert main(["export-hf", str(hf), "-c", str(tmp / "missing")]) == 2
    assert _snapshot(hf) == before
