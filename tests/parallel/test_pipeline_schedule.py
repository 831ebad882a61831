"""Pipeline arithmetic without communication: the layer split, the 1F1B and interleaved action
lists, the global event order every rank follows, and the bubble figures."""
import pytest
from hypothesis import given, settings, strategies as st

from mfcore.errors import ConfigError
from mfcore.parallel.pipeline_schedule import (Transfer, interleaved, one_f_one_b, rank_actions,
                                               theoretical_bubble, timeline)
from mfcore.parallel.pipeline_split import (balanced_counts, rank_of_stage, stage_counts, stage_layers,
                                            virtual_stage)


def test_balanced_split_gives_the_extra_layers_to_the_middle_stages():
    assert balanced_counts(61, 4) == [15, 16, 15, 15]
    assert balanced_counts(14, 4) == [3, 4, 4, 3]
    assert balanced_counts(4, 2) == [2, 2]
    assert stage_layers([2, 3]) == [(0, 1), (2, 3, 4)]


@given(st.integers(1, 200), st.integers(1, 16))
def test_balanced_split_covers_every_layer_once_and_evenly(layers, stages):
    if layers < stages:
        with pytest.raises(ConfigError, match="fewer than the"):
            balanced_counts(layers, stages)
        return
    counts = balanced_counts(layers, stages)
    assert sum(counts) == layers and max(counts) - min(counts) <= 1
    assert [i for ids in stage_layers(counts) for i in ids] == list(range(layers))


@pytest.mark.parametrize("explicit,message", [
    ([15, 16, 16], "has 3 entries .* 4 stages"),
    ([15, 16, 16, 15], "sums to 62, but the model has 61"),
])
def test_explicit_split_is_validated_with_the_key_named(explicit, message):
    with pytest.raises(ConfigError, match="parallel.pipeline_layers.*" + message):
        stage_counts(61, 4, explicit)
    assert stage_counts(61, 4, [15, 16, 16, 14]) == [15, 16, 16, 14]


def test_virtual_stages_round_robin_over_the_ranks():
    assert [virtual_stage(r, c, 2) for c in range(2) for r in range(2)] == [0, 1, 2, 3]
    assert rank_of_stage(3, 2) == (1, 1)


def test_one_f_one_b_warms_up_alternates_and_cools_down():
    kinds = lambda actions: "".join(a.kind for a in actions)  # noqa: E731
    assert kinds(one_f_one_b(0, 4, 6)) == "FFF" + "FB" * 3 + "BBB"
    assert kinds(one_f_one_b(3, 4, 6)) == "FB" * 6
    assert kinds(one_f_one_b(0, 4, 2)) == "FFBB"   # fewer micro batches than stages


def _max_alive(actions):
    alive = peak = 0
    for a in actions:
        alive += 1 if a.kind == "F" else -1
        peak = max(peak, alive)
    return peak


@given(st.integers(2, 6), st.integers(1, 12))
def test_one_f_one_b_runs_everything_once_with_at_most_p_minus_rank_alive(stages, micro):
    for rank in range(stages):
        actions = one_f_one_b(rank, stages, micro)
        assert sorted((a.kind, a.micro) for a in actions) == sorted(
            [("F", i) for i in range(micro)] + [("B", i) for i in range(micro)])
        assert all(actions.index(("F", 0, i)) < actions.index(("B", 0, i)) for i in range(micro))
        assert _max_alive(actions) <= min(stages - rank, micro)


def test_interleaved_is_megatrons_order_and_needs_whole_rounds():
    got = [(a.kind, a.chunk, a.micro) for a in interleaved(1, 2, 2, 4)]
    assert got[:4] == [("F", 0, 0), ("F", 0, 1), ("F", 1, 0), ("B", 1, 0)]
    with pytest.raises(ConfigError, match="multiple of parallel.pipeline"):
        interleaved(0, 2, 2, 3)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 4), st.integers(1, 3), st.integers(1, 4))
def test_timeline_completes_and_every_pair_sees_its_transfers_in_one_order(stages, chunks, rounds):
    micro = rounds * stages if chunks > 1 else rounds + 1
    tl = timeline(stages, chunks, micro)
    per_rank = [tl.for_rank(r, stages) for r in range(stages)]
    transfers = [ev for _, _, ev in tl.events if isinstance(ev, Transfer)]
    assert len(transfers) == 2 * micro * (stages * chunks - 1)
    for a in range(stages):
        for b in range(a + 1, stages):
            shared = lambda r: [e for e in per_rank[r] if isinstance(e, Transfer)  # noqa: E731
                                and {rank_of_stage(e.src, stages)[0], rank_of_stage(e.dst, stages)[0]} == {a, b}]
            assert shared(a) == shared(b)
    for rank, events in enumerate(per_rank):   # an input arrives before the action that needs it
        seen = set()
        for ev in events:
            if isinstance(ev, Transfer):
                seen.add((ev.kind, ev.dst, ev.micro))
                continue
            stage = virtual_stage(rank, ev.chunk, stages)
            if ev.kind == "F" and stage > 0:
                assert ("act", stage, ev.micro) in seen
            if ev.kind == "B" and stage < stages * chunks - 1:
                assert ("grad", stage, ev.micro) in seen
    assert [len([e for e in ev if not isinstance(e, Transfer)]) for ev in per_rank] == \
        [len(a) for a in rank_actions(stages, chunks, micro)]


@pytest.mark.parametrize("micro", [2, 4, 8])
def test_simulated_one_f_one_b_bubble_is_the_theory(micro):
    tl = timeline(2, 1, micro)
    assert tl.bubble() == pytest.approx([theoretical_bubble(2, 1, micro)] * 2)
    assert theoretical_bubble(2, 1, micro) == pytest.approx(1 / (micro + 1))


def test_interleaving_shrinks_the_simulated_bubble():
    plain, inter = timeline(4, 1, 8).bubble(), timeline(4, 2, 8).bubble()
    assert max(inter) < min(plain)
    assert theoretical_bubble(4, 2, 8) == pytest.approx(3 / 11 / 2)
