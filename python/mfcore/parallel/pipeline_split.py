"""Which decoder layers each pipeline (virtual) stage holds: pure arithmetic, no MindSpore.

With ``P`` pipeline ranks and ``V`` model chunks per rank there are ``S = P * V`` virtual stages;
virtual stage ``k`` lives on rank ``k % P`` as its chunk ``k // P`` (Megatron's interleaving, so a
micro batch visits every rank once per chunk round). Stage ``k`` holds a contiguous run of layers
with their *global* numbers, so parameter names (and checkpoints) do not depend on the split.
"""
from typing import List, Optional, Sequence, Tuple

from mfcore.errors import ConfigError


def balanced_counts(num_layers: int, stages: int) -> List[int]:
    """``num_layers`` over ``stages`` as evenly as possible; the extra layers go to the middle
    stages first (the first stage also embeds, the last also runs the head and the loss)."""
    if num_layers < stages:
        raise ConfigError(f"the model has {num_layers} decoder layers, fewer than the {stages} pipeline "
                          f"stages (parallel.pipeline x parallel.virtual_stages); lower them")
    counts = [num_layers // stages] * stages
    middle_first = list(range(1, stages - 1)) + [0, stages - 1] if stages > 2 else list(range(stages))
    for i in range(num_layers % stages):
        counts[middle_first[i]] += 1
    return counts


def stage_counts(num_layers: int, stages: int, explicit: Optional[Sequence[int]] = None) -> List[int]:
    """Layers per virtual stage: ``explicit`` (``parallel.pipeline_layers``) validated, or balanced."""
    if explicit is None:
        return balanced_counts(num_layers, stages)
    counts = [int(n) for n in explicit]
    if len(counts) != stages:
        raise ConfigError(f"parallel.pipeline_layers has {len(counts)} entries {counts}, but there are "
                          f"{stages} stages (parallel.pipeline x parallel.virtual_stages)")
    if sum(counts) != num_layers:
        raise ConfigError(f"parallel.pipeline_layers {counts} sums to {sum(counts)}, but the model has "
                          f"{num_layers} decoder layers")
    if any(n < 0 for n in counts):
        raise ConfigError(f"parallel.pipeline_layers {counts}: counts must not be negative")
    return counts


def stage_layers(counts: Sequence[int]) -> List[Tuple[int, ...]]:
    """Global layer numbers of every virtual stage, in order."""
    out, start = [], 0
    for n in counts:
        out.append(tuple(range(start, start + n)))
        start += n
    return out


def virtual_stage(rank: int, chunk: int, pipeline: int) -> int:
    """The virtual stage of ``rank``'s model chunk ``chunk``."""
    return chunk * pipeline + rank


def rank_of_stage(stage: int, pipeline: int) -> Tuple[int, int]:
    """``(pipeline rank, chunk)`` holding virtual stage ``stage``."""
    return stage % pipeline, stage // pipeline
