"""Which samples each data-parallel rank reads at each optimizer step.

The global order is the dataset's own (sample 0, 1, 2, ...), independent of the data-parallel size:
a step takes the next ``global_batch_size`` samples after those already consumed, and DP rank r
takes the r-th contiguous slice of them, cut into micro batches. So a run resumed with another DP
size or global batch size continues exactly where the old one stopped.
"""
from typing import Optional

import numpy as np

from mfcore.errors import ConfigError, DataError


class PretrainingSampler:
    """Sample indices of one rank, step by step, from ``consumed_samples`` on.

    ``wrap``: after the last whole step of the dataset, start a new pass from sample 0 (the global
    sample counter keeps growing; sample ``s`` reads dataset index ``s % len(dataset)``); otherwise
    :meth:`next_step` returns None when fewer than ``global_batch_size`` samples remain.
    """

    def __init__(self, total_samples: int, global_batch_size: int, micro_batch_size: int, dp_rank: int,
                 dp_size: int, consumed_samples: int = 0, wrap: bool = True):
        for name, v in (("global_batch_size", global_batch_size), ("micro_batch_size", micro_batch_size),
                        ("dp_size", dp_size)):
            if int(v) < 1:
                raise ConfigError(f"{name} must be >= 1, got {v}")
        if not 0 <= dp_rank < dp_size:
            raise ConfigError(f"dp_rank {dp_rank} is outside [0, dp_size={dp_size})")
        if global_batch_size % (micro_batch_size * dp_size) != 0:
            raise ConfigError(f"global_batch_size {global_batch_size} is not a multiple of micro_batch_size "
                              f"{micro_batch_size} x dp_size {dp_size}")
        if consumed_samples < 0:
            raise ConfigError(f"consumed_samples must be >= 0, got {consumed_samples}")
        if total_samples < 1:
            raise DataError("the dataset is empty")
        if not wrap and total_samples < global_batch_size:
            raise DataError(f"the dataset holds {total_samples} samples, fewer than one global batch of "
                            f"{global_batch_size}")
        self.total_samples = int(total_samples)
        self.global_batch_size = int(global_batch_size)
        self.micro_batch_size = int(micro_batch_size)
        self.dp_rank, self.dp_size = int(dp_rank), int(dp_size)
        self.consumed_samples = int(consumed_samples)
        self.wrap = bool(wrap)

    @property
    def num_micro_batches(self) -> int:
        return self.global_batch_size // (self.micro_batch_size * self.dp_size)

    def step_indices(self, consumed_samples: int) -> Optional[np.ndarray]:
        """Dataset indices ``[num_micro_batches, micro_batch_size]`` of this rank for the step that
        starts after ``consumed_samples`` global samples; None when the data is exhausted (no wrap)."""
        start = consumed_samples + self.dp_rank * (self.global_batch_size // self.dp_size)
        if not self.wrap and consumed_samples + self.global_batch_size > self.total_samples:
            return None
        per_rank = self.global_batch_size // self.dp_size
        idx = (np.arange(start, start + per_rank, dtype=np.int64)) % self.total_samples
        return idx.reshape(self.num_micro_batches, self.micro_batch_size)

    def next_step(self) -> Optional[np.ndarray]:
        """The next step's indices (see :meth:`step_indices`), advancing ``consumed_samples``."""
        idx = self.step_indices(self.consumed_samples)
        if idx is not None:
            self.consumed_samples += self.global_batch_size
        return idx

    def __iter__(self):
        while True:
            idx = self.next_step()
            if idx is None:
                return
            yield idx
