"""The rank grid: how world ranks are laid out over the parallel dimensions, and their groups.

Ranks are numbered Megatron style with the tensor-parallel dimension innermost, so the ranks of a
TP group are neighbours (on one node) and data-parallel peers are a TP size apart:
``rank = ((pp_rank * dp) + dp_rank) * tp + tp_rank``. Pipeline (``pp``) is outermost.

Expert parallelism subdivides the ``tp x dp`` ranks of a pipeline stage (Megatron's expert grid
``etp x ep x edp = tp x dp`` with ``etp = 1``): number them ``i = dp_rank * tp + tp_rank`` (TP
innermost); the ``ep`` ranks of an expert-parallel group are ``ep`` consecutive ``i``
(``ep_rank = i % ep``), each holding ``1/ep`` of the routed experts; the ranks holding the same
experts form the expert-data-parallel group (``edp``, ``tp * dp / ep`` ranks, ``edp_rank = i // ep``)
over which expert gradients are summed. E.g. TP2 x DP2 with EP2: EP groups {0, 1}, {2, 3}, expert-DP
groups {0, 2}, {1, 3}; with TP1 the groups are made of DP ranks only. ``ep``/``edp`` are derived
coordinates, not dimensions of the world size. Pure
arithmetic, no communication: the context creates the MindSpore groups from what this module
computes.
"""
from dataclasses import dataclass
from typing import Dict, List, Tuple

# Innermost first. Adding a dimension (e.g. "cp" between tp and dp) only extends this tuple.
DIMENSIONS: Tuple[str, ...] = ("tp", "dp", "pp")
# Subdivisions of "dp" by expert parallelism (not part of the world size).
EXPERT_DIMENSIONS: Tuple[str, ...] = ("ep", "edp")


@dataclass(frozen=True)
class RankGrid:
    """Sizes of the parallel dimensions; their product is the world size."""

    tp: int = 1
    dp: int = 1
    pp: int = 1
    ep: int = 1   # expert-parallel size, a divisor of tp * dp

    def __post_init__(self):
        for dim in DIMENSIONS + ("ep",):
            size = getattr(self, dim)
            if not isinstance(size, int) or size < 1:
                raise ValueError(f"parallel size {dim}={size!r} must be a positive integer")
        if (self.tp * self.dp) % self.ep:
            raise ValueError(f"expert-parallel size ep={self.ep} must divide tp * dp = {self.tp * self.dp}")

    @property
    def edp(self) -> int:
        """Expert-data-parallel size: the replicas of one expert."""
        return self.tp * self.dp // self.ep

    def expert_coords(self, rank: int) -> Dict[str, int]:
        """``{"ep": ..., "edp": ...}``: the place of ``rank`` in its expert-parallel group and among
        the replicas of its experts (both 0 without expert parallelism)."""
        index = self._stage_index(self.coords(rank))
        return {"ep": index % self.ep, "edp": index // self.ep}

    def _stage_index(self, coords: Dict[str, int]) -> int:
        """Position of a rank among the ``tp x dp`` ranks of its pipeline stage, TP innermost."""
        return coords["dp"] * self.tp + coords["tp"]

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
        if dim in EXPERT_DIMENSIONS:
            return sorted({self.group_of(dim, r) for r in range(self.world_size)})
        if dim not in DIMENSIONS:
            raise ValueError(f"unknown parallel dimension {dim!r}; known: "
                             f"{', '.join(DIMENSIONS + EXPERT_DIMENSIONS)}")
        seen = {}
        for rank in range(self.world_size):
            key = tuple(v for d, v in self.coords(rank).items() if d != dim)
            seen.setdefault(key, []).append(rank)
        return [tuple(ranks) for ranks in seen.values()]

    def group_of(self, dim: str, rank: int) -> Tuple[int, ...]:
        """The group along ``dim`` that holds ``rank``."""
        coords = self.coords(rank)
        if dim in EXPERT_DIMENSIONS:
            ep = self.expert_coords(rank)
            if dim == "ep":   # consecutive ranks of the stage
                members = [ep["edp"] * self.ep + i for i in range(self.ep)]
            else:             # ranks an ep apart: the same experts
                members = [ep["ep"] + j * self.ep for j in range(self.edp)]
            return tuple(sorted(self.rank_of({**coords, "tp": i % self.tp, "dp": i // self.tp})
                                for i in members))
        return tuple(self.rank_of({**coords, dim: i}) for i in range(getattr(self, dim)))

    @staticmethod
    def group_name(dim: str, ranks: Tuple[int, ...]) -> str:
        """A stable, unique communication-group name, e.g. ``tp_0_1``."""
        return f"{dim}_" + "_".join(str(r) for r in ranks)
