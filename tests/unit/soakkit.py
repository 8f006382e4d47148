"""A small simulated serializable database and queue, driven by a seed, that writes a soak
history through the real Recorder: the histories the checker must find clean, and the
ground the self-tests inject anomalies into."""

from __future__ import annotations

import copy
import random
from collections import defaultdict

from tests.soak.history import Recorder

ACCOUNTS = {str(a): 100 for a in range(5)}
KEYS = 6  # keys in use at a time; they move on as appends accumulate (Elle rotates keys)
PER_KEY = 100


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def simulate(seed: int, steps: int = 1500, snapshot: bool = False) -> list[dict]:
    """One run: 4 list-append clients, 2 bank clients, a publisher, a consumer, faults now and
    then. Each operation takes effect at its completion, atomically (serializable and
    linearizable); some fail (no effect), some are info (effect or not, by the dice); the
    consumer sometimes loses an ack (the broker redelivers, marked). Ends with a read of
    every key, a bank read and a drain. `snapshot`: a transaction's reads see the lists as
    they were at its invocation (snapshot isolation without write conflicts: write skew)."""
    rng, clock = random.Random(seed), Clock()
    rec = Recorder(None, {"seed": seed, "accounts": ACCOUNTS}, clock=clock, wall=clock)
    lists: dict[int, list] = defaultdict(list)
    appended = [0]
    balances = dict(ACCOUNTS)
    queue: list[tuple[int, bool]] = []  # (message, redelivered)
    counter = iter(range(1, 10 ** 9))
    procs = [f"append-{i}" for i in range(4)] + ["bank-0", "bank-1", "publisher", "consumer"]
    pending: dict[str, object] = {}
    snapshots: dict[int, dict] = {}
    fault = None

    def invoke(p):
        if p.startswith("append"):
            micro = []
            for _ in range(rng.randint(1, 4)):
                k = appended[0] // PER_KEY + rng.randrange(KEYS)
                micro.append(["r", k, None] if rng.random() < 0.5 else ["append", k, next(counter)])
            op = rec.invoke(p, "txn", micro)
            snapshots[op.id] = {k: list(lists[k]) for f, k, _ in micro if f == "r"}
            return op
        if p.startswith("bank"):
            if rng.random() < 0.5:
                return rec.invoke(p, "read")
            a, b = rng.sample(sorted(ACCOUNTS), 2)
            return rec.invoke(p, "transfer", {"from": a, "to": b, "amount": rng.randint(1, 5)})
        if p == "publisher":
            return rec.invoke(p, "publish", next(counter))
        return rec.invoke(p, "consume") if queue else None

    def apply(op):
        if op.f == "txn":
            done = []
            for f, k, v in op.value:
                if f == "r":
                    done.append([f, k, list((snapshots[op.id] if snapshot else lists)[k])])
                else:
                    lists[k].append(v)
                    appended[0] += 1
                    done.append([f, k, v])
            return done
        if op.f == "transfer":
            balances[op.value["from"]] -= op.value["amount"]
            balances[op.value["to"]] += op.value["amount"]
        if op.f == "read":
            return dict(balances)
        if op.f == "publish":
            queue.append((op.value, False))
        return op.value

    def complete(op):
        if op.f == "consume":
            msg, again = queue.pop(0)
            if rng.random() < 0.05:  # the ack is lost: the broker delivers it again, marked
                queue.append((msg, True))
            rec.ok(op, {"msg": msg, "redelivered": again})
            return
        dice = rng.random()
        if dice < 0.05:
            rec.fail(op, "deadlock")
        elif dice < 0.10:
            if rng.random() < 0.5:
                apply(op)
            rec.info(op, "lost connection")
        else:
            rec.ok(op, apply(op))

    for _ in range(steps):
        clock.t += rng.uniform(0.001, 0.2)
        if fault is None and rng.random() < 0.01:
            kind = rng.choice(["pause-mariadbd", "partition-halves"])
            fault = (rec.fault_start(kind, node="node01"), kind)
        elif fault is not None and rng.random() < 0.02:
            rec.fault_end(*fault)
            fault = None
        p = rng.choice(procs)
        if p in pending:
            complete(pending.pop(p))
        else:
            op = invoke(p)
            if op is not None:
                pending[p] = op
    for p in sorted(pending):
        clock.t += 0.01
        if pending[p].f == "consume" and not queue:
            rec.fail(pending[p], "queue empty")
        else:
            complete(pending[p])
    clock.t += 1
    keys = range(appended[0] // PER_KEY + KEYS)
    final = rec.invoke("final", "txn", [["r", k, None] for k in keys])
    rec.ok(final, [["r", k, list(lists[k])] for k in keys])
    read = rec.invoke("final", "read")
    rec.ok(read, dict(balances))
    while queue:
        clock.t += 0.01
        msg, again = queue.pop(0)
        rec.ok(rec.invoke("consumer", "consume"), {"msg": msg, "redelivered": again})
    clock.t += 1
    rec.ok(rec.invoke("consumer", "drain"), {"remaining": 0})
    return copy.deepcopy(rec.records)
