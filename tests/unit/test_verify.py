"""operations/verify.py, the pyinfra glue around the health model (health/): reading the
facts on the hosts, the settle loop, who fails and who publishes, the operations themselves
through pyinfra's own API on this machine (@local)."""

from __future__ import annotations

import json
import weakref

import healthkit
from healthkit import FACT_OF, NAMES, api_down, certificate, healthy, lab_site, servers

import operations.verify as V
from config.site import build_site
from health.checks import evaluate
from healthkit import F
from facts.bundle import Bundle, fact_class
from operations.verify import _Run, report_reasons


def local_state(vip: str, **data):
    """A pyinfra State of a one-controller site, this machine (@local), with verify() queued
    (`data`: more of the group's data)."""
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.connect import connect_all
    from pyinfra.api.deploy import add_deploy
    from pyinfra.api.state import StateStage

    inventory = Inventory(
        (["@local"], {}),
        controllers=(
            [("@local", {"address": "127.0.0.1", "vrrp_priority": 150})],
            {"internal_network": "127.0.0.0/8", "vip": vip, "vip_interface": "lo", **data},
        ),
    )
    state = State(inventory, Config())
    connect_all(state)
    state.set_stage(StateStage.Prepare)
    add_deploy(state, V.verify)
    return state


def execute(state) -> bool:
    """Run the queued operations; whether the only host failed (pyinfra: "No hosts remaining!")."""
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.operations import run_ops
    from pyinfra.api.state import StateStage

    state.set_stage(StateStage.Execute)
    try:
        run_ops(state)
    except PyinfraError as exc:
        assert str(exc) == "No hosts remaining!"
        return True
    return False


def test_a_hanging_fact_is_cut_by_the_timeout_and_reported(monkeypatch, tmp_path):
    # The real facts run on this machine (@local); GaleraNode is made to hang. Its part of
    # the bundle is cut by the timeout on the host, the others are read, the host is not
    # failed mid-collection, the report names the cause.
    monkeypatch.setattr(F.GaleraNode, "command", lambda self, **kwargs: "sleep 10")
    monkeypatch.setattr(V, "FACT_TIMEOUT", 1)
    monkeypatch.setenv(V.JSON_ENV, str(tmp_path / "health.json"))
    assert execute(local_state("127.0.0.100")) is True
    data = json.loads((tmp_path / "health.json").read_text())
    cut = "no answer within 1 s (timed out on the host)"
    assert data["facts"]["@local"]["galera"]["error"] == cut
    assert f"@local: galera: {cut}" in data["failures"]
    # the collection went on after the timeout: the next facts were read
    assert data["facts"]["@local"]["memcached"]["error"] != F.NO_OUTPUT


def FakeHost(servers_answers):  # noqa: N802 - read as a class
    """Answers HaproxyServers from a list of canned results, one per call (the last repeats)."""
    return healthkit.FakeHost(F.HaproxyServers, servers_answers)


def test_settle_rereads_lagging_servers_until_they_settle():
    site = lab_site()
    rising = servers(site, down=api_down(site), status={("mariadb", "node02"): "DOWN 1/2"})
    settled = servers(site, down=api_down(site))
    results = healthy(site)
    results["node01"]["haproxy_servers"] = rising
    fake = FakeHost([rising, settled])
    slept = []
    assert V.settle(fake, site, results, sleep=slept.append) == 4 and slept == [2, 2]
    assert results["node01"]["haproxy_servers"]["listeners"] == settled["listeners"]
    assert results["node01"]["haproxy_servers"]["settle_wait_sec"] == 4
    assert fake.calls == [("HaproxyServers", {"socket": "/run/haproxy/admin.sock"})] * 2
    # Nothing lagging: no wait, no read.
    fake = FakeHost([settled])
    assert V.settle(fake, site, results, sleep=slept.append) == 0 and fake.calls == []
    # Never settling: bounded, and the state it ends in is what gets judged.
    results["node01"]["haproxy_servers"] = rising
    slept.clear()
    assert V.settle(FakeHost([rising]), site, results, sleep=slept.append) == V.SETTLE_SECONDS
    assert sum(slept) == V.SETTLE_SECONDS
    report = evaluate(site, results)
    assert any("node02 DOWN 1/2 (backup)" in r for r in report.host_failures("node01"))


def test_a_connection_dropped_mid_read_is_a_failed_check_not_a_crash():
    # Seen on the lab: a node rebooting mid-verification, paramiko raised EOFError from
    # open_session, which pyinfra 3.10 does not catch.
    class DroppingHost:
        name = "node01"

        def get_fact(self, fact, **kwargs):
            raise EOFError()

    site = lab_site()
    site.data.update(backup_enabled=True, backup_node="node01", monitoring_enabled=True)  # every fact read
    facts = V.collect_facts(DroppingHost(), site)
    assert set(facts) == set(FACT_OF)
    for key, cls in FACT_OF.items():
        assert facts[key]["error"] == "connection failed while reading (EOFError: )", key
        assert set(cls.default()) <= set(facts[key])  # the fact's default shape
    assert facts["galera"]["installed"] is None


def test_one_part_cut_on_the_host_fails_that_check_only():
    class SlowGaleraHost:
        name = "node01"

        def get_fact(self, fact, parts, limit, _ignore_errors):
            assert fact is Bundle and _ignore_errors is True and limit == V.FACT_TIMEOUT
            names = [fact_class(name).__name__ for name, _ in parts]
            return {"parts": [None if n == "GaleraNode" else {"error": None, "called": n} for n in names],
                    "status": ["124" if n == "GaleraNode" else "0" for n in names], "error": None}

    site = lab_site()
    site.data.update(backup_enabled=True, backup_node="node01", monitoring_enabled=True)  # every fact read
    facts = V.collect_facts(SlowGaleraHost(), site)
    assert facts["galera"]["error"] == f"no answer within {V.FACT_TIMEOUT} s (timed out on the host)"
    # Every other fact the model judges is read, under the key the model reads it from.
    assert {k: v.get("called", "GaleraNode") for k, v in facts.items()} == {
        k: cls.__name__ for k, cls in FACT_OF.items()}


def test_report_reasons_default_mode_publishes_once():
    site = lab_site()
    results = healthy(site)
    results["node03"]["vip"]["holds_vip"] = True
    run = _Run(site=site, results=results)
    report = evaluate(site, results)
    active = set(NAMES)
    r1, p1 = report_reasons(run, report, "node02", active)
    r2, p2 = report_reasons(run, report, "node01", active)
    r3, p3 = report_reasons(run, report, "node03", active)
    assert (p1, p2, p3) == (True, False, False)
    assert r1 == [] and r2 and r3


def test_report_reasons_serial_mode_last_host_carries_cluster_failures():
    site = lab_site()
    full = healthy(site)
    full["node01"]["vip"]["holds_vip"] = True
    full["node02"]["vip"]["holds_vip"] = True  # split brain between the first two hosts
    run = _Run(site=site)
    active = set(NAMES)
    for n in NAMES:  # --serial: each host collects, then reports, before the next starts
        run.results[n] = full[n]
        pending = tuple(active - set(run.results))
        reasons, publish = report_reasons(run, evaluate(site, run.results, pending=pending), n, active)
        if n != "node03":
            assert (reasons, publish) == ([], False)
    assert publish is True
    assert reasons == ["cluster vip holder: split brain: 10.77.0.100 is held by node01, node02"]


# --- the pyinfra operations, through pyinfra's own API on this machine (@local) -------------


def local_run(monkeypatch, facts_for_host, tmp_path, **data):
    """Queue and execute verify() for a one-controller site (@local) whose facts are given.

    Returns (state, calls): `calls` records when collect_facts ran (stage, is_executing).
    """
    calls = []

    def fake_collect(host, site):
        calls.append(host.state.is_executing)
        return facts_for_host

    monkeypatch.setattr(V, "collect_facts", fake_collect)
    monkeypatch.setenv(V.JSON_ENV, str(tmp_path / "health.json"))
    state = local_state("10.77.0.100", **data)
    assert calls == []  # queue time reads no fact: it would show the host before the run
    meta = state.get_meta_for_host(state.inventory.get_host("@local"))
    assert (meta.ops, meta.ops_change) == (3, 0)  # change detection: nothing to change
    execute(state)
    return state, calls


def local_facts(site_names=("@local",), healthy_host=True, monitoring=False):
    site = build_site(
        [(n, {"address": "127.0.0.1", "vrrp_priority": 150}) for n in site_names],
        {"internal_network": "127.0.0.0/8", "vip": "10.77.0.100"},
    )
    listeners = {
        lst.name: {"@local": {"status": "UP" if lst.name in ("mariadb", "rabbitmq_management") else "DOWN",
                              "backup": False, "check": None}}
        for lst in site.listeners
    }
    return {
        **(healthkit.watched(site) if monitoring else {}),
        "vip": {"holds_vip": healthy_host, "vip": "10.77.0.100", "interface": "lo", "addresses": [], "error": None},
        "haproxy_info": {"alive": True, "version": "2.6.12", "uptime_sec": 1, "pid": 1, "error": None},
        "haproxy_servers": {"listeners": listeners, "backends": {}, "error": None},
        "galera": {"installed": True, "active": True, "mysqld": "running", "query": "ok", "wsrep_cluster_size": "1",
                   "wsrep_cluster_status": "Primary", "wsrep_local_state_comment": "Synced", "wsrep_ready": "ON",
                   "wsrep_connected": "ON", "wsrep_cluster_state_uuid": "u", "wsrep_incoming_addresses": "",
                   "error": None},
        "rabbitmq": {"running_nodes": ["rabbit@@local"], "disk_nodes": [], "partitions": [], "alarms": [],
                     "error": None},
        "memcached": {"answering": True, "version": "1.6.18", "uptime": 1, "curr_connections": 1, "error": None},
        "keepalived": {"active": "active", "vrrp_state": "MASTER" if healthy_host else "BACKUP", "error": None},
        "maintenance": {"out": False, "error": None},
        "firewall": {"loaded": True, "controllers": ["127.0.0.1", "10.77.0.100"], "error": None},
        "haproxy_tls": certificate(days=400),
        "amqp_tls": {"amqp_tls": "stopped", "protocol": None, "verified": False, "detail": None, "error": None},
    }


def test_verify_operations_read_after_changes_and_are_never_a_change(monkeypatch, tmp_path):
    state, calls = local_run(monkeypatch, local_facts(), tmp_path)
    assert calls == [True]  # read once, at execution
    assert not state.failed_hosts
    results = state.get_results_for_host(state.inventory.get_host("@local"))
    assert (results.ops, results.success_ops, results.error_ops) == (3, 3, 0)
    for op_hash in state.get_op_order():
        op_data = state.get_op_data_for_host(state.inventory.get_host("@local"), op_hash)
        assert op_data.operation_meta.did_change() is False  # "No changes"
    data = json.loads((tmp_path / "health.json").read_text())
    assert data["ok"] is True and data["vip_holders"] == ["@local"]
    assert data["facts"]["@local"]["haproxy_servers"]["settle_wait_sec"] == 0  # nothing lagged


def test_with_monitoring_each_host_writes_its_verdict_and_it_is_no_change(monkeypatch, tmp_path):
    (tmp_path / "textfile").mkdir()
    path = tmp_path / "textfile" / "openstack_ha_health.prom"
    monkeypatch.setattr(V, "HEALTH_TEXTFILE", str(path))
    state, _ = local_run(monkeypatch, local_facts(healthy_host=False, monitoring=True), tmp_path,
                         monitoring_enabled=True)
    host = state.inventory.get_host("@local")
    assert host in state.failed_hosts  # the verdict is unchanged by the write
    text = path.read_text()
    assert "openstack_ha_health_ok 0\n" in text
    assert 'openstack_ha_health_check{check="cluster vip holder",status="FAIL"} 1' in text
    assert 'openstack_ha_health_check{check="galera",status="ok"} 1' in text
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    for op_hash in state.get_op_order()[:2]:
        assert state.get_op_data_for_host(host, op_hash).operation_meta.did_change() is False
    # healthy: the next run rewrites it, still no change
    state, _ = local_run(monkeypatch, local_facts(monitoring=True), tmp_path, monitoring_enabled=True)
    assert not state.failed_hosts
    assert "openstack_ha_health_ok 1\n" in path.read_text()
    for op_hash in state.get_op_order():
        assert state.get_op_data_for_host(state.inventory.get_host("@local"), op_hash).operation_meta.did_change() is False


def test_a_verdict_that_cannot_be_written_is_a_warning_not_a_failure(monkeypatch, tmp_path):
    monkeypatch.setattr(V, "HEALTH_TEXTFILE", str(tmp_path / "missing" / "openstack_ha_health.prom"))
    warned = []
    monkeypatch.setattr(V.logger, "warning", lambda msg, *a, **k: warned.append(str(msg)))
    state, _ = local_run(monkeypatch, local_facts(monitoring=True), tmp_path, monitoring_enabled=True)
    assert not state.failed_hosts
    assert any("health metrics not written" in w for w in warned), warned


def test_without_monitoring_no_verdict_is_written(monkeypatch, tmp_path):
    path = tmp_path / "openstack_ha_health.prom"
    monkeypatch.setattr(V, "HEALTH_TEXTFILE", str(path))
    local_run(monkeypatch, local_facts(), tmp_path)
    assert not path.exists()


def test_textfile_command_writes_atomically(tmp_path):
    import subprocess

    path = tmp_path / "x.prom"
    text = "a 1\nb{c=\"it's\"} 2\n"
    assert subprocess.run(["sh", "-c", V.textfile_command(str(path), text)], timeout=10).returncode == 0
    assert path.read_text() == text and [p.name for p in tmp_path.iterdir()] == ["x.prom"]
    gone = tmp_path / "gone" / "x.prom"
    assert subprocess.run(["sh", "-c", V.textfile_command(str(gone), text)], timeout=10, capture_output=True).returncode == 1


def test_verify_fails_the_host_on_a_missing_fact(monkeypatch, tmp_path):
    facts = local_facts()
    del facts["keepalived"]
    state, calls = local_run(monkeypatch, facts, tmp_path)
    assert state.inventory.get_host("@local") in state.failed_hosts
    data = json.loads((tmp_path / "health.json").read_text())
    assert data["failures"] == ["@local: keepalived: fact 'keepalived' not collected"]


def test_verify_operations_fail_the_host_with_the_reason(monkeypatch, tmp_path):
    state, calls = local_run(monkeypatch, local_facts(healthy_host=False), tmp_path)
    host = state.inventory.get_host("@local")
    assert host in state.failed_hosts
    results = state.get_results_for_host(host)
    assert (results.success_ops, results.error_ops) == (2, 1)  # collect, settle ok; report failed
    data = json.loads((tmp_path / "health.json").read_text())
    assert data["failures"] == ["cluster: vip holder: no controller holds 10.77.0.100"]


def test_nothing_changed_walks_the_operations_once_when_the_answer_is_final(monkeypatch):
    from pyinfra.context import ctx_host

    walks, answer = [], {}
    monkeypatch.setattr(V, "outcomes_before", lambda current: walks.append(current) or answer["now"])

    class AtCollect:
        current_op_hash = "collect"

    with ctx_host.use(AtCollect()):
        run = _Run(site=lab_site())
        answer["now"] = (False, True)  # default mode: every earlier operation complete
        assert V.nothing_changed(run) and V.nothing_changed(run) and walks == ["collect"]
        run = _Run(site=lab_site())
        answer["now"] = (False, False)  # --serial: another host has not run its operations yet
        assert V.nothing_changed(run) and V.nothing_changed(run) and len(walks) == 3
        answer["now"] = (True, False)  # a change stays a change
        assert not V.nothing_changed(run) and not V.nothing_changed(run) and len(walks) == 4


def test_outcomes_before_reads_the_operations_before_the_current_one(monkeypatch, tmp_path):
    from pyinfra.context import ctx_state

    state, _ = local_run(monkeypatch, local_facts(healthy_host=False), tmp_path)
    collect, settle, report = state.get_op_order()
    with ctx_state.use(state):
        assert V.outcomes_before(collect) == (False, True)  # nothing before it
        assert V.outcomes_before(report) == (False, True)  # collect and settle: no command, succeeded
        assert V.outcomes_before(None) == (True, True)  # the report's failing command counts


def test_hosts_that_ask_at_once_share_one_report(monkeypatch):
    """Building the site may yield to another host's greenlet (I/O): both must get the same
    _Run, or each reports on a part of the controllers (seen on the lab: no report at all)."""
    import gevent

    site = lab_site()

    def slow_site(inventory):
        gevent.sleep(0.01)
        return site

    monkeypatch.setattr(V, "site_from_inventory", slow_site)
    from pyinfra.context import ctx_state

    class FakeState:
        inventory = None

    st = FakeState()
    with ctx_state.use(st):  # one run: its hosts' greenlets
        jobs = [gevent.spawn(V._run_for, st) for _ in range(3)]
        gevent.joinall(jobs)
    assert len({id(j.value) for j in jobs}) == 1 and jobs[0].value is not None


def test_each_run_is_kept_with_its_state_not_with_pyinfras_proxy(monkeypatch):
    """verify's operations pass pyinfra's context proxy (`from pyinfra import state`): the run is
    kept with the State it stands for (operations/runstate.py), and goes with it. Kept with the
    proxy (which lives for the process and hashes as the current State), a State made at a
    freed one's address got that one's run: test_with_monitoring_each_host_writes_its_verdict_and_it_is_no_change
    failed about once in 15 runs under load that way."""
    import gc

    import pyinfra
    from pyinfra.context import ctx_state

    import operations.runstate as R

    monkeypatch.setattr(V, "site_from_inventory", lambda inventory: lab_site())

    class FakeState:
        inventory = None

    gc.collect()
    before = len(R._runs)
    first, second = FakeState(), FakeState()
    gone = (weakref.ref(first), weakref.ref(second))
    with ctx_state.use(first):
        run = V._run_for(pyinfra.state)
        assert V._run_for(pyinfra.state) is run
    with ctx_state.use(second):
        assert V._run_for(pyinfra.state) is not run
    assert {id(first), id(second)} <= set(map(id, R._runs.keys()))
    del first, second, run
    gc.collect()
    assert [ref() for ref in gone] == [None, None] and len(R._runs) == before
