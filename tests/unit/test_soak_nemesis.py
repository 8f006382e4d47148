"""The soak's nemesis plan (tests/soak/nemesis.py): pure, seeded, every kind met early."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config.defaults import DEFAULTS
from tests.soak.nemesis import (BASIC, HOLD, PAUSE, QUIET, RABBITMQ_RESTART_SEC, RECOVER_ALONE, WIDE, halves, kinds,
                                ring_peers, schedule)

DROPIN = Path(__file__).resolve().parents[2] / "files/templates/rabbitmq/rabbitmq-server.service.conf.j2"


def test_recover_alone_outlasts_a_hung_rabbitmq_start_and_its_restart_by_systemd():
    """RECOVER_ALONE's parts are the deploy's own: the unit's RestartSec as its drop-in has it,
    and more than the start bound (rabbitmq_start_timeout's default) and that pause together."""
    assert re.search(r"^RestartSec=(\d+)$", DROPIN.read_text(), re.M).group(1) == str(RABBITMQ_RESTART_SEC)
    assert re.search(r"^TimeoutStartSec=\{\{ d.rabbitmq_start_timeout \}\}$", DROPIN.read_text(), re.M)
    assert RECOVER_ALONE > DEFAULTS["rabbitmq_start_timeout"] + RABBITMQ_RESTART_SEC


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


# --- how a pause and the netem stand-in are injected (the lab's commands recorded, not run) ------


class FakeDrills:
    def running(self):
        return ["node01", "node02", "node03"]


def recording_nemesis(answers):
    """A Nemesis whose node commands are recorded and answered from `answers` (first match of a
    command's start), never run."""
    import random
    import subprocess

    from tests.soak.nemesis import Nemesis

    sent = []

    def exec_(node, cmd, timeout=60):
        text = cmd if isinstance(cmd, str) else " ".join(cmd)
        sent.append((node, text))
        out, rc = next(((o, r) for start, (o, r) in answers.items() if text.startswith(start)), ("", 0))
        return subprocess.CompletedProcess(cmd, rc, out, "")

    n = Nemesis.__new__(Nemesis)
    n.drills, n.exec_, n.rng, n.log, n.healers = FakeDrills(), exec_, random.Random(1), print, []
    return n, sent


def test_a_pause_stops_the_daemons_main_process_by_pid_and_heals_it():
    """Found by the 30-minute soak: `pkill -STOP -f beam.smp` run through `sh -c` stopped its own
    shell (whose command line names beam.smp), the command timed out before the heal was
    registered, and the broker stayed stopped."""
    n, sent = recording_nemesis({"systemctl show -p MainPID --value rabbitmq-server": ("4242\n", 0)})
    detail = n.inject("pause-erlang", 2.0)
    node = detail["node"]
    assert detail["pid"] == 4242 and sent[-1] == (node, "kill -STOP 4242")
    assert not any("pkill" in text for _, text in sent)
    n.heal()
    assert sent[-1] == (node, "kill -CONT 4242")


def test_a_pause_without_a_main_process_is_refused_before_anything_stops():
    n, sent = recording_nemesis({"systemctl show": ("0\n", 0)})
    with pytest.raises(RuntimeError, match="no main process"):
        n.inject("pause-mariadbd", 2.0)
    assert not any("kill" in text for _, text in sent) and not n.healers


def test_netem_falls_back_to_nftables_loss_and_a_slow_queue_without_sch_netem():
    from tests.soak.nemesis import LOSSY_TABLE
    n, sent = recording_nemesis({"tc qdisc replace dev $(ip -o -4 addr show to 10.77.0.1": (
        "Error: Specified qdisc kind is unknown.", 2)})
    detail = n.inject("netem", 10.0)
    assert detail["netem"] is False and detail["loss_percent"] == 2
    fallback = sent[-1][1]
    assert fallback.startswith(f"nft 'add table inet {LOSSY_TABLE};") and "numgen random mod 100 < 2 drop" in fallback
    assert "tc qdisc replace dev" in fallback and "tbf rate 4mbit" in fallback
    n.heal()
    assert sent[-1][1].startswith(f"nft delete table inet {LOSSY_TABLE}; tc qdisc del dev")
