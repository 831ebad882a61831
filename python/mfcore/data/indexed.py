"""Megatron indexed datasets (``PREFIX.bin`` + ``PREFIX.idx``): read, write, merge.

A thin face over the C++ engine in ``mfcore._core``. The token data and the index arrays are memory
mapped, never copied: ``ds.get(i)`` and the ``sequence_*`` arrays are read-only numpy views whose
lifetime keeps the mapping alive. Every malformed file raises :class:`IndexedDatasetError` (a
:class:`mfcore.errors.DataError`) naming the file, the field and what was expected.
"""
import operator
import os
from typing import List, Optional, Sequence, Union

import numpy as np

from mfcore import _core
from mfcore.errors import DataError

IndexedDatasetError = _core.IndexedDatasetError

PathLike = Union[str, "os.PathLike[str]"]
DTypeLike = Union[str, np.dtype, type]

#: The eight token types of the format, by numpy name.
DTYPES = ("uint8", "int8", "int16", "int32", "int64", "float64", "float32", "uint16")


def best_dtype(vocab_size: int) -> np.dtype:
    """Megatron's choice for token ids: uint16 when ``vocab_size < 65,500``, else int32."""
    if vocab_size <= 0:
        raise DataError(f"vocab_size must be positive, got {vocab_size}")
    return np.dtype(_core.best_dtype(int(vocab_size)))


def _dtype_name(dtype: DTypeLike, vocab_size: Optional[int]) -> str:
    if isinstance(dtype, str) and dtype == "auto":
        if vocab_size is None:
            raise DataError('dtype="auto" needs vocab_size= to choose between uint16 and int32')
        return best_dtype(vocab_size).name
    try:
        name = np.dtype(dtype).name
    except TypeError as e:
        raise DataError(f"unknown token dtype {dtype!r}") from e
    if name not in DTYPES:
        raise DataError(f"token dtype {name} is not in the format (one of {', '.join(DTYPES)})")
    return name


class IndexedDataset:
    """A read-only, memory-mapped indexed dataset. ``len(ds)`` is the number of sequences.

    ``prefix`` may also be the path of the ``.bin`` or ``.idx`` file. The file does not say whether it
    carries per-sequence modes: pass ``multimodal=True`` for those written with them.
    """

    def __init__(self, prefix: PathLike, multimodal: bool = False):
        self._core = _core.IndexedDataset(os.fspath(prefix), bool(multimodal))
        core = self._core
        self.dtype = np.dtype(core.dtype_name)
        n, idx = core.num_sequences, core.idx_bytes()
        self._n = n
        self._bin = core.bin_bytes()
        # Every pointer is a multiple of the itemsize (pointer = sum of length * itemsize, checked at open),
        # so one typed view of the whole .bin serves every get() by plain slicing.
        self._tokens = np.frombuffer(self._bin, self.dtype, core.num_tokens)
        self.sequence_lengths = np.frombuffer(idx, "<i4", n, core.lengths_offset)
        self.sequence_pointers = np.frombuffer(idx, "<i8", n, core.pointers_offset)
        self.document_indices = np.frombuffer(idx, "<i8", core.num_documents + 1, core.document_indices_offset)
        self.sequence_modes = np.frombuffer(idx, "i1", n, core.modes_offset) if multimodal else None

    prefix = property(lambda self: self._core.prefix, doc="The dataset prefix (without .bin/.idx).")
    multimodal = property(lambda self: self._core.multimodal, doc="Whether sequence modes were read.")
    num_documents = property(lambda self: self._core.num_documents, doc="Number of documents.")
    num_tokens = property(lambda self: self._core.num_tokens, doc="Total tokens over all sequences.")

    def __len__(self) -> int:
        return self._n

    def __reduce__(self):
        # Worker processes re-open the mapping instead of pickling gigabytes of tokens.
        return (IndexedDataset, (self.prefix, self.multimodal))

    def __repr__(self) -> str:
        return (f"IndexedDataset({self.prefix!r}, sequences={len(self)}, documents={self.num_documents}, "
                f"dtype={self.dtype.name})")

    def _index(self, i: int) -> int:
        j = operator.index(i)
        if j < 0:
            j += self._n
        if not 0 <= j < self._n:
            raise IndexError(f"{self.prefix}: sequence {i} out of range (dataset has {self._n})")
        return j

    def __getitem__(self, i):
        """``ds[i]``: sequence i as a zero-copy view; a slice gives a list of views."""
        if isinstance(i, slice):
            return [self.get(j) for j in range(*i.indices(len(self)))]
        return self.get(i)

    def get(self, i: int, offset: int = 0, length: Optional[int] = None) -> np.ndarray:
        """Tokens ``[offset, offset + length)`` of sequence ``i`` (to its end when ``length`` is None),
        as a read-only view into the mapped ``.bin``."""
        i = self._index(i)
        size = self.sequence_lengths.item(i)
        if length is None:
            length = size - offset
        if offset < 0 or length < 0 or offset + length > size:
            raise IndexError(f"{self.prefix}: tokens [{offset}, {offset}+{length}) out of range of "
                             f"sequence {i} (length {size})")
        start = self.sequence_pointers.item(i) // self.dtype.itemsize + offset
        return self._tokens[start:start + length]

    def get_document(self, d: int) -> np.ndarray:
        """All tokens of document ``d`` (its sequences concatenated; a copy)."""
        if not 0 <= d < self.num_documents:
            raise IndexError(f"{self.prefix}: document {d} out of range (dataset has {self.num_documents})")
        first, last = int(self.document_indices[d]), int(self.document_indices[d + 1])
        parts = [self.get(s) for s in range(first, last)]
        return np.concatenate(parts) if parts else np.empty(0, self.dtype)

    def read_into(self, indices, offsets, lengths, out: np.ndarray) -> np.ndarray:
        """Copy ``lengths[k]`` tokens of sequence ``indices[k]`` from ``offsets[k]`` for every k, packed
        one after the other into ``out`` (C-contiguous, of this dataset's dtype), with the GIL released.
        Every request is bounds-checked before any byte is copied. Returns ``out``."""
        if not isinstance(out, np.ndarray) or out.dtype != self.dtype or not out.flags.c_contiguous:
            raise DataError(f"{self.prefix}: read_into needs a C-contiguous {self.dtype.name} numpy array as out")
        args = [np.ascontiguousarray(a, dtype=np.int64).reshape(-1) for a in (indices, offsets, lengths)]
        self._core.read_into(*args, out)
        return out


class IndexedDatasetBuilder:
    """Streaming writer: ``add_document(tokens)`` or ``add_sequence(tokens)`` + ``end_document()``,
    then ``finalize()``. Atomic: nothing appears at ``prefix`` until finalize() succeeds.

    ``dtype`` is a numpy dtype or name, or ``"auto"`` with ``vocab_size=``. Used as a context manager it
    finalizes on normal exit and aborts (leaving no dataset) on an exception.
    """

    def __init__(self, prefix: PathLike, dtype: DTypeLike = "auto", *, vocab_size: Optional[int] = None,
                 multimodal: bool = False):
        self.dtype = np.dtype(_dtype_name(dtype, vocab_size))
        self._core = _core.IndexedDatasetBuilder(os.fspath(prefix), self.dtype.name, bool(multimodal))

    prefix = property(lambda self: self._core.prefix)
    num_sequences = property(lambda self: self._core.num_sequences)
    num_documents = property(lambda self: self._core.num_documents)

    def _as_tokens(self, tokens) -> np.ndarray:
        arr = np.asarray(tokens)
        if arr.ndim != 1:
            arr = arr.reshape(-1)
        if arr.dtype == self.dtype:
            return np.ascontiguousarray(arr)
        if arr.size and self.dtype.kind in "iu":
            if arr.dtype.kind not in "iub":
                raise DataError(f"{self.prefix}: {arr.dtype.name} tokens cannot be stored as {self.dtype.name}")
            info = np.iinfo(self.dtype)
            lo, hi = int(arr.min()), int(arr.max())
            if lo < info.min or hi > info.max:
                raise DataError(f"{self.prefix}: token values [{lo}, {hi}] do not fit {self.dtype.name} "
                                f"(choose a wider dtype, e.g. int32)")
        return np.ascontiguousarray(arr, dtype=self.dtype)

    def add_sequence(self, tokens, mode: int = 0) -> None:
        """Append one sequence to the open document (``mode`` is kept only when multimodal)."""
        self._core.add_sequence(self._as_tokens(tokens), int(mode))

    def end_document(self) -> None:
        """Close the open document."""
        self._core.end_document()

    def add_document(self, tokens, lengths: Optional[Sequence[int]] = None,
                     modes: Optional[Sequence[int]] = None) -> None:
        """Append one document: a single sequence, or (Megatron style) ``tokens`` split by ``lengths``."""
        arr = self._as_tokens(tokens)
        lengths = [arr.size] if lengths is None else [int(n) for n in lengths]
        if sum(lengths) != arr.size or min(lengths, default=0) < 0:
            raise DataError(f"{self.prefix}: sequence lengths {lengths} do not split {arr.size} tokens")
        modes = [0] * len(lengths) if modes is None else list(modes)
        if len(modes) != len(lengths):
            raise DataError(f"{self.prefix}: {len(modes)} modes for {len(lengths)} sequences")
        start = 0
        for n, mode in zip(lengths, modes):
            self._core.add_sequence(arr[start:start + n], int(mode))
            start += n
        self._core.end_document()

    def finalize(self) -> None:
        """Close an open document, write the index, fsync and rename both files into place."""
        self._core.finalize()

    def abort(self) -> None:
        """Drop everything written (removes the temporary files)."""
        self._core.abort()

    def __enter__(self) -> "IndexedDatasetBuilder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._core.finished:
            self.finalize()


def merge_datasets(out_prefix: PathLike, prefixes: Sequence[PathLike], multimodal: bool = False) -> None:
    """Concatenate ``prefixes`` (same dtype) into ``out_prefix`` without decoding tokens; atomic."""
    _core.merge_datasets(os.fspath(out_prefix), [os.fspath(p) for p in prefixes], bool(multimodal))


def check_dataset(prefix: PathLike, multimodal: bool = False, max_problems: int = 20) -> List[str]:
    """Every problem found in the dataset (one message each, naming file and field); [] when valid."""
    return _core.check_dataset(os.fspath(prefix), bool(multimodal), int(max_problems))
