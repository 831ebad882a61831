"""Pipeline schedules as plain lists: which forward (F) and backward (B) each rank runs, in order,
and the one global order of compute and point-to-point events every rank follows.

1F1B (PipeDream-flush, Megatron's default): rank ``r`` of ``P`` first runs ``P - r - 1`` warm-up
forwards, then alternates one forward and one backward (steady state), then runs the remaining
backwards (cool-down); so at most ``P - r`` micro batches have live activations on rank ``r``.

Interleaved 1F1B (Megatron's, ``V`` model chunks per rank): forwards go through the chunks in
rounds of ``P`` micro batches (chunk 0 for micro batches 0..P-1, chunk 1 for the same ones, ...),
backwards through the chunks in reverse; warm-up is ``2 (P - r - 1) + (V - 1) P`` forwards. The
bubble shrinks by ``V`` at the price of ``V`` times more point-to-point traffic.

:func:`timeline` turns the per-rank lists into events: it simulates the schedule (a forward costs
1, a backward 2 by default) and orders everything by simulated time. Every rank executes its own
events in that order; as each transfer is a collective of the two ranks involved, one global
order of the transfers is what keeps blocking point-to-point free of deadlocks.
"""
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Tuple

from mfcore.errors import ConfigError
from mfcore.parallel.pipeline_split import rank_of_stage, virtual_stage


class Action(NamedTuple):
    kind: str     # "F" or "B"
    chunk: int    # model chunk on this rank (0 unless interleaved)
    micro: int    # micro batch


def one_f_one_b(rank: int, stages: int, micro_batches: int) -> List[Action]:
    """Rank ``rank``'s 1F1B order: warm-up forwards, steady 1F1B pairs, cool-down backwards."""
    warmup = min(stages - rank - 1, micro_batches)
    actions = [Action("F", 0, i) for i in range(warmup)]
    for i in range(micro_batches - warmup):
        actions += [Action("F", 0, warmup + i), Action("B", 0, i)]
    actions += [Action("B", 0, i) for i in range(micro_batches - warmup, micro_batches)]
    return actions


def _interleaved_step(k: int, stages: int, chunks: int, forward: bool) -> Tuple[int, int]:
    """``(chunk, micro batch)`` of this rank's ``k``-th forward (or backward), Megatron's order."""
    group, within = divmod(k, stages * chunks)
    chunk = within // stages
    if not forward:
        chunk = chunks - 1 - chunk
    return chunk, group * stages + within % stages


def interleaved(rank: int, stages: int, chunks: int, micro_batches: int) -> List[Action]:
    """Rank ``rank``'s interleaved 1F1B order over its ``chunks`` model chunks."""
    if micro_batches % stages:
        raise ConfigError(f"interleaved pipelining (parallel.virtual_stages={chunks}) needs the micro "
                          f"batch count ({micro_batches}) to be a multiple of parallel.pipeline ({stages})")
    total = micro_batches * chunks
    warmup = min(2 * (stages - rank - 1) + (chunks - 1) * stages, total)
    fwd = [Action("F", *_interleaved_step(k, stages, chunks, True)) for k in range(total)]
    bwd = [Action("B", *_interleaved_step(k, stages, chunks, False)) for k in range(total)]
    actions = fwd[:warmup]
    for i in range(total - warmup):
        actions += [fwd[warmup + i], bwd[i]]
    return actions + bwd[total - warmup:]


def rank_actions(stages: int, chunks: int, micro_batches: int) -> List[List[Action]]:
    """Every rank's action list (1F1B when ``chunks`` is 1, else interleaved)."""
    if chunks == 1:
        return [one_f_one_b(r, stages, micro_batches) for r in range(stages)]
    return [interleaved(r, stages, chunks, micro_batches) for r in range(stages)]


class Transfer(NamedTuple):
    """Activations (``"act"``, stage -> stage + 1) or gradients (``"grad"``, stage -> stage - 1) of
    one micro batch between virtual stages ``src`` and ``dst``."""
    kind: str
    micro: int
    src: int
    dst: int


@dataclass
class Timeline:
    events: List[Tuple[float, int, object]]   # (time, rank or -1 for transfers, Action | Transfer)
    busy: List[float]                         # simulated compute time per rank
    makespan: float

    def for_rank(self, rank: int, stages: int) -> List[object]:
        """Rank ``rank``'s events in the global order: its actions and the transfers it is in."""
        out = []
        for _, who, ev in self.events:
            if isinstance(ev, Transfer):
                if rank in (rank_of_stage(ev.src, stages)[0], rank_of_stage(ev.dst, stages)[0]):
                    out.append(ev)
            elif who == rank:
                out.append(ev)
        return out

    def bubble(self) -> List[float]:
        """Simulated idle share of every rank."""
        return [1.0 - b / self.makespan for b in self.busy]


def timeline(stages: int, chunks: int, micro_batches: int, f_cost: float = 1.0,
             b_cost: float = 2.0) -> Timeline:
    """Simulate the schedule: each rank runs its next action as soon as its input arrived."""
    lists = rank_actions(stages, chunks, micro_batches)
    last = stages * chunks - 1
    done: Dict[Tuple[str, int, int], float] = {}
    pos, free = [0] * stages, [0.0] * stages
    busy, events = [0.0] * stages, []
    while any(pos[r] < len(lists[r]) for r in range(stages)):
        best = None
        for r in range(stages):
            if pos[r] < len(lists[r]):
                ready = _ready_time(lists[r][pos[r]], r, stages, last, done, free[r])
                if ready is not None and (best is None or ready < best[0]):
                    best = (ready, r)
        if best is None:
            raise RuntimeError(f"pipeline schedule deadlocks (P={stages}, V={chunks}, m={micro_batches})")
        start, r = best
        action = lists[r][pos[r]]
        pos[r] += 1
        cost = f_cost if action.kind == "F" else b_cost
        free[r], busy[r] = start + cost, busy[r] + cost
        stage = virtual_stage(r, action.chunk, stages)
        done[(action.kind, stage, action.micro)] = start + cost
        events.append((start, r, action))
        transfer = _transfer_after(action, stage, last)
        if transfer is not None:
            events.append((start + cost, -1, transfer))
    # transfers before computes at equal times (a compute may need the transfer finishing then)
    events.sort(key=lambda e: (e[0], 0 if isinstance(e[2], Transfer) else 1, e[1], e[2]))
    return Timeline(events, busy, max(free))


def _ready_time(action: Action, rank: int, stages: int, last: int, done, free: float) -> Optional[float]:
    stage = virtual_stage(rank, action.chunk, stages)
    if action.kind == "F":
        need = ("F", stage - 1, action.micro) if stage > 0 else None
    else:
        need = ("B", stage + 1, action.micro) if stage < last else ("F", stage, action.micro)
    if need is None:
        return free
    if need not in done:
        return None
    return max(free, done[need])


def _transfer_after(action: Action, stage: int, last: int) -> Optional[Transfer]:
    if action.kind == "F" and stage < last:
        return Transfer("act", action.micro, stage, stage + 1)
    if action.kind == "B" and stage > 0:
        return Transfer("grad", action.micro, stage, stage - 1)
    return None


def theoretical_bubble(stages: int, chunks: int, micro_batches: int) -> float:
    """The idle share of 1F1B, ``(P - 1) / (m + P - 1)``, divided by ``V`` when interleaved."""
    return (stages - 1) / (micro_batches + stages - 1) / chunks
