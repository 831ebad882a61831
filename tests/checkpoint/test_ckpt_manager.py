"""CheckpointManager: round trip, layout on disk, rotation, corrupt/incomplete newest, mismatch."""
import json
import os

import numpy as np
import pytest

from mfcore.checkpoint import CheckpointManager, CheckpointMismatchError, ShardSpec
from mfcore.errors import CheckpointError


def _tensors(step):
    rng = np.random.default_rng(step)
    return {
        "model.w": rng.standard_normal((8, 6)).astype(np.float32),
        "model.h": rng.standard_normal(5).astype(np.float16),
        "opt.count": np.array(step, dtype=np.int64),
        "mask": rng.integers(0, 2, (3, 3)).astype(np.bool_),
    }


def _state(step):
    return {"consumed_samples": 16 * step, "lr_schedule": {"step": step},
            "numpy_rng": np.random.default_rng(step).bit_generator.state,
            "dataset_fingerprint": "abc", "model_config": {"hidden_size": 64, "num_layers": 2}}


@pytest.mark.parametrize("async_save", [False, True])
def test_round_trip_bitwise(tmp_path, async_save):
    mgr = CheckpointManager(tmp_path / "ck", async_save=async_save)
    saved = _tensors(7)
    report = mgr.save(7, saved, _state(7))
    mgr.wait()
    assert report.stall_s > 0 and report.write_s > 0
    if not async_save:  # a sync save stalls for the whole write
        assert report.stall_s >= report.write_s
    got = CheckpointManager(tmp_path / "ck").load("auto")
    assert got.step == 7 and got.skipped == []
    assert set(got.tensors) == set(saved)
    for name, arr in saved.items():
        assert got.tensors[name].dtype == arr.dtype and got.tensors[name].shape == arr.shape
        assert got.tensors[name].tobytes() == arr.tobytes()
    assert got.trainer_state["consumed_samples"] == 112 and got.trainer_state["step"] == 7
    assert got.trainer_state["numpy_rng"] == json.loads(json.dumps(_state(7)["numpy_rng"]))


def test_async_copies_before_returning(tmp_path):
    """The caller may overwrite its arrays right after save() returns (training continues)."""
    mgr = CheckpointManager(tmp_path, async_save=True)
    w = np.ones((64, 64), np.float32)
    mgr.save(1, {"w": w}, {})
    w[:] = 5.0
    mgr.wait()
    assert np.all(mgr.load("auto").tensors["w"] == 1.0)


def test_layout_names_latest_marker(tmp_path):
    mgr = CheckpointManager(tmp_path)
    mgr.save(1000, _tensors(1), _state(1))
    step_dir = tmp_path / "step_00001000"
    assert sorted(os.listdir(step_dir)) == ["COMPLETE", "index.json", "rank_00000.safetensors",
                                           "trainer_state.json"]
    assert (tmp_path / "latest").read_text().strip() == "step_00001000"
    index = json.loads((step_dir / "index.json").read_text())
    assert index["tensors"]["model.w"] == {"shape": [8, 6], "dtype": "F32", "slices": [
        {"file": "rank_00000.safetensors", "offsets": [0, 0], "shape": [8, 6]}]}
    assert index["files"]["rank_00000.safetensors"]["bytes"] == os.path.getsize(step_dir / "rank_00000.safetensors")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp")]


def test_rotation_keeps_last_n(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last_n=2)
    for step in (10, 20, 30, 40):
        mgr.save(step, _tensors(step), _state(step))
    assert sorted(d for d in os.listdir(tmp_path) if d.startswith("step_")) == ["step_00000030", "step_00000040"]


def test_rotation_never_deletes_only_valid(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last_n=1)
    mgr.save(1, _tensors(1), _state(1))
    os.makedirs(tmp_path / "step_00000002")  # an incomplete newer directory (no marker)
    mgr.save(3, _tensors(3), _state(3))
    assert os.path.isdir(tmp_path / "step_00000003")
    assert not os.path.isdir(tmp_path / "step_00000001")
    assert mgr.load("auto").step == 3


def _save_two(tmp_path):
    mgr = CheckpointManager(tmp_path)
    mgr.save(1, _tensors(1), _state(1))
    mgr.save(2, _tensors(2), _state(2))
    return mgr, tmp_path / "step_00000002"


def test_truncated_newest_falls_back(tmp_path):
    mgr, newest = _save_two(tmp_path)
    shard = newest / "rank_00000.safetensors"
    os.truncate(shard, os.path.getsize(shard) - 7)
    got = mgr.load("auto")
    assert got.step == 1
    assert got.tensors["model.w"].tobytes() == _tensors(1)["model.w"].tobytes()
    assert len(got.skipped) == 1 and "truncated" in got.skipped[0][1] and str(newest) in got.skipped[0][0]


def test_flipped_byte_newest_falls_back(tmp_path, caplog):
    mgr, newest = _save_two(tmp_path)
    shard = newest / "rank_00000.safetensors"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x40
    shard.write_bytes(bytes(data))
    got = mgr.load("auto")
    assert got.step == 1 and "checksum mismatch" in got.skipped[0][1]
    assert "not usable" in caplog.text and "step_00000002" in caplog.text
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        mgr.load(str(newest))  # an explicit path never falls back


def test_missing_marker_is_never_loaded(tmp_path):
    mgr, newest = _save_two(tmp_path)
    os.remove(newest / "COMPLETE")
    assert mgr.load("auto").step == 1
    with pytest.raises(CheckpointError, match="incomplete checkpoint"):
        mgr.load(str(newest))


def test_edited_index_is_rejected(tmp_path):
    mgr, newest = _save_two(tmp_path)
    idx = newest / "index.json"
    idx.write_text(idx.read_text().replace('"step": 2', '"step": 3'))
    assert mgr.load("auto").step == 1


def test_all_corrupt_is_an_error_empty_is_none(tmp_path):
    assert CheckpointManager(tmp_path / "none").load("auto") is None
    mgr = CheckpointManager(tmp_path)
    mgr.save(1, _tensors(1), _state(1))
    (tmp_path / "step_00000001" / "trainer_state.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no usable checkpoint.*trainer_state.json: checksum mismatch"):
        mgr.load("auto")


def test_mismatch_names_what_differs(tmp_path):
    mgr = CheckpointManager(tmp_path)
    mgr.save(1, _tensors(1), _state(1))
    mgr.save(2, _tensors(2), _state(2))
    expect = {"dataset_fingerprint": "xyz", "model_config": {"hidden_size": 128, "num_layers": 2}}
    with pytest.raises(CheckpointMismatchError) as e:
        mgr.load("auto", expect=expect)
    msg = str(e.value)
    assert "dataset fingerprint: value: checkpoint has 'abc', now 'xyz'" in msg
    assert "model config: hidden_size: checkpoint has 64, now 128" in msg and "num_layers" not in msg
    got = mgr.load("auto", expect=expect, allow_mismatch=True)
    assert got.step == 2
    assert mgr.load("auto", expect={"dataset_fingerprint": "abc"}).step == 2


def test_bad_inputs_are_clear_errors(tmp_path):
    mgr = CheckpointManager(tmp_path)
    with pytest.raises(CheckpointError, match="'w'.*does not fit"):
        mgr.save(1, {"w": (np.zeros((3, 2), np.float32), ShardSpec((4, 2), (2, 0)))}, {})
    with pytest.raises(CheckpointError, match="cannot be stored"):
        mgr.save(1, {"w": np.array(["a"])}, {})
    with pytest.raises(CheckpointError, match="not JSON|trainer state"):
        mgr.save(1, {"w": np.zeros(2, np.float32)}, {"bad": object()})
    mgr.save(2, {"w": np.zeros(2, np.float32)}, {})
    with pytest.raises(CheckpointError, match="has no tensor 'v'"):
        mgr.load("auto", names=["v"])
    with pytest.raises(CheckpointError, match="global shape"):
        mgr.load("auto", shards={"w": ShardSpec((3,), (0,))})
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        mgr.load(str(tmp_path / "step_00000009"))


def test_rotation_keeps_the_checkpoint_resumed_from(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last_n=1)
    mgr.save(1, _tensors(1), _state(1))
    mgr.save(2, _tensors(2), _state(2))
    assert sorted(os.listdir(tmp_path)) == ["latest", "step_00000002"]
    resumed = CheckpointManager(tmp_path, keep_last_n=1)
    assert resumed.load(str(tmp_path / "step_00000002")).step == 2
    resumed.save(3, _tensors(3), _state(3))
    resumed.save(4, _tensors(4), _state(4))
    assert sorted(os.listdir(tmp_path)) == ["latest", "step_00000002", "step_00000004"]
