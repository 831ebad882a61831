"""The trainer's data loader: this rank's micro batches for each optimizer step, assembled by the C++
engine in a background thread while the previous step computes.

``next(loader)`` returns a list of ``num_micro_batches`` dicts of numpy arrays ``[micro_batch, L]``
(``tokens``, ``labels``, ``loss_mask``, ``position_ids`` and the mask fields the dataset was asked
for). ``loader.consumed_samples`` is the global sample count after the last step returned;
``state_dict()`` / ``load_state_dict()`` carry it through checkpoints (load before the first
``next``: the background thread starts on the first ``next``); ``loader.wait_time`` is the seconds
``next`` spent waiting.
"""
import queue
import threading
import time
from typing import Dict, List, Optional

import numpy as np

from mfcore.data.sampler import PretrainingSampler
from mfcore.errors import ConfigError

_END = object()


class PretrainingLoader:
    """Prefetching iterator over the steps of one data-parallel rank (see module doc).

    ``wrap=False`` stops (StopIteration) when the dataset has no whole global batch left; by default
    the loader starts a new pass over the dataset.
    """

    def __init__(self, dataset, global_batch_size: int, micro_batch_size: int, dp_rank: int, dp_size: int,
                 consumed_samples: int = 0, prefetch: int = 2, wrap: bool = True):
        if prefetch < 1:
            raise ConfigError(f"prefetch must be >= 1, got {prefetch}")
        self.dataset = dataset
        self._sampler_args = (len(dataset), global_batch_size, micro_batch_size, dp_rank, dp_size)
        self._wrap = wrap
        self.sampler = PretrainingSampler(*self._sampler_args, consumed_samples, wrap)
        self.consumed_samples = int(consumed_samples)
        self.wait_time = 0.0  # seconds next() spent waiting, in total
        self.last_wait_time = 0.0
        self._queue: "queue.Queue" = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="mfcore-loader", daemon=True)

    def state_dict(self) -> dict:
        return {"consumed_samples": self.consumed_samples}

    def load_state_dict(self, state: dict) -> None:
        """Continue after ``state["consumed_samples"]`` global samples (before the first ``next``)."""
        if self._thread.ident is not None:
            raise RuntimeError("PretrainingLoader.load_state_dict: the loader has already started")
        self.consumed_samples = int(state["consumed_samples"])
        self.sampler = PretrainingSampler(*self._sampler_args, self.consumed_samples, self._wrap)

    @property
    def num_micro_batches(self) -> int:
        return self.sampler.num_micro_batches

    def _batch(self, indices: np.ndarray) -> List[Dict[str, np.ndarray]]:
        n_micro, mbs = indices.shape
        flat = self.dataset.fill_batch(indices.reshape(-1))  # one bulk call, GIL released inside
        return [{k: v[m * mbs:(m + 1) * mbs] for k, v in flat.items()} for m in range(n_micro)]

    def _put(self, item) -> None:
        """Queue ``item`` unless the loader is closed meanwhile (never blocks a close)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                indices = self.sampler.next_step()
                item = _END if indices is None else (self._batch(indices), self.sampler.consumed_samples)
                self._put(item)
                if item is _END:
                    return
        except BaseException as e:  # handed to the consumer, raised by next()
            self._put(e)

    def __iter__(self):
        return self

    def __next__(self) -> List[Dict[str, np.ndarray]]:
        if self._stop.is_set():
            raise StopIteration
        if self._thread.ident is None:  # first next(): start prefetching
            self._thread.start()
        t0 = time.perf_counter()
        item = self._queue.get()
        self.last_wait_time = time.perf_counter() - t0
        self.wait_time += self.last_wait_time
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, BaseException):
            self.close()
            raise item
        batches, self.consumed_samples = item
        return batches

    def close(self) -> None:
        """Stops the background thread (idempotent)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
