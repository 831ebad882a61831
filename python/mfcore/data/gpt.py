"""GPT training samples in Megatron's exact order, and the entry point ``build_gpt_datasets``.

The indices (document, sample, shuffle; blending) are built by the C++ engine in ``mfcore._core``,
cached under ``cache_dir`` (written in the background: see :func:`wait_for_index_cache`) and
memory-mapped on later runs; samples are assembled in C++ too, one at a
time (``ds[i]``) or in bulk straight into preallocated arrays (``ds.fill_batch``, GIL released, a small
thread pool). The semantics follow Megatron-LM's ``GPTDataset`` draw for draw, so for the same data,
split, sequence length, seed and sample count, sample ``i`` holds the same tokens as there.
"""
import atexit
import os
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import List, Optional, Sequence, Tuple, Union

from mfcore import _core
from mfcore.data.blended import blend_size, member_sample_counts, open_blended, parse_blend
from mfcore.data.samples import SampleDataset, SampleOptions, sample_options
from mfcore.errors import DataError

SPLIT_NAMES = ("train", "valid", "test")


def parse_split(split: str) -> List[float]:
    """The engine's reading of a split string (``"969,30,1"``, ``"969 30 1"``, ``"1/1"``): three
    weights normalised to sum 1. The one parser of the format; config checks call it too."""
    try:
        return list(_core.parse_split(str(split)))
    except ValueError as e:
        raise DataError(str(e)) from None


def wait_for_index_cache() -> None:
    """Blocks until every index-cache entry this process built is on disk.

    A cold ``build_gpt_datasets`` returns as soon as the indices are built (served from memory); the
    cache entry is written, fsynced and renamed into place by a background thread, holding the
    entry's lock, so other processes opening it wait for it and then map it. The process waits for
    these writes before it exits; call this to wait earlier (e.g. before inspecting the files).
    """
    _core.wait_for_index_cache_writes()


atexit.register(wait_for_index_cache)  # before interpreter teardown; the C++ side also waits at exit


class GPTDataset(SampleDataset):
    """One split of one indexed dataset, in Megatron ``GPTDataset`` order."""

    def __init__(self, core, options: SampleOptions, prefix: str):
        super().__init__(core, options)
        self.prefix = prefix
        self.split = SPLIT_NAMES[core.split]

    built = property(lambda self: self._core.built, doc="True when this process built the indices.")
    cache_path = property(lambda self: self._core.cache_path,
                          doc="The cache entry directory ('' without cache); see wait_for_index_cache.")
    num_epochs = property(lambda self: self._core.num_epochs)
    document_index = property(lambda self: self._core.document_index,
                              doc="int32 as in the spec: zero-copy, or a widened copy where the ids are stored as uint16.")
    sample_index = property(lambda self: self._core.sample_index, doc="[n + 1, 2], zero-copy.")
    shuffle_index = property(lambda self: self._core.shuffle_index, doc="uint32/int64, zero-copy.")

    def __repr__(self) -> str:
        return f"GPTDataset({self.prefix!r}, split={self.split}, samples={len(self)}, seq_length={self.seq_length})"


def open_gpt_splits(prefix: str, split: str, seq_length: int, seed: int, num_samples: Sequence[Optional[int]],
                    cache_dir: Optional[str], options: SampleOptions) -> List[Optional[GPTDataset]]:
    """The three splits of one indexed dataset (None for an absent split)."""
    cores = _core.open_gpt_splits(os.fspath(prefix), str(split), int(seq_length), int(options.add_extra_token),
                                  int(seed), list(num_samples), bool(options.drop_last_partial_validation_sequence),
                                  _cache_dir(cache_dir))
    return [None if c is None else GPTDataset(c, options, os.fspath(prefix)) for c in cores]


def _cache_dir(cache_dir) -> str:
    return "" if cache_dir is None else os.path.abspath(os.fspath(cache_dir))


def build_gpt_datasets(blend: Union[str, Sequence], split: str, seq_length: int, seed: int,
                       num_samples: Optional[Sequence[Optional[int]]], cache_dir: Optional[str],
                       **options) -> Tuple[Optional[SampleDataset], Optional[SampleDataset], Optional[SampleDataset]]:
    """Megatron's train/valid/test datasets for ``blend``.

    ``blend``: a prefix, a list of prefixes (each weighted by its size, every sample used once), or
    a weight/prefix list ``["30", "p1", "70", "p2"]``. ``split``: e.g. ``"949,50,1"``. ``num_samples``:
    ``[train, valid, test]`` samples wanted (None: one epoch; 0: skip the split). ``cache_dir``: where
    built indices are cached (None: build in memory each time). ``options``: see :class:`SampleOptions`.
    Returns ``(train, valid, test)``, None for an absent split.
    """
    opts = sample_options(options)
    if seq_length is None or int(seq_length) < 1:
        raise DataError(f"seq_length must be a positive integer, got {seq_length!r}")
    # refuse bad options before any index is built (the lengths the sources will be opened with)
    opts.core_options(SimpleNamespace(seq_length=int(seq_length), add_extra_token=opts.add_extra_token))
    sizes = [None, None, None] if num_samples is None else list(num_samples)
    if len(sizes) != 3 or any(s is not None and int(s) < 0 for s in sizes):
        raise DataError(f"num_samples must be [train, valid, test] with counts >= 0 or None, got {num_samples!r}")
    prefixes, weights = parse_blend(blend)
    if len(prefixes) == 1:
        return tuple(open_gpt_splits(prefixes[0], split, seq_length, seed, sizes, cache_dir, opts))
    return _blended_splits(prefixes, weights, split, int(seq_length), int(seed), sizes, cache_dir, opts)


def _blended_splits(prefixes, weights, split, seq_length, seed, sizes, cache_dir, opts):
    """Each member opened for its share of every split, then one blend per present split."""
    counts = [member_sample_counts(weights, size, len(prefixes)) for size in sizes]  # [split][member]

    def open_member(m: int):
        return open_gpt_splits(prefixes[m], split, seq_length, seed, [counts[k][m] for k in range(3)], cache_dir, opts)

    # A cold open of a small member is mostly waiting for fsync of its cache entry; opening members
    # concurrently (the C++ call releases the GIL) overlaps those waits.
    with ThreadPoolExecutor(max_workers=min(16, len(prefixes))) as pool:
        members = list(pool.map(open_member, range(len(prefixes))))
    out = []
    for k, size in enumerate(sizes):
        present = [ms[k] for ms in members]
        if all(d is None for d in present):
            out.append(None)
            continue
        if any(d is None for d in present):
            raise DataError(f"the {SPLIT_NAMES[k]} split is present in some blend members and absent in others")
        out.append(open_blended(present, weights, blend_size(weights, size), _cache_dir(cache_dir), SPLIT_NAMES[k],
                                opts))
    return tuple(out)
