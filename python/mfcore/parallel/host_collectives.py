"""Collectives on small host values between the compiled steps (loss-token counts, loss sums).

A one-op Cell per group (over the group's :class:`~mfcore.parallel.group_comm.GroupComm`) keeps
this valid in graph mode. MindSpore's CPU AllReduce takes only
floats, so non-negative integers travel as three 12-bit digits in float32: each digit's sum stays
below 2**24 (exact in float32) for up to 4096 ranks, and values up to 2**36 come back exact.
Floats travel as float32 (what the losses are computed in).
"""
import numpy as np
from mindspore import Tensor, nn

from mfcore.errors import MfcoreError
from mfcore.parallel.group_comm import GroupComm

_CELLS = {}
_DIGIT_BITS = 12
_DIGITS = 3


class _AllReduceSum(nn.Cell):
    def __init__(self, group):
        super().__init__()
        self.comm = GroupComm.summing(group)

    def construct(self, x):
        return self.comm.all_reduce(x)


def _sum_float32(flat: np.ndarray, group: str) -> np.ndarray:
    cell = _CELLS.setdefault(group, _AllReduceSum(group))
    return cell(Tensor(np.ascontiguousarray(flat, dtype=np.float32))).asnumpy()


def host_all_reduce(values, group: str) -> np.ndarray:
    """Sum ``values`` (a number or array) over ``group``; integers stay exact integers."""
    arr = np.asarray(values)
    if not np.issubdtype(arr.dtype, np.integer):
        return _sum_float32(arr.reshape(-1), group).reshape(arr.shape).astype(arr.dtype)
    ints = arr.reshape(-1).astype(np.int64)
    if ints.size and (ints.min() < 0 or ints.max() >= 2 ** (_DIGIT_BITS * _DIGITS)):
        raise MfcoreError(f"host_all_reduce: integers must be in [0, 2**36), got {ints.min()}..{ints.max()}")
    mask = (1 << _DIGIT_BITS) - 1
    digits = np.stack([(ints >> (_DIGIT_BITS * k)) & mask for k in range(_DIGITS)])
    summed = _sum_float32(digits.reshape(-1), group).reshape(digits.shape).astype(np.int64)
    total = sum(summed[k] << (_DIGIT_BITS * k) for k in range(_DIGITS))
    return total.reshape(arr.shape).astype(arr.dtype)
