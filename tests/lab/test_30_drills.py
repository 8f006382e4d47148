"""Failover drills on the lab: the reference article's HA scenarios, the service failures, the
Galera-aware check and the one-writer rule, each as a client of the VIP sees them.

The module deploys first (deploy.py, then the lab's API stand-ins, lab/backends.py) and asserts
a healthy report. Each drill starts from a healthy lab and ends by restoring it (every node on,
every service running, health report OK: Galera 3 Synced, RabbitMQ 3 running). Who holds the
VIP is read from the nodes, never assumed (every keepalived is BACKUP + nopreempt: the first
to start wins). Waits are bounded polling loops; measured figures are printed (pytest -s),
never asserted.

Faults: drills.power_cut (link down, then lab.kill), lab.isolate (link cut), systemctl stop
(a service), a port of the API stand-ins closed, `SET GLOBAL wsrep_desync=ON`.
"""

from __future__ import annotations

import time

import pytest

import lab
from lab import backends, drills, sitemodel
from config.files import KEEPALIVED_SERVE_SCRIPT
from lab.drills import Session, SessionClosed, log

API = "keystone_internal"  # the API listener most drills watch (round robin)
DB = "mariadb"
NODES = ("node01", "node02", "node03")


# Fixtures `deployed` and `healthy`: tests/lab/conftest.py.


# --- helpers -------------------------------------------------------------------------------


def api_port() -> int:
    """The API listener's port on the VIP (the site's catalogue)."""
    return sitemodel.listen_port(API)


def names_after_marked_down(holder: str, dead: tuple[str, ...], port: int | None = None, listener: str = API,
                            count: int = 30) -> list:
    """Once `holder`'s HAProxy marked every dead node DOWN: `count` requests through the VIP."""
    for d in dead:
        waited = drills.wait_server(holder, listener, d, "DOWN", timeout=60)
        log(f"{holder}'s HAProxy: {listener}/{d} DOWN (waited {waited:.1f}s more)")
    return drills.http_names(port or api_port(), count)


def wait_all_down(holder: str, dead: tuple[str, ...], timeout: float = 60) -> float:
    """Seconds until `holder`'s HAProxy marked the dead nodes DOWN in every API listener."""
    ports = backends.ports()

    def probe():
        return all(drills.haproxy_servers(holder, name).get(d) == "DOWN" for name in ports for d in dead)
    return drills.wait_for(f"{holder}'s HAProxy to mark {', '.join(dead)} DOWN everywhere", probe, timeout, 0.5)[1]


def first_http_success(timeout: float = 60) -> float:
    _, t = drills.wait_for("an HTTP answer through the VIP", lambda: drills.http_get(api_port(), timeout=2), timeout)
    return t


def wait_db_node(expected: str, timeout: float = 60) -> float:
    _, t = drills.wait_for(f"new DB connections through the VIP to land on {expected}",
                           lambda: drills.db_node(timeout=5) == expected, timeout, 0.5)
    return t


def wait_synced(node: str, timeout: float = 120) -> float:
    def probe():
        s = drills.wsrep(node)
        return s.get("wsrep_local_state_comment") == "Synced" and s.get("wsrep_cluster_status") == "Primary"
    return drills.wait_for(f"{node} Synced in a Primary component", probe, timeout, 1)[1]


def wait_non_primary(node: str, timeout: float = 60) -> float:
    return drills.wait_for(f"{node} to leave the Primary component",
                           lambda: drills.wsrep(node).get("wsrep_cluster_status") not in (None, "Primary"),
                           timeout, 0.5)[1]


def kill_vip_holder_node01() -> tuple[str, float]:
    """The article's starting point: node01 holds the VIP and takes the database; then its power
    is cut. Returns (the new holder, seconds until it held the VIP)."""
    drills.place_vip("node01")
    assert drills.db_node() == "node01"
    t0 = time.monotonic()
    drills.power_cut("node01")
    new, _ = drills.wait_holder(30, other_than=("node01",))
    return new, time.monotonic() - t0


# --- the article's scenarios ---------------------------------------------------------------


def test_scenario_1_vip_holder_down(healthy):
    """(1) node01, holding the VIP and the database, goes down: another node takes the VIP,
    HAProxy drops node01, the APIs are served by the others, the database goes to node02."""
    t0 = time.monotonic()
    new, t_vip = kill_vip_holder_node01()
    assert new in ("node02", "node03")
    t_http = first_http_success()
    names = names_after_marked_down(new, ("node01",))
    wait_db_node("node02")
    log(f"scenario 1: VIP on {new} after {t_vip:.1f}s; first HTTP answer {t_http:.1f}s after that; "
        f"new DB connections on node02 {time.monotonic() - t0:.1f}s after the power cut")
    assert None not in names, names
    assert "node01" not in names
    assert set(names) == {"node02", "node03"}, names
    assert drills.db_node() == "node02"
    assert drills.holders() == [new]


def wait_last_resort(node: str, timeout: float = 60) -> float:
    """Seconds until `node`, alone (its peers down), holds the VIP as check_serving's last
    resort (docs/failover.md "Partitions"): a node that sees a minority gives the VIP up (it cannot tell
    dead peers from a cut), and takes it again when no other controller answered on the VIP for
    keepalived_serve_last_resort seconds."""
    def probe():
        return drills.holders() == [node] and "last resort" in lab.exec_(node, [KEEPALIVED_SERVE_SCRIPT]).stdout
    return drills.wait_for(f"{node} to hold the VIP as the last resort", probe, timeout, 1)[1]


def node03_serves_alone(t0: float) -> tuple[float, float, float]:
    """node01 and node02 are down: node03 holds the VIP (as the last resort) and serves every
    API, leaves the Primary component (no quorum) and is marked DOWN by the Galera check.
    Seconds since t0 for each."""
    wait_last_resort("node03")
    t_vip = time.monotonic() - t0
    names = names_after_marked_down("node03", ("node01", "node02"))
    assert names == ["node03"] * len(names), names
    wait_all_down("node03", ("node01", "node02"))
    for listener, port in backends.ports().items():
        assert drills.http_names(port, 3) == ["node03"] * 3, listener
    wait_non_primary("node03")
    t_np = time.monotonic() - t0
    drills.wait_server("node03", DB, "node03", "DOWN", timeout=60)
    return t_vip, t_np, time.monotonic() - t0


def test_scenario_2_then_a_second_node_down(healthy):
    """(2) After (1), node02 goes down too: node03 holds the VIP and serves every API.
    The database: node03 alone is 1 of the last 2 members, not a majority, so Galera takes it
    out of the Primary component (it cannot tell dead peers from a partition); the
    Galera-aware check answers 503 and HAProxy stops sending it connections - no split brain.
    The operator's decision (pc.bootstrap on the survivor) makes it a Primary component of its
    own: then node03 serves the database too."""
    new, _ = kill_vip_holder_node01()
    wait_db_node("node02")
    t0 = time.monotonic()
    drills.power_cut("node02")
    t_vip, t_np, t_check = node03_serves_alone(t0)
    assert drills.db_node(timeout=5) is None  # no database through the VIP without quorum
    log(f"scenario 2: VIP on node03 {t_vip:.1f}s after node02's power cut; node03 seen non-Primary "
        f"{t_np:.1f}s and marked DOWN by the Galera check {t_check:.1f}s after it")
    # the operator's recovery: node03 is the only copy left
    drills.node_sql("node03", "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'")
    t_sync = wait_synced("node03", 60)
    t_db = wait_db_node("node03")
    log(f"scenario 2: after pc.bootstrap, node03 Synced in {t_sync:.1f}s, DB through the VIP in {t_db:.1f}s")
    assert drills.holders() == ["node03"]


def test_scenario_3_two_nodes_down_at_once(healthy):
    """(3) node01 and node02 lose power together: node03 takes the VIP and every API (as
    check_serving's last resort: alone, it cannot tell dead peers from a cut, gives the VIP up,
    and takes it again when nobody else answered on it for a while). The
    database: 1 of 3 members is no quorum; node03 leaves the Primary component and the check
    takes it out of HAProxy (the article's "database only on node03" would be a split brain
    waiting to happen). When the others come back, pc.recovery re-forms the cluster by itself
    (checked when the drill restores the lab)."""
    drills.place_vip("node01")
    t0 = time.monotonic()
    drills.power_cut("node01", "node02")
    gap = time.monotonic() - t0
    t_vip, t_np, t_check = node03_serves_alone(t0)
    assert drills.db_node(timeout=5) is None
    log(f"scenario 3: both cut within {gap:.2f}s; VIP on node03 after {t_vip:.1f}s; node03 seen non-Primary "
        f"{t_np:.1f}s and marked DOWN by the Galera check {t_check:.1f}s after the cut: no database "
        "through the VIP without quorum")
    # all back, without any operator action: the cluster re-forms by itself
    t1 = time.monotonic()
    lab.start("node01")
    lab.start("node02")
    report, _ = drills.wait_healthy(300)
    log(f"scenario 3: both back: healthy {time.monotonic() - t1:.1f}s after power on "
        f"({drills.galera_synced_count(report)} Synced, RabbitMQ {sorted(drills.rabbit_running(report))})")
    assert drills.galera_synced_count(report) == 3
    assert report["vip_holders"] == ["node03"]


def test_scenario_4_first_node_comes_back(healthy):
    """(4) After (1), node01 comes back: the VIP stays where it is (nopreempt), the APIs are
    balanced to node01 again, and the database follows backup semantics: new connections go
    to node01 (the first non-backup server UP). Unlike the article (tcp mode has no cookies),
    sessions still open on the backup are closed (on-marked-up shutdown-backup-sessions), so
    they reconnect to node01 too: one writer."""
    new, _ = kill_vip_holder_node01()
    wait_db_node("node02")
    on_backup = Session()
    assert on_backup.node == "node02"
    t0 = time.monotonic()
    lab.start("node01")
    t_boot = time.monotonic() - t0
    wait_synced("node01")
    t_synced = time.monotonic() - t0
    drills.wait_server(new, DB, "node01", "UP", timeout=60)
    t_up = time.monotonic() - t0
    drills.wait_server(new, API, "node01", "UP", timeout=60)
    log(f"scenario 4: node01 powered on: booted in {t_boot:.1f}s, Synced {t_synced:.1f}s and its database "
        f"UP in {new}'s HAProxy {t_up:.1f}s after power on")
    # nopreempt: the VIP stays, watched for a while
    end = time.monotonic() + 5
    while time.monotonic() < end:
        assert drills.holders() == [new]
        time.sleep(0.5)
    names = drills.http_names(api_port(), 30)
    assert None not in names and set(names) == set(NODES), names
    assert drills.db_node() == "node01"
    with pytest.raises(SessionClosed):
        on_backup.query("SELECT @@hostname")
    on_backup.close()


def test_scenario_5_all_back(healthy):
    """(5) After (2)'s two power cuts, node01 and node02 come back: Galera 3 Synced, RabbitMQ
    3 running, by themselves (no bootstrap); the VIP stays on node03 (nopreempt); the database
    goes to node01 again, the APIs to all three."""
    drills.place_vip("node01")
    drills.power_cut("node01")
    drills.wait_holder(30, other_than=("node01",))
    wait_db_node("node02")
    drills.power_cut("node02")
    wait_last_resort("node03")
    wait_non_primary("node03")
    t0 = time.monotonic()
    lab.start("node01")
    lab.start("node02")
    report, _ = drills.wait_healthy(300)
    t_healthy = time.monotonic() - t0
    assert drills.galera_synced_count(report) == 3
    assert drills.rabbit_running(report) == {f"rabbit@{n}" for n in NODES}
    assert report["vip_holders"] == ["node03"]
    drills.wait_server("node03", DB, "node01", "UP", timeout=60)
    assert drills.db_node() == "node01"
    names = drills.http_names(api_port(), 30)
    assert set(names) == set(NODES), names
    log(f"scenario 5: all back and healthy {t_healthy:.1f}s after power on; VIP still on node03")


# --- services down -------------------------------------------------------------------------


def test_haproxy_stopped_on_the_vip_holder_moves_the_vip(healthy):
    old = healthy["vip_holders"][0]
    t0 = time.monotonic()
    r = drills.systemctl(old, "stop", "haproxy")
    assert r.returncode == 0, r.stderr
    new, _ = drills.wait_holder(30, other_than=(old,))
    t_vip = time.monotonic() - t0
    t_http = first_http_success()
    names = drills.http_names(api_port(), 30)
    assert None not in names and set(names) == set(NODES), names  # every backend still serves
    assert drills.db_node() == "node01"
    log(f"haproxy stopped on {old}: VIP on {new} after {t_vip:.1f}s; HTTP answered {t_http:.1f}s after that")


def test_standby_whose_haproxy_stopped_is_reported_in_fault_until_its_check_rises(healthy):
    """A standby whose HAProxy stops cannot take the VIP (keepalived FAULT): the report fails on
    it, and keeps failing after HAProxy is back until check_alive has passed `rise` times."""
    holder = healthy["vip_holders"][0]
    standby = next(n for n in NODES if n != holder)
    assert drills.systemctl(standby, "stop", "haproxy").returncode == 0
    report, _ = drills.wait_for(f"{standby} reported in FAULT", lambda: (lambda r: r if any(
        f.startswith(f"{standby}: keepalived: VRRP FAULT") for f in r["failures"]) else None)(drills.verify_report()), 60, 1)
    assert drills.holders() == [holder]  # the VIP did not move
    # FAULT came at once (keepalived follows HAProxy's unit); an outage longer than check_alive's
    # fall x interval also makes check_alive fail, and then its `rise` holds the node back
    d = sitemodel.site().data
    time.sleep((d["keepalived_check_fall"] + 1) * d["keepalived_check_interval"])
    assert drills.systemctl(standby, "start", "haproxy").returncode == 0
    t0 = time.monotonic()
    back = drills.verify_report()
    still_fault = [f for f in back["failures"] if "keepalived: VRRP FAULT" in f]
    assert still_fault and not [f for f in back["failures"] if f.startswith(f"{standby}: haproxy:")], back["failures"]
    final, _ = drills.wait_healthy(120)
    log(f"{standby}: HAProxy stopped -> keepalived FAULT in the report; HAProxy back: still FAULT "
        f"({still_fault[0]}), healthy again {time.monotonic() - t0:.1f}s after the start")


def test_one_api_backend_stopped_gets_no_request(healthy):
    holder = healthy["vip_holders"][0]
    victim = next(n for n in NODES if n != holder)
    t0 = time.monotonic()
    backends.stop_port(victim, sitemodel.backend_port(API))
    t_down = drills.wait_server(holder, API, victim, "DOWN", timeout=60)
    names = drills.http_names(api_port(), 30)
    assert None not in names, names
    assert victim not in names and set(names) == set(NODES) - {victim}, names
    other = drills.http_names(sitemodel.listen_port("glance_api"), 30)  # its other APIs still serve
    assert victim in other
    log(f"{API} stopped on {victim}: marked DOWN by {holder}'s HAProxy {time.monotonic() - t0:.1f}s "
        f"after the stop ({t_down:.1f}s of polling)")
    backends.start_port(victim, sitemodel.backend_port(API))
    t_up = drills.wait_server(holder, API, victim, "UP", timeout=60)
    names = drills.http_names(api_port(), 30)
    assert victim in names
    log(f"{API} on {victim} back: UP after {t_up:.1f}s, served again")


def test_holder_link_cut_moves_the_vip_and_heal_leaves_one_holder(healthy):
    old = healthy["vip_holders"][0]
    t0 = time.monotonic()
    lab.isolate(old)
    new, _ = drills.wait_holder(30, other_than=(old,))
    t_vip = time.monotonic() - t0
    t_http = first_http_success()
    names = names_after_marked_down(new, (old,))
    assert None not in names and old not in names, names
    lab.heal(old)
    # after the heal: exactly one holder, the new one, held steadily
    end = time.monotonic() + 10
    while time.monotonic() < end:
        assert drills.holders() == [new]
        time.sleep(0.5)
    log(f"link of {old} cut: VIP on {new} after {t_vip:.1f}s, HTTP answered {t_http:.1f}s after that; "
        f"after the heal {new} alone holds it")


# --- the Galera-aware check and the one-writer rule ----------------------------------------


def test_desynced_node_gets_no_database_traffic(healthy):
    holder = healthy["vip_holders"][0]
    active = drills.db_node()
    assert active == "node01"
    try:
        t0 = time.monotonic()
        drills.node_sql(active, "SET GLOBAL wsrep_desync=ON")
        state, _ = drills.wait_for(f"{active} to leave Synced", lambda: (
            (lambda s: s if s.get("wsrep_local_state") != "4" else None)(drills.wsrep(active))), 30)
        t_down = drills.wait_server(holder, DB, active, "DOWN", timeout=60)
        t_mark = time.monotonic() - t0
        after = [drills.db_node() for _ in range(5)]
        assert after == ["node02"] * 5, after
        log(f"{active} desynced ({state['wsrep_local_state_comment']}): marked DOWN by the Galera check "
            f"after {t_mark:.1f}s; new connections on node02")
    finally:
        drills.node_sql(active, "SET GLOBAL wsrep_desync=OFF")
    t1 = time.monotonic()
    drills.wait_server(holder, DB, active, "UP", timeout=60)
    assert drills.db_node() == active
    log(f"{active} resynced: UP again after {time.monotonic() - t1:.1f}s, new connections back on it")
    del t_down


def test_one_writer_after_node01_recovers(healthy):
    """Long-lived sessions opened through the VIP before node01 fails; node01 fails, the
    sessions reconnect to node02; node01 recovers: HAProxy closes the sessions on node02
    (shutdown-backup-sessions), they reconnect to node01, and from then on exactly one node
    takes writes. Every acknowledged write is in the database afterwards."""
    if drills.holder() == "node01":  # the sessions must outlive node01: the VIP elsewhere
        drills.place_vip("node02")
    holder = drills.holder()
    table = "one_writer"
    drills.prepare_writes(table)
    clients = [f"client{i}" for i in range(3)]
    sessions = {c: Session() for c in clients}
    acked: list[tuple[str, str, str, int]] = []  # (phase, client, node, id)
    closed: dict[str, int] = {"failure": 0, "recovery": 0}

    def write_all(phase: str, rounds: int = 3):
        for _ in range(rounds):
            for c in clients:
                for _attempt in range(5):
                    try:
                        node, ident = drills.write(sessions[c], table, c)
                        acked.append((phase, c, node, ident))
                        break
                    except SessionClosed:
                        closed[phase] = closed.get(phase, 0) + 1
                        sessions[c].close()
                        sessions[c] = drills.wait_for(f"{c} to reconnect", lambda: _try_session(), 60, 0.5)[0]

    try:
        assert {s.node for s in sessions.values()} == {"node01"}
        write_all("before")
        t0 = time.monotonic()
        drills.power_cut("node01")
        drills.wait_server(holder, DB, "node01", "DOWN", timeout=60)
        write_all("failure")
        t_fail = time.monotonic() - t0
        assert {n for p, _, n, _ in acked if p == "failure"} == {"node02"}
        assert all(s.node == "node02" for s in sessions.values())
        lab.start("node01")
        wait_synced("node01")
        drills.wait_server(holder, DB, "node01", "UP", timeout=60)
        write_all("recovery")
        writers = sorted({n for p, _, n, _ in acked if p == "recovery"})
        log(f"one writer: sessions closed when node01 failed: {closed['failure']} "
            f"(all writes on node02 within {t_fail:.1f}s); closed when it came back: {closed['recovery']}; "
            f"nodes serving writes after recovery: {writers}")
        assert writers == ["node01"]
        assert closed["recovery"] == len(clients)  # every session on the backup was closed
        ids = {int(x) for x in drills.sql(f"SELECT id FROM {drills.WRITES_DB}.{table}").split()}
        missing = [a for a in acked if a[3] not in ids]
        assert not missing, missing
        log(f"one writer: {len(acked)} acknowledged writes, all present")
    finally:
        for s in sessions.values():
            s.close()


def _try_session():
    try:
        return Session()
    except SessionClosed:
        return None
