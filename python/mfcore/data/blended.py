"""Blends of several GPT datasets in Megatron ``BlendedDataset`` order, and the blend list syntax.

``["30", "p1", "70", "p2"]`` means weights 30/70 over prefixes p1/p2; a list without weights uses
every sample of every prefix once, each weighted by its length. For a blend of S samples, member k is
built for ``ceil(ceil(S * w_k) * 1.005)`` samples (Megatron's 0.5 % surplus) and the blend serves
``sum_k ceil(S * w_k)`` samples, assigned greedily to the member furthest behind its share.
"""
import math
import os
from typing import List, Optional, Sequence, Tuple, Union

from mfcore import _core
from mfcore.data.samples import SampleDataset, SampleOptions
from mfcore.errors import DataError


def _as_weight(item) -> Optional[float]:
    if isinstance(item, bool):
        return None
    if isinstance(item, (int, float)):
        return float(item)
    try:
        return float(item)
    except (TypeError, ValueError):
        return None


def parse_blend(blend: Union[str, "os.PathLike[str]", Sequence]) -> Tuple[List[str], Optional[List[float]]]:
    """``(prefixes, weights)``; weights is None for a list of prefixes only."""
    if isinstance(blend, (str, os.PathLike)):
        return [os.fspath(blend)], None
    items = list(blend or [])
    if not items:
        raise DataError("the blend names no dataset")
    if len(items) % 2 == 0 and _as_weight(items[0]) is not None:
        weights = [_as_weight(w) for w in items[0::2]]
        prefixes = [os.fspath(p) for p in items[1::2]]
        if any(w is None for w in weights):
            raise DataError(f"blend {items!r}: expected alternating weight, prefix; a weight does not parse")
        if any(_as_weight(p) is not None and not os.path.exists(p + ".idx") for p in prefixes):
            raise DataError(f"blend {items!r}: expected alternating weight, prefix; found two weights in a row")
        check_weights(weights, prefixes)
        return prefixes, weights
    if len(items) % 2 == 0 and len(items) > 1 and _as_weight(items[1]) is not None and not os.path.exists(
            os.fspath(items[1]) + ".idx"):
        raise DataError(f"blend {items!r}: weights must come before their prefix, like ['30', 'p1', '70', 'p2']")
    return [os.fspath(p) for p in items], None


def check_weights(weights: Sequence[float], prefixes: Sequence[str]) -> None:
    if len(weights) != len(prefixes):
        raise DataError(f"{len(weights)} blend weights for {len(prefixes)} datasets")
    for w, p in zip(weights, prefixes):
        if not math.isfinite(w) or w < 0:
            raise DataError(f"blend weight {w} of {p} must be finite and >= 0")
    if not any(w > 0 for w in weights):
        raise DataError(f"all blend weights are zero: {list(weights)}")


def member_sample_counts(weights: Optional[Sequence[float]], size: Optional[int], members: int) -> List[Optional[int]]:
    """Samples each member is built for: with weights and a size, the target plus 0.5 %; else None
    (one epoch). A zero-weight member never serves a sample; it is opened for one epoch."""
    if weights is None or size is None:
        return [None] * members
    if int(size) == 0:
        return [0] * members  # the split is not wanted
    counts = _core.blend_member_sizes(_core.normalize_weights(list(weights)), int(size))
    return [int(c) if c > 0 else None for c in counts]


def blend_size(weights: Optional[Sequence[float]], size: Optional[int]) -> Optional[int]:
    """Samples the blend serves: ``sum_k ceil(size * w_k)``, or None (every member sample once)."""
    if weights is None or size is None:
        return None
    return int(sum(_core.blend_targets(_core.normalize_weights(list(weights)), int(size))))


class BlendedDataset(SampleDataset):
    """Several datasets of one split, interleaved by the greedy blending index."""

    def __init__(self, core, options: SampleOptions, members: Sequence[SampleDataset], split: str):
        super().__init__(core, options)
        self.members = list(members)
        self.split = split

    built = property(lambda self: self._core.built, doc="True when this process built the blending index.")
    weights = property(lambda self: list(self._core.weights), doc="Normalised weights (empty when exhaustive).")
    counts = property(lambda self: list(self._core.counts), doc="Samples served by each member.")
    dataset_index = property(lambda self: self._core.dataset_index, doc="int16, zero-copy.")
    dataset_sample_index = property(lambda self: self._core.dataset_sample_index, doc="int64, zero-copy.")

    def __repr__(self) -> str:
        return f"BlendedDataset({len(self.members)} datasets, split={self.split}, samples={len(self)})"


def open_blended(members: Sequence[SampleDataset], weights: Optional[Sequence[float]], size: Optional[int],
                 cache_dir: str, split: str, options: SampleOptions) -> BlendedDataset:
    """The blend of ``members`` (one split each); ``size`` None means exhaustive."""
    weights = list(weights) if (weights is not None and size is not None) else []
    core = _core.open_blended([m._core for m in members], weights, size, cache_dir, f"BlendedDataset-{split}")
    return BlendedDataset(core, options, members, split)
