"""The common face of mfcore's sample datasets: field options, the shared thread pool, and
:class:`SampleDataset` (``len(ds)``, ``ds[i]``, bulk ``fill_batch`` into preallocated arrays,
``fingerprint``) over a C++ sample source of ``mfcore._core``."""
import hashlib
import os
import threading
from dataclasses import asdict, dataclass, fields
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from mfcore import _core
from mfcore.errors import DataError

SampleEngineError = _core.SampleEngineError


@dataclass(frozen=True)
class SampleOptions:
    """How samples turn into training fields (MindSpore Transformers / Megatron names)."""

    eod_id: Optional[int] = None  #: end-of-document token; needed by every option below that mentions EOD
    pad_id: int = -1  #: pad positions get no loss and are written as token 0
    eod_mask_loss: bool = False  #: no loss where the input token is EOD
    reset_position_ids: bool = False  #: positions restart after each EOD
    reset_attention_mask: bool = False  #: block-diagonal attention_mask (no attention across an EOD)
    create_attention_mask: bool = False  #: add ``attention_mask`` (bool [L, L], True = masked)
    compressed_eod_mask: bool = False  #: add ``actual_seq_len``: document end positions, padded with L
    eod_pad_length: int = 128  #: fixed length of ``actual_seq_len``
    add_extra_token: bool = True  #: samples hold L + 1 tokens (labels are the inputs shifted by one)
    drop_last_partial_validation_sequence: bool = True  #: the valid split drops its partial last sample
    threads: int = 0  #: threads assembling a batch (0: one per CPU core, at most 8)

    def core_options(self, source) -> "_core.FieldOptions":
        """The engine's field options for ``source`` (a C++ sample source, or anything with its
        ``seq_length`` and ``add_extra_token``): those two are the source's own, set once when it
        was opened, never given a second time."""
        o = _core.FieldOptions()
        try:
            o.seq_length, o.add_extra_token = source.seq_length, int(source.add_extra_token)
            o.pad_id = self.pad_id
            o.has_eod, o.eod_id = self.eod_id is not None, self.eod_id if self.eod_id is not None else 0
            for name in ("eod_mask_loss", "reset_position_ids", "reset_attention_mask", "create_attention_mask",
                         "compressed_eod_mask", "eod_pad_length"):
                setattr(o, name, getattr(self, name))
            o.validate()
        except (TypeError, ValueError) as e:
            raise DataError(f"sample options: {e}") from None
        return o


def sample_options(options: Dict) -> SampleOptions:
    """Checks keyword options against :class:`SampleOptions` (a typo is an error, not ignored)."""
    known = {f.name for f in fields(SampleOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise DataError(f"unknown dataset option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return SampleOptions(**options)


_pools: Dict[Tuple[int, int], "_core.ThreadPool"] = {}
_pools_lock = threading.Lock()


def _thread_pool(threads: int) -> "_core.ThreadPool":
    """One shared pool per thread count and process (workers besides the calling thread); keyed by
    pid because a forked child does not inherit the parent's worker threads."""
    n = threads if threads > 0 else min(8, _core.hardware_threads())
    key = (os.getpid(), n)
    with _pools_lock:
        if key not in _pools:
            _pools[key] = _core.ThreadPool(n - 1)
        return _pools[key]


class SampleDataset:
    """Common face of :class:`GPTDataset` and :class:`BlendedDataset`: ``len(ds)``, ``ds[i]``,
    ``ds.fill_batch(indices)`` and ``ds.fingerprint()``."""

    def __init__(self, core, options: SampleOptions):
        self._core = core
        self.options = options
        self.seq_length = core.seq_length
        self._field_options = options.core_options(core)

    def __len__(self) -> int:
        return len(self._core)

    @property
    def field_names(self) -> Tuple[str, ...]:
        names = ["tokens", "labels", "loss_mask", "position_ids"]
        if self.options.create_attention_mask:
            names.append("attention_mask")
        if self.options.compressed_eod_mask:
            names.append("actual_seq_len")
        return tuple(names)

    def empty_batch(self, n: int) -> Dict[str, np.ndarray]:
        """Uninitialised arrays for ``n`` samples, in the layout ``fill_batch`` writes."""
        L = self.seq_length
        shapes = {"tokens": ((n, L), np.int32), "labels": ((n, L), np.int32), "loss_mask": ((n, L), np.float32),
                  "position_ids": ((n, L), np.int32), "attention_mask": ((n, L, L), np.bool_),
                  "actual_seq_len": ((n, self.options.eod_pad_length), np.int32)}
        return {name: np.empty(*shapes[name]) for name in self.field_names}

    def fill_batch(self, indices: Sequence[int], out=None):
        """Samples ``indices`` written straight into caller arrays, in C++ with the GIL released.

        ``out``: None (allocate), a dict of arrays as :meth:`empty_batch` makes (every field), or one
        int32 array ``[n, L]`` (``fill_batch(indices, out_tokens)``: the input tokens only). Returns
        ``out`` (the dict, or the tokens array).
        """
        idx = np.ascontiguousarray(indices, dtype=np.int64).reshape(-1)
        if isinstance(out, np.ndarray):
            self._fill(idx, {"tokens": out})
            return out
        out = self.empty_batch(len(idx)) if out is None else out
        self._fill(idx, out)
        return out

    def _fill(self, idx: np.ndarray, out: Dict[str, np.ndarray]) -> None:
        mask = out.get("attention_mask")
        try:
            self._core.fill_batch(idx, self._field_options, _thread_pool(self.options.threads), out.get("tokens"),
                                  out.get("labels"), out.get("loss_mask"), out.get("position_ids"),
                                  None if mask is None else mask.view(np.uint8), out.get("actual_seq_len"))
        except IndexError as e:
            raise IndexError(f"{self!r}: {e}") from None
        except ValueError as e:
            raise DataError(f"{self!r}: {e}") from None

    def __getitem__(self, i: int) -> Dict[str, np.ndarray]:
        n = len(self)
        j = int(i) + n if int(i) < 0 else int(i)
        if not 0 <= j < n:
            raise IndexError(f"sample {i} out of range (dataset has {n})")
        return {k: v[0] for k, v in self.fill_batch([j]).items()}

    def text(self, indices: Sequence[int]) -> np.ndarray:
        """The raw L + X tokens of each sample (int32, pad where a final sample is short)."""
        idx = np.ascontiguousarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((len(idx), self.seq_length + int(self._core.add_extra_token)), np.int32)
        self._core.fill_text(idx, self.options.pad_id, _thread_pool(self.options.threads), out)
        return out

    def fingerprint(self) -> str:
        """Digest of everything that determines the samples (data sizes, split, seed, lengths,
        weights, field options); a checkpoint stores it to notice a changed dataset on resume."""
        text = self._core.fingerprint() + repr(sorted(asdict(self.options).items()))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


