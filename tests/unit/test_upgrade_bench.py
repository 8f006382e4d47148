"""tests/bench/upgrade.py's pure part: which single-try SQL transactions the roll cost (a lost
connection is the roll's; a deadlock between the two clients is the workload's own), grouped
into events (a writer switch, the VIP's move)."""

from __future__ import annotations

from tests.bench import upgrade


def history(*ops):
    """(t invoked, client, outcome, error) -> recorder-shaped records."""
    out = []
    for i, (t, client, outcome, error) in enumerate(ops):
        out.append({"type": "invoke", "id": i, "process": client, "f": "txn", "mono": t})
        out.append({"type": outcome, "id": i, "process": client, "f": "txn", "mono": t + 0.01,
                    **({"error": error} if error else {})})
    return out


LOST = "ERROR 2013 (HY000) at line 4: Lost connection to server during query"
DEADLOCK = "ERROR 1213 (40001) at line 9: Deadlock found when trying to get lock; try restarting transaction"


def test_lost_connections_are_the_rolls_deadlocks_are_not():
    recs = history((10.0, "append-0", "info", LOST), (10.1, "append-1", "info", LOST), (11.0, "append-0", "ok", None),
                   (20.0, "append-0", "fail", DEADLOCK), (30.0, "append-1", "info", LOST), (30.2, "append-1", "fail", "x"),
                   (31.0, "publisher", "info", "closed"))
    assert upgrade.failure_figures(recs) == {"failed_single_try": 4, "events": 2, "worst_per_client_per_event": 2,
                                             "deadlocks": 1}


def test_failures_further_apart_than_the_gap_are_two_events():
    lost = [(1.0, "append-0"), (1.0 + upgrade.EVENT_GAP, "append-1"), (2.0 + 2 * upgrade.EVENT_GAP, "append-0")]
    assert [len(e) for e in upgrade.events(lost)] == [2, 1]
    assert upgrade.events([]) == []
