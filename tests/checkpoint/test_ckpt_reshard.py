"""Resharding: a checkpoint saved by several ranks at one layout loads at another, bit for bit.

The reference is plain numpy slicing of the global tensor the shards were cut from."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from helpers.ckpt_ranks import save_as_ranks
from mfcore.checkpoint import CheckpointManager, ShardSpec
from mfcore.errors import CheckpointError

GLOBAL = {
    "embed": np.arange(8 * 6, dtype=np.float32).reshape(8, 6) / 7,      # split on dim 0 (vocab)
    "o_proj": np.arange(4 * 10, dtype=np.float16).reshape(4, 10),        # split on dim 1 (TP rows)
    "norm": np.linspace(0, 1, 6).astype(np.float32),                      # replicated
    "exp_avg.embed": np.arange(48, dtype=np.float32).reshape(8, 6) * -1,  # ZeRO-style optimizer state
}
SPLIT_DIM = {"embed": 0, "o_proj": 1, "exp_avg.embed": 0}


def _rank_tensors(rank, parts):
    out = {}
    for name, arr in GLOBAL.items():
        if name not in SPLIT_DIM:
            out[name] = arr  # every rank passes its replica; the index records one copy
            continue
        spec = ShardSpec.split(arr.shape, SPLIT_DIM[name], rank, parts)
        box = tuple(slice(o, o + s) for o, s in zip(spec.offsets, spec.block_shape(SPLIT_DIM[name], parts)))
        out[name] = (arr[box], spec)
    return out


def _save_sharded(root, parts, step=5):
    save_as_ranks(root, step, [_rank_tensors(r, parts) for r in range(parts)], {"consumed_samples": 40})


def test_two_shards_load_whole(tmp_path):
    _save_sharded(tmp_path, 2)
    got = CheckpointManager(tmp_path).load("auto")
    for name, arr in GLOBAL.items():
        assert got.tensors[name].dtype == arr.dtype
        assert got.tensors[name].tobytes() == arr.tobytes(), name
    assert sorted(got.trainer_state) == ["consumed_samples", "step"]


def test_index_records_each_slice_once(tmp_path):
    import json
    _save_sharded(tmp_path, 2)
    index = json.loads((tmp_path / "step_00000005" / "index.json").read_text())
    assert index["world_size"] == 2 and sorted(index["files"]) == ["rank_00000.safetensors", "rank_00001.safetensors"]
    assert index["tensors"]["o_proj"]["slices"] == [
        {"file": "rank_00000.safetensors", "offsets": [0, 0], "shape": [4, 5]},
        {"file": "rank_00001.safetensors", "offsets": [0, 5], "shape": [4, 5]}]
    assert len(index["tensors"]["norm"]["slices"]) == 1


@pytest.mark.parametrize("new_parts,dim", [(4, 0), (2, 1), (3, 1)])
def test_two_shards_load_at_other_split(tmp_path, new_parts, dim):
    _save_sharded(tmp_path, 2)
    mgr = CheckpointManager(tmp_path)
    arr = GLOBAL["embed"]
    for r in range(new_parts):
        spec = ShardSpec.split(arr.shape, dim, r, new_parts)
        shape = spec.block_shape(dim, new_parts)
        got = mgr.load("auto", names=["embed"], shards={"embed": spec}, block_shapes={"embed": shape})
        box = tuple(slice(o, o + s) for o, s in zip(spec.offsets, shape))
        assert got.tensors["embed"].tobytes() == arr[box].tobytes()


def test_missing_rank_times_out_naming_it(tmp_path):
    mgr = CheckpointManager(tmp_path, rank=0, world_size=2, commit_timeout=0.3)
    with pytest.raises(CheckpointError, match=r"ranks \[1\] did not write"):
        mgr.save(1, _rank_tensors(0, 2), {})
    assert mgr.load("auto") is None


def test_overlapping_shards_are_rejected(tmp_path):
    # ranks write [0:2] and [1:3] of a length-4 tensor: an overlap and a gap
    blocks = [{"w": (np.zeros(2, np.float32), ShardSpec((4,), (r,)))} for r in range(2)]
    with pytest.raises(CheckpointError, match="'w': saved slices at"):
        save_as_ranks(tmp_path, 1, blocks, {})


@st.composite
def _layouts(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 6)) for _ in range(ndim))
    cuts = []  # saved layout: an arbitrary grid of blocks (uneven sizes)
    for d in shape:
        inner = sorted(draw(st.sets(st.integers(1, max(1, d - 1)), max_size=2)) if d > 1 else [])
        cuts.append([0] + inner + [d])
    want_off = tuple(draw(st.integers(0, d - 1)) for d in shape)
    want_shape = tuple(draw(st.integers(1, d - o)) for d, o in zip(shape, want_off))
    return shape, cuts, want_off, want_shape


@settings(max_examples=30, deadline=None)
@given(_layouts())
def test_any_grid_any_block_matches_numpy(tmp_path_factory, layout):
    shape, cuts, want_off, want_shape = layout
    root = tmp_path_factory.mktemp("grid")
    full = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    blocks = [()]
    for c in cuts:
        blocks = [b + ((c[i], c[i + 1]),) for b in blocks for i in range(len(c) - 1)]
    per_rank = []
    for box in blocks:
        sl = tuple(slice(lo, hi) for lo, hi in box)
        per_rank.append({"t": (full[sl], ShardSpec(shape, tuple(lo for lo, _ in box)))})
    save_as_ranks(root, 1, per_rank, {})
    got = CheckpointManager(root).load("auto", shards={"t": ShardSpec(shape, want_off)},
                                        block_shapes={"t": want_shape}).tensors["t"]
    ref = full[tuple(slice(o, o + s) for o, s in zip(want_off, want_shape))]
    assert got.shape == ref.shape and np.array_equal(got, ref)
