"""The rank grid: how world ranks are laid out over the parallel dimensions, and their groups.

Ranks are numbered Megatron style with the tensor-parallel dimension innermost, so the ranks of a
TP group are neighbours (on one node) and data-parallel peers are a TP size apart:
``rank = ((pp_rank * dp) + dp_rank) * tp + tp_rank``. Pipeline (``pp``) is outermost; expert
parallelism will subdivide the data-parallel dimension. Pure arithmetic, no communication: the
context creates the MindSpore groups from what this module computes.
"""
from dataclasses import dataclass
from typing import Dict, List, Tuple

# Innermost first. Adding a dimension (e.g. "cp" between tp and dp) only extends this tuple.
DIMENSIONS: Tuple[str, ...] = ("tp", "dp", "pp")


@dataclass(frozen=True)
class RankGrid:
    """Sizes of the parallel dimensions; their product is the world size."""

    tp: int = 1
    dp: int = 1
    pp: int = 1

    def __post_init__(self):
        for dim in DIMENSIONS:
            size = getattr(self, dim)
            if not isinstance(size, int) or size < 1:
                raise ValueError(f"parallel size {dim}={size!r} must be a positive integer")

    @property
    def world_size(self) -> int:
        size = 1
        for dim in DIMENSIONS:
            size *= getattr(self, dim)
        return size

    def coords(self, rank: int) -> Dict[str, int]:
        """The coordinate of ``rank`` along every dimension."""
        if not 0 <= rank < self.world_size:
            raise ValueError(f"rank {rank} outside a world of {self.world_size}")
        out = {}
        for dim in DIMENSIONS:
            size = getattr(self, dim)
            out[dim] = rank % size
            rank //= size
        return out

    def rank_of(self, coords: Dict[str, int]) -> int:
        """Inverse of :meth:`coords`; missing dimensions count as 0."""
        rank, stride = 0, 1
        for dim in DIMENSIONS:
            rank += coords.get(dim, 0) * stride
            stride *= getattr(self, dim)
        return rank

    def groups(self, dim: str) -> List[Tuple[int, ...]]:
        """All groups along ``dim``: ranks that differ only in their ``dim`` coordinate, sorted."""
        if dim not in DIMENSIONS:
            raise ValueError(f"unknown parallel dimension {dim!r}; known: {', '.join(DIMENSIONS)}")
        seen = {}
        for rank in range(self.world_size):
            key = tuple(v for d, v in self.coords(rank).items() if d != dim)
            seen.setdefault(key, []).append(rank)
        return [tuple(ranks) for ranks in seen.values()]

    def group_of(self, dim: str, rank: int) -> Tuple[int, ...]:
        """The group along ``dim`` that holds ``rank``."""
        coords = self.coords(rank)
        return tuple(self.rank_of({**coords, dim: i}) for i in range(getattr(self, dim)))

    @staticmethod
    def group_name(dim: str, ranks: Tuple[int, ...]) -> str:
        """A stable, unique communication-group name, e.g. ``tp_0_1``."""
        return f"{dim}_" + "_".join(str(r) for r in ranks)
