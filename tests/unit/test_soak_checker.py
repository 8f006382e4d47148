"""The soak's checker (tests/soak/checker.py) against histories of a simulated serializable
database and queue (soakkit.py): clean ones must check clean, and each anomaly injected into
one must be reported, as exactly that kind."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from soakkit import simulate
from tests.soak import history, workloads
from tests.soak.checker import KINDS, check, operations

ROOT = Path(__file__).resolve().parents[2]
SEEDS = range(6)


@pytest.fixture(scope="module")
def recorded():
    return simulate(7)


def ops(records, f=None, outcome=None):
    return [o for o in operations(records)[0] if (f is None or o.f == f) and (outcome is None or o.outcome == outcome)]


def completion(records, op_id):
    return next(r for r in records if r["type"] in history.OUTCOMES and r["id"] == op_id)


def final_read(records, key):
    """The value list of the final read of `key` (the last ok txn that read it)."""
    r = [r for r in records if r["type"] == "ok" and r["f"] == "txn" and r["process"] == "final"][-1]
    return next(m[2] for m in r["value"] if m[0] == "r" and m[1] == key)


def add_op(records, process, f, invoked, outcome, value, start, end):
    """Appends one operation (invocation and completion) with times `start` and `end`."""
    ident = max(r.get("id", 0) for r in records) + 1
    records.append({"type": "invoke", "id": ident, "process": process, "f": f, "value": invoked, "mono": start, "wall": start})
    records.append({"type": outcome, "id": ident, "process": process, "f": f, "value": value, "mono": end, "wall": end})
    return ident


def single_appends(records, outcome):
    """(op, key, element) of txns with `outcome` that appended exactly once to that key."""
    out = []
    for o in ops(records, "txn", outcome):
        keys = Counter(k for f, k, _ in o.invoked if f == "append")
        out += [(o, k, e) for f, k, e in o.invoked if f == "append" and keys[k] == 1]
    return out


# --- clean histories -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_a_serializable_history_checks_clean(seed):
    records = simulate(seed)
    report = check(records)
    assert report.anomalies == [], report.text()
    # the history exercised what the checker judges: failures, unknowns, redeliveries, faults
    outcomes = Counter(o.outcome for o in ops(records))
    assert outcomes["fail"] > 0 and outcomes["info"] > 0
    assert report.redelivered > 0 and len(report.faults) > 0
    assert report.acknowledged["writes"] > 100 and report.acknowledged["messages"] > 30
    assert report.summary().endswith(", 0 lost, 0 anomalies")


def test_snapshot_isolation_is_caught_as_anti_dependency_cycles():
    """A database whose reads see the snapshot at the transaction's start: write skew and read
    skew (cycles with rw edges), never a cycle without one, never a lost append."""
    kinds = check(simulate(1, snapshot=True)).kinds()
    assert kinds["G2"] + kinds["G-single"] > 0
    assert set(kinds) <= {"G2", "G-single"}, kinds


# --- each anomaly injected, reported as exactly that kind -----------------------------------


def lose_last_append(records):
    """Removes, from every read, the last element of a key's order whose writer appended it
    once and was acknowledged; returns that writer's op id."""
    for o, k, e in single_appends(records, "ok"):
        if final_read(records, k)[-1:] == [e]:
            for r in records:
                if r["type"] == "ok" and r["f"] == "txn":
                    for m in r["value"]:
                        if m[0] == "r" and m[1] == k and e in m[2]:
                            m[2].remove(e)
            return o.id
    raise AssertionError("no key ends with a single acknowledged append; change the seed")


def inject_lost_append(records):
    lose_last_append(records)


def inject_duplicate_element(records):
    v = final_read(records, 0)
    v.append(v[-1])


def inject_unexpected_element(records):
    final_read(records, 2).append(10 ** 9)


def inject_g1a(records):
    o, k, e = single_appends(records, "fail")[0]
    final_read(records, k).append(e)


def inject_g1b(records):
    """A reader, concurrent with a txn that appended twice to a key, sees only the first."""
    for o in ops(records, "txn", "ok"):
        twice = [k for k, n in Counter(k for f, k, _ in o.invoked if f == "append").items() if n == 2]
        if twice:
            k = twice[0]
            first = next(e for f, kk, e in o.invoked if f == "append" and kk == k)
            order = final_read(records, k)
            seen = order[:order.index(first) + 1]
            add_op(records, "reader", "txn", [["r", k, None]], "ok", [["r", k, seen]], o.start, o.end)
            return
    raise AssertionError("no txn appended twice to one key; change the seed")


def cycle(micro, x, y):
    def inject(records):
        t = operations(records)[2]
        for i, (invoked, done) in enumerate(micro):
            add_op(records, f"cycle-{i}", "txn", invoked, "ok", done, t + 1, t + 2)
        add_op(records, "cycle-reader", "txn", [["r", "x", None], ["r", "y", None]], "ok",
               [["r", "x", x], ["r", "y", y]], t + 3, t + 4)
    return inject


A = "append"
INJECT_G0 = cycle([([[A, "x", 1], [A, "y", 4]],) * 2, ([[A, "x", 2], [A, "y", 3]],) * 2], [1, 2], [3, 4])
INJECT_G1C = cycle([([[A, "x", 1], ["r", "y", None]], [[A, "x", 1], ["r", "y", [1]]]),
                    ([[A, "y", 1], ["r", "x", None]], [[A, "y", 1], ["r", "x", [1]]])], [1], [1])
INJECT_GSINGLE = cycle([([[A, "x", 1], [A, "y", 1]],) * 2,
                        ([["r", "x", None], ["r", "y", None]], [["r", "x", [1]], ["r", "y", []]])], [1], [1])
INJECT_G2 = cycle([([["r", "x", None], [A, "y", 1]], [["r", "x", []], [A, "y", 1]]),
                   ([["r", "y", None], [A, "x", 1]], [["r", "y", []], [A, "x", 1]])], [1], [1])


def inject_bank_off_by_one(records):
    r = completion(records, ops(records, "read", "ok")[0].id)
    r["value"]["0"] += 1


def delivered_once(records):
    got = Counter(o.value["msg"] for o in ops(records, "consume", "ok"))
    return next(o for o in ops(records, "consume", "ok") if got[o.value["msg"]] == 1)


def inject_lost_message(records):
    gone = delivered_once(records).id
    records[:] = [r for r in records if r.get("id") != gone]


def inject_duplicate_delivery(records):
    o = delivered_once(records)
    add_op(records, "consumer", "consume", None, "ok", {"msg": o.value["msg"], "redelivered": False}, o.end + 0.001, o.end + 0.002)


def inject_unexpected_message(records):
    o = delivered_once(records)
    add_op(records, "consumer", "consume", None, "ok", {"msg": "never-sent", "redelivered": False}, o.end, o.end)


def inject_delivered_failed_publish(records):
    failed = ops(records, "publish", "fail")[0]
    add_op(records, "consumer", "consume", None, "ok", {"msg": failed.invoked, "redelivered": False}, failed.end, failed.end)


INJECTIONS = [
    (inject_lost_append, "lost-append"),
    (inject_duplicate_element, "duplicate-elements"),
    (inject_unexpected_element, "unexpected-element"),
    (inject_g1a, "G1a"),
    (inject_g1b, "G1b"),
    (INJECT_G0, "G0"),
    (INJECT_G1C, "G1c"),
    (INJECT_GSINGLE, "G-single"),
    (INJECT_G2, "G2"),
    (inject_bank_off_by_one, "bank-total"),
    (inject_lost_message, "lost-message"),
    (inject_duplicate_delivery, "duplicate-message"),
    (inject_unexpected_message, "unexpected-message"),
    (inject_delivered_failed_publish, "unexpected-message"),
]


def test_every_kind_of_anomaly_has_its_injection():
    assert {kind for _, kind in INJECTIONS} | {"stale-read", "incompatible-order"} == set(KINDS)


@pytest.mark.parametrize("inject, kind", INJECTIONS, ids=lambda v: v if isinstance(v, str) else "")
def test_an_injected_anomaly_is_reported_as_its_kind(recorded, inject, kind):
    records = copy.deepcopy(recorded)
    inject(records)
    report = check(records)
    assert report.kinds() == Counter({kind: 1}), report.text()
    lost = kind in ("lost-append", "lost-message")
    assert report.summary().endswith(f", {int(lost)} lost, {int(not lost)} anomalies")


def test_a_stale_read_is_reported(recorded):
    """A read that began after an append was acknowledged, without it (it is in the order)."""
    records = copy.deepcopy(recorded)
    o, k, e = next((o, k, e) for o, k, e in single_appends(records, "ok") if final_read(records, k)[0] == e)
    add_op(records, "late", "txn", [["r", k, None]], "ok", [["r", k, []]], o.end + 0.0001, o.end + 0.0002)
    kinds = check(records).kinds()
    assert kinds["stale-read"] >= 1 and set(kinds) <= {"stale-read", "G-single", "G2"}


def test_an_incompatible_order_is_reported(recorded):
    records = copy.deepcopy(recorded)
    v = final_read(records, 1)
    v[0], v[1] = v[1], v[0]
    assert "incompatible-order" in check(records).kinds()


# --- unknown outcomes ---------------------------------------------------------------------


def test_an_info_append_that_appears_is_no_anomaly(recorded):
    records = copy.deepcopy(recorded)
    for o, k, e in single_appends(records, "ok"):
        if e in final_read(records, k):
            r = completion(records, o.id)
            r["type"], r["value"] = "info", o.invoked
            break
    assert check(records).anomalies == []


def test_an_info_append_that_never_appears_is_not_lost(recorded):
    records = copy.deepcopy(recorded)
    ident = lose_last_append(records)
    assert check(records).kinds() == Counter({"lost-append": 1})  # acknowledged: lost
    r = completion(records, ident)
    r["type"], r["value"] = "info", next(o.invoked for o in ops(records) if o.id == ident)
    assert check(records).anomalies == []  # unknown: it may never have happened


def test_a_failed_publish_that_never_arrives_is_no_anomaly_an_info_one_either(recorded):
    outcomes = Counter(o.outcome for o in ops(recorded, "publish"))
    assert outcomes["fail"] and outcomes["info"]
    assert check(recorded).anomalies == []


def test_without_a_drain_a_missing_message_is_unchecked_not_lost(recorded):
    records = copy.deepcopy(recorded)
    inject_lost_message(records)
    records[:] = [r for r in records if r.get("f") != "drain"]
    report = check(records)
    assert report.anomalies == [] and report.unchecked_messages == 1


# --- availability ---------------------------------------------------------------------------


def test_availability_gaps_per_fault_kind():
    """Writes acknowledged every second, none from 10 to 16 (a pause from 9.5 to 11): that
    pause's gap is 6 s although it ended at 11 (the recovery counts); a partition from 30 to
    30.5 while writes go on every second costs 1 s (the 2 s gap from 28 ends as it starts)."""
    rec = history.Recorder(None, {}, clock=lambda: t, wall=lambda: t)
    for t in [float(s) for s in range(41) if not 10 < s < 16 and s != 29]:
        rec.ok(rec.invoke("w", "transfer", {"from": "a", "to": "b", "amount": 0}))
    records = rec.records
    records += [{"type": "fault", "fault": 1, "kind": "pause", "phase": "start", "detail": {}, "mono": 9.5, "wall": 9.5},
                {"type": "fault", "fault": 1, "kind": "pause", "phase": "end", "detail": {}, "mono": 11.0, "wall": 11.0},
                {"type": "fault", "fault": 2, "kind": "partition", "phase": "start", "detail": {}, "mono": 30.0, "wall": 30.0},
                {"type": "fault", "fault": 2, "kind": "partition", "phase": "end", "detail": {}, "mono": 30.5, "wall": 30.5}]
    report = check(records)
    assert report.gaps == {"pause": {"writes": [6.0]}, "partition": {"writes": [1.0]}}
    assert report.longest == {"writes": 6.0}
    assert report.table().splitlines()[1].split() == ["partition", "1", "1.0", "/", "1.0", "0"]
    assert report.summary() == "soak: 0.7 min, 2 faults, 35 writes, 0 messages acknowledged, 0 lost, 0 anomalies"


# --- the history file and the command --------------------------------------------------------


def test_a_saved_history_checks_again_from_the_command_line(tmp_path, recorded):
    records = copy.deepcopy(recorded)
    inject_lost_message(records)
    path = tmp_path / "history.jsonl"
    history.dump(records, path)
    assert history.load(path) == records
    run = subprocess.run([sys.executable, "-m", "tests.soak", "check", str(path)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 1, run.stderr
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("soak: ") and last.endswith(", 1 lost, 0 anomalies")
    history.dump(recorded, path)
    assert subprocess.run([sys.executable, "-m", "tests.soak", "check", str(path)], cwd=ROOT, capture_output=True).returncode == 0


def test_a_bad_line_is_named(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text('{"type": "meta"}\nnot json\n')
    with pytest.raises(ValueError, match=r"h.jsonl:2: not JSON"):
        history.load(path)


def test_the_recorder_refuses_a_second_completion():
    rec = history.Recorder(None)
    op = rec.invoke("p", "publish", 1)
    rec.ok(op)
    with pytest.raises(ValueError, match="completed twice"):
        rec.info(op)


# --- the workloads' SQL (pure parts; the clients themselves need the lab) -------------------------


def test_a_list_append_transaction_round_trips_through_its_sql():
    micro = [["r", 3, None], ["append", 4, 17], ["r", 5, None]]
    sql = workloads.txn_sql(micro)
    assert sql.startswith("START TRANSACTION; ") and sql.index("COMMIT") < sql.index("CONCAT_WS")
    assert sql.count("LOCK IN SHARE MODE") == 2 and "CONCAT(vals, ',', '17')" in sql
    assert workloads.txn_result(micro, "ok|1,2|") == [["r", 3, [1, 2]], ["append", 4, 17], ["r", 5, []]]
    assert workloads.txn_result([["append", 1, 2]], "ok|") == [["append", 1, 2]]
    with pytest.raises(ValueError, match="unexpected answer"):
        workloads.txn_result(micro, "ok|1,2")


def test_bank_reads_parse_and_errors_classify():
    assert workloads.bank_result("0:100,1:97") == {"0": 100, "1": 97}
    assert workloads.expect_ok("ok", {"amount": 1}) == {"amount": 1}
    with pytest.raises(ValueError, match="transfer"):
        workloads.expect_ok("0:100", {})
    with pytest.raises(ValueError, match="bank read"):
        workloads.bank_result("NULL")
    assert workloads.sql_outcome("ERROR 1213 (40001) at line 1: Deadlock found when trying to get lock") == "fail"
    assert workloads.sql_outcome("ERROR 1047 (08S01) at line 1: WSREP has not yet prepared node") == "fail"
    assert workloads.sql_outcome("ERROR 2013 (HY000) at line 1: Lost connection to server during query") == "info"
    assert workloads.sql_outcome("no answer in 10s") == "info"


def test_keys_rotate_and_elements_are_unique():
    keys = workloads.Keys(active=2, per_key=3)
    rng = __import__("random").Random(1)
    appended = [(k, e) for _ in range(50) for f, k, e in keys.transaction(rng) if f == "append"]
    assert len({e for _, e in appended}) == len(appended)
    per_key = Counter(k for k, _ in appended)
    assert max(per_key.values()) <= 3 and len(keys.used) > 2 and len(keys.active) == 2


class FakeSession:
    """Stands in for lab.clients.Session: answers from a script (a string, or an exception)."""

    script: list = []
    sent: list = []

    def __init__(self):
        self.closed = False

    def query(self, sql, timeout=15):
        FakeSession.sent.append(sql)
        answer = FakeSession.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self):
        self.closed = True


def test_sql_clients_record_ok_fail_and_info(monkeypatch):
    """ok with the reads filled in; a server error (rolled back): fail; a lost connection: info,
    and the next operation opens a new session."""
    from lab import clients
    from lab.waits import SessionClosed
    monkeypatch.setattr(clients, "Session", FakeSession)
    rec = history.Recorder(None)
    client = workloads.ListAppend(rec, "append-0", 1, workloads.Keys())
    FakeSession.sent = []
    FakeSession.script = ["1",  # a new session: causal reads set first, as oslo.db does (wsrep_sync_wait)
                          "ok|",  # COMMIT went through: CONCAT_WS('|', 'ok', '') when nothing is read
                          "ok|1",
                          SessionClosed("ERROR 1213 (40001) at line 1: Deadlock found when trying to get lock"),
                          "1",
                          SessionClosed("ERROR 2013 (HY000) at line 1: Lost connection to server during query")]
    for micro in ([["append", 0, 1]], [["r", 0, None]], [["append", 0, 2]], [["append", 0, 3]]):
        client.statement("txn", micro, workloads.txn_sql(micro), lambda line, micro=micro: workloads.txn_result(micro, line))
    assert [r["type"] for r in rec.records[1:]] == ["invoke", "ok", "invoke", "ok", "invoke", "fail", "invoke", "info"]
    assert rec.records[4]["value"] == [["r", 0, [1]]]
    assert client.session is None  # dropped after the failure: the next step reconnects
    assert [q for q in FakeSession.sent if q.startswith("SET")] == ["SET SESSION wsrep_sync_wait = 1; SELECT 1"] * 2
    assert check(rec.records).anomalies == []


def fake_pika(broker: list, nack: set):
    """A stand-in `pika` module over `broker` (the queue: [body, ...]); publishing a message
    id in `nack` raises NackError (the broker took it or not: here, not)."""
    import types
    exceptions = types.ModuleType("pika.exceptions")
    exceptions.AMQPError = type("AMQPError", (Exception,), {})
    exceptions.NackError = type("NackError", (exceptions.AMQPError,), {})
    pika = types.ModuleType("pika")
    pika.exceptions, pika.BasicProperties = exceptions, lambda **kw: kw

    class Channel:
        connection = types.SimpleNamespace(close=lambda: None)

        def confirm_delivery(self):
            pass

        def basic_qos(self, prefetch_count):
            pass

        def queue_declare(self, queue, passive=False, durable=False, arguments=None):
            return types.SimpleNamespace(method=types.SimpleNamespace(message_count=len(broker)))

        def basic_publish(self, exchange, routing_key, body, properties=None, mandatory=False):
            if int(body) in nack:
                raise exceptions.NackError("nack")
            broker.append(body)

        def consume(self, queue, auto_ack=False, inactivity_timeout=None):
            while broker:
                yield types.SimpleNamespace(delivery_tag=1, redelivered=False), None, broker.pop(0)
            yield None, None, None

        def basic_ack(self, tag):
            pass

    pika.BlockingConnection = lambda params: types.SimpleNamespace(channel=Channel)
    return pika


def test_amqp_clients_record_confirms_deliveries_and_the_drain(monkeypatch):
    broker = []
    pika = fake_pika(broker, nack={2})
    monkeypatch.setitem(sys.modules, "pika", pika)
    monkeypatch.setitem(sys.modules, "pika.exceptions", pika.exceptions)
    monkeypatch.setattr(workloads, "amqp_parameters", lambda: ["node01", "node02"])
    monkeypatch.setattr(workloads.Publisher, "messages", iter(range(1, 10)))
    monkeypatch.setattr(workloads.Consumer, "quiet", 0.0)
    monkeypatch.setattr(workloads.time, "sleep", lambda s: None)
    rec = history.Recorder(None)
    publisher = workloads.Publisher(rec, "publisher", 1)
    for _ in range(3):
        publisher.step()
    assert [(r["type"], r["value"]) for r in rec.records if r.get("f") == "publish" and r["type"] != "invoke"] == \
        [("ok", 1), ("info", 2), ("ok", 3)]
    assert workloads.Consumer(rec, "consumer", 1).drain(timeout=5)
    delivered = [r["value"] for r in rec.records if r.get("f") == "consume" and r["type"] == "ok"]
    assert delivered == [{"msg": 1, "redelivered": False}, {"msg": 3, "redelivered": False}]
    report = check(rec.records)
    assert report.anomalies == [] and report.acknowledged["messages"] == 2
    # the same run with message 3 gone from the queue: lost
    lost = [r for r in rec.records if not (r.get("f") == "consume" and r["type"] == "ok" and r["value"]["msg"] == 3)]
    assert check(lost).kinds() == Counter({"lost-message": 1})
