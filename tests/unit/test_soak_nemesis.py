"""The soak's nemesis plan (tests/soak/nemesis.py): pure, seeded, every kind met early."""

from __future__ import annotations

import pytest

from tests.soak.nemesis import BASIC, HOLD, PAUSE, QUIET, WIDE, halves, kinds, ring_peers, schedule


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another():
    assert schedule(7, 30, 3) == schedule(7, 30, 3)
    assert [p.kind for p in schedule(7, 30, 3)] != [p.kind for p in schedule(8, 30, 3)]


@pytest.mark.parametrize("nodes,expected", [(3, set(BASIC)), (4, set(BASIC) | set(WIDE)), (5, set(BASIC) | set(WIDE))])
def test_every_kind_comes_in_the_first_round(nodes, expected):
    plan = schedule(1, 60, nodes)
    assert {p.kind for p in plan[:len(expected)]} == expected


def test_holds_and_quiets_fill_the_minutes_and_stay_in_their_ranges():
    plan = schedule(3, 10, 3)
    total = sum(p.hold + p.quiet for p in plan)
    assert 600 <= total < 600 + HOLD[1] + QUIET[1]
    assert total - plan[-1].hold - plan[-1].quiet < 600  # the last fault is the one that crosses the time
    for p in plan:
        low, high = PAUSE if p.kind.startswith("pause-") else HOLD
        assert low <= p.hold <= high and QUIET[0] <= p.quiet <= QUIET[1], p


def test_only_restricts_the_kinds_and_a_wide_kind_is_refused_on_three_nodes():
    assert {p.kind for p in schedule(2, 5, 3, only=("netem",))} == {"netem"}
    with pytest.raises(ValueError, match="partition-halves"):
        schedule(2, 5, 3, only=("partition-halves",))
    assert "majority-ring" in kinds(4) and "majority-ring" not in kinds(3)


def test_halves_and_the_ring():
    assert halves(["a", "b", "c", "d", "e"]) == (["a", "b"], ["c", "d", "e"])
    ring = ring_peers(["a", "b", "c", "d", "e"])
    assert ring["a"] == ["c", "d"] and ring["c"] == ["a", "e"]
    assert all(name not in unseen and len(unseen) == 2 for name, unseen in ring.items())
    assert ring_peers(["a", "b", "c", "d"])["a"] == ["c"]  # 4 nodes: each misses only the opposite one
