"""Point-to-point between neighbouring pipeline stages, behind one small interface.

:class:`StageLink` moves one tensor from one rank of a two-rank group to the other. On Ascend it
is a native Send/Receive pair. On CPU, where MCCL refuses Receive (and Broadcast outside the world
group), it is the :class:`~mfcore.parallel.group_comm.GroupComm` broadcast emulation inside the
pair group: the sender contributes the tensor, the receiver a zero buffer of its shape, and the
AllReduce sum is the sender's tensor, bit for bit. The schedule code is the same on both: the
sender calls ``send(x)``, the receiver ``recv(shape, dtype)``; both block until the transfer is done.
"""
from typing import Tuple

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from mfcore.parallel.group_comm import GroupComm, native_ops


class _Broadcast(nn.Cell):
    def __init__(self, comm: GroupComm, root: int):
        super().__init__()
        self.comm, self.root = comm, root

    def construct(self, x):
        return self.comm.broadcast(x, self.root)


class _NativeSend(nn.Cell):
    def __init__(self, peer: int, group: str):
        super().__init__()
        self.send = ops.Send(0, peer, group=group)

    def construct(self, x):
        return ops.depend(ops.zeros((), ms.float32), self.send(x))


class StageLink:
    """Transfers between this rank and ``peer`` (global ranks) over their pair group ``group``."""

    def __init__(self, group: str, rank: int, peer: int, world_group, device_target: str):
        self.group, self.rank, self.peer = group, rank, peer
        ranks = tuple(sorted((rank, peer)))
        self.native = device_target == "Ascend"
        gather, scatter = native_ops(device_target, group, world_group)
        comm = GroupComm(group, 2, ranks.index(rank), native_gather=gather, native_scatter=scatter, ranks=ranks)
        mine, theirs = ranks.index(rank), ranks.index(peer)
        self._as_sender, self._as_receiver = _Broadcast(comm, mine), _Broadcast(comm, theirs)
        self._native_send = _NativeSend(peer, group) if self.native else None
        self._native_recv = {}

    def send(self, x: Tensor) -> None:
        if self.native:
            self._native_send(x)
        else:
            self._as_sender(x)

    def recv(self, shape: Tuple[int, ...], dtype=ms.float32) -> Tensor:
        if self.native:
            key = (tuple(shape), dtype)
            if key not in self._native_recv:
                self._native_recv[key] = ops.Receive(0, self.peer, list(shape), dtype, group=self.group)
            return self._native_recv[key](Tensor(np.zeros((), np.float32)))
        return self._as_receiver(Tensor(np.zeros(shape, ms.dtype_to_nptype(dtype))))
