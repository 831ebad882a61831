"""The slot arithmetic of the CPU subgroup emulations (gather = sum of slot-placed parts), without
communication: every rank's ``place_in_slot`` summed is the concatenation, ``take_slot`` inverts it.
The same functions run over real subgroups in tests/dist (4 ranks)."""
import mindspore as ms
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from mindspore import Tensor

from mfcore.parallel.group_comm import GroupComm, native_ops, place_in_slot, take_slot


@settings(max_examples=25, deadline=None)
@given(size=st.integers(1, 4), axis=st.integers(-3, 2), seed=st.integers(0, 2 ** 16))
def test_slots_sum_to_the_concatenation_and_split_back(size, axis, seed):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    rng = np.random.default_rng(seed)
    parts = [rng.standard_normal((2, 3, 4)).astype(np.float32) for _ in range(size)]
    placed = [place_in_slot(Tensor(p), axis, r, size).asnumpy() for r, p in enumerate(parts)]
    total = np.sum(placed, axis=0)
    want = np.concatenate(parts, axis=axis)
    np.testing.assert_array_equal(total, want)  # adding zeros is exact
    for r in range(size):
        np.testing.assert_array_equal(take_slot(Tensor(want), axis, r, size).asnumpy(), parts[r])


def test_a_group_of_one_is_the_identity():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    comm = GroupComm(None, 1, 0)
    x = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    for out in (comm.all_gather(x, 1), comm.reduce_scatter(x, 0), comm.broadcast(x, 0),
                comm.all_reduce(x), comm.all_reduce_max(x), comm.own_slice(x, 1)):
        np.testing.assert_array_equal(out.asnumpy(), x.asnumpy())


@pytest.mark.parametrize("device,group,gather,scatter", [
    ("CPU", "tp_0_1", False, False), ("CPU", "world", True, False), ("Ascend", "tp_0_1", True, True)])
def test_native_ops_only_where_the_device_runs_them(device, group, gather, scatter):
    """MCCL gathers/broadcasts only in the world group and never reduce-scatters; HCCL does all."""
    assert native_ops(device, group, "world") == (gather, scatter)
