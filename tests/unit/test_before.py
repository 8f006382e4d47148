"""operations/before.py, the pre-run bundle: what it carries, how a part that ran out of time
reads, and the steps that must skip after an earlier failure; offline (opkit's cases)."""

from __future__ import annotations

import re

import pytest
from pyinfra.context import ctx_host

import opkit
import operations.before as B
from operations.common import Refused
from facts.bundle import fact_class, part
from facts.galera import RECOVERY_KEYS, GaleraNode

DEPLOYED = opkit.CASES / "site" / "deployed.json"


def deployed(**facts) -> dict:
    """The deployed site's case, with these facts replaced on node03."""
    case = opkit.load_case(DEPLOYED)
    case["facts"]["node03"] = {**case["facts"].get("node03", {}), **facts}
    return case


def test_the_pre_run_bundle_runs_galera_once_and_the_report_reads_it_as_its_own():
    with opkit.planning(opkit.load_case(DEPLOYED)) as (state, inventory):
        site = B.site()
        parts = B.prefetch("node03")
        assert [p for p in parts if fact_class(p[0]) is GaleraNode] == [part(GaleraNode)]
        host = inventory.get_host("node03")
        assert B.read_before_run(host, site) is None  # no bundle read: the report reads live
        # the plan's Galera read, of a node whose mariadbd crashed: recover=True added its position
        plans = {"installed": True, "mysqld": None, "grastate_seqno": "-1", "recovered_position": "u:5", "error": None}
        B.bundles()["node03"] = {p: {"key": k, "error": None} for k, p in B.health_parts(site, "node03").items()
                                 } | {part(GaleraNode): plans}
        got = B.read_before_run(host, site)
        assert [a["key"] for a in got["parts"] if "key" in a] == [k for k in B.health_parts(site, "node03") if k != "galera"]
        galera = got["parts"][list(B.health_parts(site, "node03")).index("galera")]
        assert galera == {k: v for k, v in plans.items() if k != "recovered_position"}


def test_recover_adds_only_the_keys_the_report_drops():
    with_recovery, without = GaleraNode().command(recover=True), GaleraNode().command(recover=False)
    tail = "echo end=yes"
    assert without.endswith(tail) and with_recovery.startswith(without[: -len(tail)])
    added = with_recovery[len(without) - len(tail):]
    assert added.endswith(tail) and "galera_recovery" in added
    assert set(re.findall(r"/(\w+)=/p|echo (\w+)=", added[: -len(tail)])) <= {(k, "") for k in RECOVERY_KEYS}


def test_a_part_that_ran_out_of_time_is_unknown_never_a_state_nor_read_again():
    got = {"parts": [None, {"error": None}], "status": ["124", "0"], "error": None}
    answers = B.bundle_answers(("a", "b"), got)
    assert isinstance(answers["a"], B.TimedOut) and answers["b"] == {"error": None}
    assert str(answers["a"]) == f"no answer within {B.PRE_RUN_TIMEOUT} s (timed out on the host)"
    assert B.bundle_answers(("a",), {"parts": [], "error": "bundle: output cut short"}) == {}


def test_a_controller_whose_galera_state_ran_out_stops_the_run(capsys):
    # Read as a state, node03 would be a node to join: its mariadb restarted.
    with pytest.raises(Refused) as refused:
        opkit.run(deployed(GaleraNode=opkit.TIMEOUT) | {"components": ["galera"]})
    err = str(refused.value)
    assert "could not read the Galera state of node03" in err and "no host was changed" in err


def test_a_controller_whose_rabbitmq_state_ran_out_stops_the_run(capsys):
    # Read as a state, node03 would join the seed: stop_app and reset.
    with pytest.raises(Refused) as refused:
        opkit.run(deployed(RabbitmqCluster=opkit.TIMEOUT) | {"components": ["rabbitmq"]})
    assert "could not read the RabbitMQ state of node03" in str(refused.value)


def test_pyinfras_own_fact_that_ran_out_stops_the_run(capsys):
    with pytest.raises(Refused):
        opkit.run(deployed(Sha1File=opkit.TIMEOUT) | {"components": ["rabbitmq"]})
    assert f"node03: could not read Sha1File: no answer within {B.PRE_RUN_TIMEOUT} s" in capsys.readouterr().err


def test_the_fact_of_a_part_that_ran_out_is_its_default_with_the_cause():
    with opkit.planning(deployed(GaleraNode=opkit.TIMEOUT)) as (state, inventory):
        host = inventory.get_host("node03")
        with ctx_host.use(host):
            fact = B.fact_of(host, GaleraNode)
            assert fact == {**GaleraNode.default(), "error": f"no answer within {B.PRE_RUN_TIMEOUT} s (timed out on the host)"}
            assert B.facts_of_all_controllers(GaleraNode)["node03"] is None
            assert B.read_before_run(host, B.site()) is None  # the report reads it live


@pytest.mark.parametrize("case", ["stuck_broker", "stopped_brokers"])
def test_rabbitmqs_together_steps_skip_after_an_earlier_failure(case):
    loaded = opkit.load_case(opkit.CASES / "rabbitmq" / f"{case}.json")

    def together(got):
        return [op for rows in got.values() for op, _ in rows if "together" in op or "stuck" in op]

    assert together(opkit.run(loaded))  # the case restarts or starts brokers together
    assert together(opkit.run(loaded, failed=("node01",))) == []


def test_the_cookie_is_not_written_when_its_stop_was_skipped_after_an_earlier_failure():
    """A fresh site's cookie change: stop, write, start together. Once a controller failed
    earlier in the run the stop and start are skipped (turns), and so is the cookie: a broker
    still running must not be left with a cookie file that differs from the one in memory."""
    loaded = opkit.load_case(opkit.CASES / "site" / "fresh.json")

    def cookie_ops(got):
        return [op for rows in got.values() for op, _ in rows if "erlang.cookie" in op or "cookie changes" in op]

    assert cookie_ops(opkit.run(loaded))
    assert cookie_ops(opkit.run(loaded, failed=("node03",))) == []


def test_a_controller_whose_maintenance_marker_cannot_be_read_stops_the_run(capsys):
    # Read as "not in maintenance", RabbitMQ could be started on a node the operator took out.
    case = opkit.load_case(opkit.CASES / "site" / "deployed.json")
    case["facts"]["node03"] = {**case["facts"].get("node03", {}),
                               "Maintenance": {"/var/lib/openstack-ha/maintenance": {"out": None, "error": "no answer"}}}
    with pytest.raises(Refused) as refused:
        opkit.run(case | {"components": ["rabbitmq"]})
    assert "could not read the maintenance marker of node03" in str(refused.value)


@pytest.mark.parametrize("raw, ok", [("30", True), ("600", True), ("29", False), ("ten", False), ("", False)])
def test_the_pre_run_bound_from_the_environment(monkeypatch, capsys, raw, ok):
    monkeypatch.setenv("HA_PRE_RUN_TIMEOUT", raw)
    if ok:
        assert B._pre_run_timeout() == int(raw)
    else:
        with pytest.raises(Refused) as refused:
            B._pre_run_timeout()
        assert "HA_PRE_RUN_TIMEOUT" in str(refused.value)


def test_rabbitmqs_views_are_read_with_each_controllers_own_address_and_quietly(monkeypatch, caplog, capsys):
    """members_of_all: every controller's management API at its own address; one that does not
    answer (a broker not installed yet) is unknown, with no warning."""
    asked = {}

    def fact_of(h, cls, **kwargs):
        asked[h.name] = kwargs
        return {"error": "connection refused"} if h.name == "node03" else {"running_nodes": [h.name], "error": None}

    with opkit.planning(opkit.load_case(DEPLOYED)):
        site = B.site()
        monkeypatch.setattr(B, "fact_of", fact_of)
        got = B.members_of_all()
        assert asked == {c.name: B.members_args(site, c.name) for c in site.controllers}
        assert len({a["address"] for a in asked.values()}) == len(site.controllers)
        assert got == {"node01": {"running_nodes": ["node01"], "error": None},
                       "node02": {"running_nodes": ["node02"], "error": None}, "node03": None}
        assert "could not read" not in caplog.text + capsys.readouterr().err
        B.facts_of_all_controllers(GaleraNode)  # the loud reader warns for the same answer
        assert "[node03] could not read GaleraNode: connection refused" in caplog.text + capsys.readouterr().err
