"""Alert drills on the deployed lab (issue 20's done-when list; docs/monitoring.md): each fault
fires its alert and the heal resolves it, as the lab's webhook receiver records it
(lab/alert_receiver.py; the lab inventory's monitoring_webhooks).

Per drill: the fault; the alert firing in Prometheus within its `for:` plus two scrape
intervals and one evaluation (the issue's bound, read on /api/v1/alerts); the receiver's
firing notification within that plus Alertmanager's group_wait (a notification waits for its
group); each alert received once although three Alertmanagers run (at most one firing
notification per alert of the group: a second one only when another alert joins its group);
the heal; the resolved notification, within Alertmanager's group_interval plus two scrapes
(a resolved notification waits for the group's next flush). Every drill undoes its own fault
in `finally`; the `healthy` fixture then restores the lab (drills.restore()).

The faults: mariadb stopped on one node (MysqlDown); HAProxy stopped on the VIP holder
(KeepalivedFault there: its check_alive fails, the VIP moves, no VIP alert); a RabbitMQ memory
alarm through a lowered watermark (RabbitmqMemoryAlarm); a controller in maintenance
(ControllerInMaintenance, severity info: routed to no receiver, so read on Prometheus and
Alertmanager; the receiver gets nothing naming that node meanwhile); the VIP's certificate on
one node replaced by one expiring within monitoring_certificate_days (CertificateExpiresSoon;
HAProxy is not reloaded, it keeps serving the real one); the backup node's manifests moved
aside (BackupTooOld); a node's power cut (NodeDown).

Every drill is marked `long` (`make test-long`, about 40 min: the certificate and backup drills
wait for a `for:` of 10 minutes each): make test's 60 minutes had no room left (its full run of
2026-12-06 took 66 min with the MysqlDown drill in it, 107 s). test_95 keeps the monitoring in
make test (every target up, no alert on a healthy lab). The lab's
Alertmanagers group briefly (inventories/lab.py: monitoring_group_wait 5 s, group_interval 15 s);
the bounds are read from the rendered alertmanager.yml.

Each drill that passes adds its figures to docs/bench-alerts/records.json (tests/bench/records.py;
docs/monitoring.md's table is made from the latest of each: `python -m tests.bench.figures --write`).
"""

from __future__ import annotations

import re
import time

import pytest

import lab
from config import backup as backup_config
from config import monitoring
from lab import alert_receiver, drills, sitemodel
from lab.drills import log
from lab.names import ALERT_RECEIVER_DIR, ALERT_RECEIVER_URL, CA_FILE, CA_KEY
from tests.bench import records

NODES = ["node01", "node02", "node03"]
SLACK = 20  # seconds: a scrape's own time, the receiver's write, this test's polling
POLL = 3


# --- what the monitoring says ---------------------------------------------------------------------


def seconds(duration: str) -> int:
    """A Prometheus duration of one unit ("30s", "5m", "4h") in seconds."""
    m = re.fullmatch(r"([0-9]+)(s|m|h)", duration)
    assert m, duration
    return int(m[1]) * {"s": 1, "m": 60, "h": 3600}[m[2]]


def bounds(alert: str) -> tuple[int, int, int]:
    """(seconds until Prometheus fires it, until the receiver has it, until the receiver has
    it resolved after the heal), from the rendered rules and alertmanager.yml."""
    site = sitemodel.site()
    rule = next(a for a in monitoring.alerts(site) if a.name == alert)
    scrape, evaluation = site["monitoring_scrape_interval"], site["monitoring_evaluation_interval"]
    am = monitoring.render_alertmanager(site, NODES[0])
    group_wait = seconds(re.search(r"group_wait: (\S+)", am)[1])
    group_interval = seconds(re.search(r"group_interval: (\S+)", am)[1])
    fires = seconds(rule.for_) + 2 * scrape + evaluation + SLACK
    return fires, fires + group_wait, group_interval + 2 * scrape + evaluation + SLACK


get = drills.monitoring_get


def prometheus_firing(alert: str, node: str | None) -> list[dict]:
    """The alert's firing instances (for `node`; None: any) on any Prometheus that answers."""
    for n in drills.running():
        try:
            answer = get(n, "monitoring_prometheus_port", "/api/v1/alerts")
        except OSError:
            continue
        return [a for a in answer["data"]["alerts"] if a["labels"]["alertname"] == alert and a["state"] == "firing"
                and (node is None or a["labels"].get("node") == node)]
    raise lab.LabError("no Prometheus answers")  # wait_for polls on


def records_file():
    return alert_receiver.records_file(ALERT_RECEIVER_DIR)


def received(alert: str, node: str | None, status: str, since: float) -> list[dict]:
    """The receiver's events of the alert (for `node`) with `status`, received since `since`."""
    return [e for e in alert_receiver.events(alert_receiver.records(records_file(), since))
            if e["alertname"] == alert and e["status"] == status and (node is None or e["labels"].get("node") == node)]


def notified(since: float, node: str) -> list[tuple[str, str]]:
    """(alertname, status) of every event naming `node` received since `since`."""
    return [(e["alertname"], e["status"]) for e in alert_receiver.events(alert_receiver.records(records_file(), since))
            if e["labels"].get("node") == node]


@pytest.fixture(scope="module")
def receiving(deployed):
    """The receiver runs (the lab starts it) and the deployed Alertmanagers post to it."""
    assert alert_receiver.running_pid(ALERT_RECEIVER_DIR), "the lab's alert receiver does not run (python -m lab up starts it)"
    assert sitemodel.data("monitoring_webhooks") == [ALERT_RECEIVER_URL]
    return deployed


def record(label: str, fault: str, figures: dict) -> None:
    """One passed drill's figures in docs/bench-alerts/records.json, with what it ran under."""
    where = (f"the lab: {len(NODES)} nodes (inventories/lab.py: monitoring_group_wait {sitemodel.data('monitoring_group_wait')} s, "
             f"monitoring_group_interval {sitemodel.data('monitoring_group_interval')} s)")
    path = records.append("alerts", label, {"test": "tests/lab/test_96_alerts.py", "fault": fault, "where": where}, figures)
    log(f"{label}: recorded in {path.relative_to(records.ROOT)}")


def drill(alert: str, node: str | None, fault, heal, what: str) -> None:
    """Fault (`what` names it in the record), the alert firing (Prometheus, then the receiver,
    once), heal, resolved; then the figures recorded."""
    fires, notify, resolves = bounds(alert)
    t0 = time.time()
    fault()
    try:
        drills.wait_for(f"{alert} ({node}) firing in Prometheus", lambda: prometheus_firing(alert, node),
                        timeout=fires, interval=POLL)
        firing_s = round(time.time() - t0)
        log(f"{alert} ({node}): firing in Prometheus after {firing_s}s (bound {fires}s)")
        drills.wait_for(f"{alert} ({node}) at the receiver", lambda: received(alert, node, "firing", t0),
                        timeout=max(notify - (time.time() - t0), POLL), interval=POLL)
        received_s = round(time.time() - t0)
        log(f"{alert} ({node}): received after {received_s}s (bound {notify}s)")
    finally:
        t_heal = time.time()
        heal()
    drills.wait_for(f"{alert} ({node}) resolved at the receiver", lambda: received(alert, node, "resolved", t_heal),
                    timeout=resolves, interval=POLL)
    resolved_s = round(time.time() - t_heal)
    log(f"{alert} ({node}): resolved {resolved_s}s after the heal (bound {resolves}s)")
    firing = received(alert, node, "firing", t0)
    alerts = {e["fingerprint"] for e in firing}
    notifications = {e["received_ts"] for e in firing}
    # Three Alertmanagers, one notification: at most one per alert of the group (an alert
    # joining the group, e.g. keepalived's second VRRP instance, makes one more of the group).
    assert 1 <= len(notifications) <= len(alerts), f"{alert}: {len(notifications)} firing notifications of {len(alerts)} alerts"
    record(alert, what, {"node": node, "firing_s": firing_s, "firing_bound_s": fires, "received_s": received_s,
                         "received_bound_s": notify, "resolved_s": resolved_s, "resolved_bound_s": resolves})


# --- the drills -----------------------------------------------------------------------------------------


@pytest.mark.long  # 107 s in make test's full run of 2026-12-06, which took 66 min: make test-long
def test_mariadb_stopped_on_one_node_fires_mysql_down(receiving, healthy):
    node = "node03"
    drill("MysqlDown", node,
          lambda: drills.systemctl(node, "stop", "mariadb", timeout=300),
          lambda: drills.systemctl(node, "start", "mariadb", timeout=300), f"mariadb stopped on {node}")


@pytest.mark.long
def test_haproxy_stopped_on_the_vip_holder_fires_keepalived_fault(receiving, healthy):
    holder = drills.holder()
    assert holder, "no VIP holder"
    t0 = time.time()
    try:
        drill("KeepalivedFault", holder,
              lambda: drills.systemctl(holder, "stop", "haproxy"),
              lambda: drills.systemctl(holder, "start", "haproxy"), "HAProxy stopped on the VIP holder")
    finally:
        drills.systemctl(holder, "start", "haproxy")
    # the VIP moved: never held by no controller
    assert not received("VipHeldByNoController", None, "firing", t0)


def watermark_args(value) -> list[str]:
    """rabbitmqctl set_vm_memory_high_watermark's arguments for the site's value."""
    return [str(value)] if isinstance(value, (int, float)) else ["absolute", str(value)]


@pytest.mark.long
def test_a_lowered_rabbitmq_watermark_fires_the_memory_alarm(receiving, healthy):
    node = "node02"
    site_value = sitemodel.data("rabbitmq_memory_high_watermark")

    def watermark(*args):
        r = lab.exec_(node, ["rabbitmqctl", "set_vm_memory_high_watermark", *args], timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr

    try:
        drill("RabbitmqMemoryAlarm", node, lambda: watermark("absolute", "1000000"), lambda: watermark(*watermark_args(site_value)),
              f"RabbitMQ watermark lowered on {node}")
    finally:
        try:
            watermark(*watermark_args(site_value))
        except (AssertionError, lab.LabError):
            drills.systemctl(node, "restart", "rabbitmq-server", timeout=300)  # its rabbitmq.conf's value again


@pytest.mark.long
def test_a_controller_in_maintenance_fires_only_its_info_alert(receiving, healthy):
    """ControllerInMaintenance fires at once and goes to no receiver; it inhibits the node's
    other alerts: the receiver gets nothing naming the node while it is out."""
    node = "node02"
    fires, _, _ = bounds("ControllerInMaintenance")

    def maintenance(action: str):
        run = drills.pyinfra("-y", "inventories/lab.py", "maintenance.py", "--data", f"node={node}",
                             "--data", f"action={action}", timeout=600)
        assert run.returncode == 0, drills.run_excerpt(run.stdout)

    t0 = time.time()
    maintenance("out")
    try:
        drills.wait_for(f"ControllerInMaintenance ({node}) firing in Prometheus",
                        lambda: prometheus_firing("ControllerInMaintenance", node), timeout=fires, interval=POLL)
        firing_s = round(time.time() - t0)
        log(f"ControllerInMaintenance ({node}): firing after {firing_s}s (bound {fires}s)")
        active = drills.wait_for("ControllerInMaintenance active in Alertmanager", lambda: [
            a for a in get(node, "monitoring_alertmanager_port", "/api/v2/alerts",
                           filter='alertname="ControllerInMaintenance"')
            if a["labels"].get("node") == node], timeout=60, interval=POLL)[0]
        assert active
        # a few evaluations out: whatever fires on the node is inhibited or excluded
        time.sleep(bounds("MysqlDown")[1])
        assert not notified(t0, node), notified(t0, node)
    finally:
        maintenance("back")
    drills.wait_for(f"ControllerInMaintenance ({node}) resolved in Prometheus",
                    lambda: not prometheus_firing("ControllerInMaintenance", node), timeout=fires, interval=POLL)
    assert not received("ControllerInMaintenance", node, "firing", t0)  # severity info: no receiver
    record("ControllerInMaintenance", f"{node} in maintenance", {"node": node, "firing_s": firing_s, "firing_bound_s": fires})


@pytest.mark.long
def test_a_certificate_near_expiry_fires(receiving, healthy):
    """One node's installed VIP certificate replaced by one of the lab's CA expiring in 7 days
    (the collector reads the file; HAProxy, not reloaded, serves the real one), then put back
    byte for byte. The PEM holds a key: it stays in this process, never in a log."""
    from lab.keys import node_certificate

    node = "node03"
    days = sitemodel.data("monitoring_certificate_days")
    assert days > 7
    path = sitemodel.data("haproxy_tls_pem_path")
    original = lab.exec_(node, ["cat", path], timeout=30)
    readable = original.returncode == 0 and "BEGIN CERTIFICATE" in original.stdout  # never in an assert's repr
    assert readable, "cannot read the installed certificate"
    short = node_certificate(node, sitemodel.node_address(node), CA_FILE, CA_KEY, days=7)

    def put(pem: str):
        r = lab.exec_(node, ["sh", "-c", f"cat > {path}"], input=pem, timeout=30)  # keeps its mode and owner
        assert r.returncode == 0, r.stderr

    try:
        drill("CertificateExpiresSoon", node, lambda: put(short), lambda: put(original.stdout), f"a 7-day certificate on {node}")
    finally:
        put(original.stdout)


def backed_up(node: str) -> None:
    """A good backup of each kind on the backup node `node`, so BackupTooOld is not firing: on a
    rebuilt lab none was taken yet (the report warns; the alert fires once its `for:` passed):
    one first, a full before an incremental."""
    warned = any(w.startswith(f"{node}: backup:") for w in drills.verify_report().get("warnings") or [])
    stale = {a["labels"].get("kind") for a in prometheus_firing("BackupTooOld", node)}
    for kind in ("full", "incremental"):
        if warned or kind in stale:
            run = drills.pyinfra("-y", "inventories/lab.py", "backup.py", "--data", f"kind={kind}", timeout=900)
            assert run.returncode == 0, drills.run_excerpt(run.stdout)
    if warned or stale:
        drills.wait_for("BackupTooOld to stop firing after a backup", lambda: not prometheus_firing("BackupTooOld", node),
                        timeout=bounds("BackupTooOld")[2], interval=POLL)


@pytest.mark.long
def test_a_backup_too_old_fires(receiving, healthy):
    """The backup node's manifests moved aside (the collector finds no good backup), the backup
    timers stopped meanwhile; moved back."""
    from config.paths import BACKUP_TIMERS

    site = sitemodel.site()
    node = backup_config.node(NODES, site.data)
    directory = site.data["backup_dir"]
    aside = f"{directory}.drill-aside"
    backed_up(node)

    def sh(command: str):
        r = lab.exec_(node, ["sh", "-c", command], timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr

    def move_aside():
        sh(f"systemctl stop {' '.join(BACKUP_TIMERS)}; mkdir -p {aside} && "
           f"for f in {directory}/*.manifest.json; do [ -e \"$f\" ] && mv \"$f\" {aside}/; done; true")

    def move_back():
        sh(f"for f in {aside}/*.manifest.json; do [ -e \"$f\" ] && mv \"$f\" {directory}/; done; rmdir {aside} 2>/dev/null; "
           f"systemctl start {' '.join(BACKUP_TIMERS)}")

    try:
        drill("BackupTooOld", node, move_aside, move_back, "the backup node's manifests moved aside")
    finally:
        move_back()


@pytest.mark.long
def test_a_power_cut_fires_node_down(receiving, healthy):
    node = "node03"
    try:
        drill("NodeDown", node, lambda: drills.power_cut(node), lambda: drills.power_on(node), f"{node} powered off")
    finally:
        if node not in drills.running():
            drills.power_on(node)


QUIET = 600  # seconds: the ten minutes of a healthy lab


def firing_anywhere() -> list[str]:
    """`alertname (node)` of every alert firing on any Prometheus that answers, the info ones
    (ControllerInMaintenance) aside."""
    out = set()
    for n in drills.running():
        try:
            answer = get(n, "monitoring_prometheus_port", "/api/v1/alerts")
        except OSError:
            continue
        out |= {f"{a['labels']['alertname']} ({a['labels'].get('node', '-')})" for a in answer["data"]["alerts"]
                if a["state"] == "firing" and a["labels"].get("severity") != "info"}
    return sorted(out)


def fired_since(since: float) -> list[str]:
    return sorted({f"{e['alertname']} ({e['labels'].get('node', '-')})" for e in
                   alert_receiver.events(alert_receiver.records(records_file(), since)) if e["status"] == "firing"})


@pytest.mark.long
def test_a_quiet_lab_and_a_rolling_restart_fire_nothing(receiving, healthy):
    """Ten minutes of a healthy lab: no alert fires, nothing reaches the receiver. Then a rolling
    restart of every MariaDB and RabbitMQ (a config change, one node at a time) and its revert,
    each followed by the longest time a restart's alerts would take to reach the receiver: still
    nothing (every `for:` outlasts one node's restart). An alert an earlier drill resolved may
    still be firing on a Prometheus that has not evaluated since (each evaluates on its own):
    first, nothing firing anywhere, within the longest resolve bound."""
    backed_up(backup_config.node(NODES, sitemodel.site().data))  # a rebuilt lab has none: BackupTooOld would fire
    drills.wait_for("no alert firing on any Prometheus", lambda: not firing_anywhere(),
                    timeout=max(bounds(a)[2] for a in ("BackupTooOld", "CertificateExpiresSoon", "MysqlDown")),
                    interval=POLL)
    t0 = time.time()
    while time.time() - t0 < QUIET:
        assert not firing_anywhere(), firing_anywhere()
        assert not fired_since(t0), fired_since(t0)
        time.sleep(30)
    log(f"quiet: {QUIET} s of a healthy lab, no alert firing, nothing received")
    wait = max(bounds(a)[1] for a in ("MysqlDown", "GaleraClusterSizeBelowInventory", "RabbitmqNodeDown"))
    bump = {"mariadb_max_connections": sitemodel.data("mariadb_max_connections") + 1,
            "rabbitmq_memory_high_watermark": "257MiB"}
    restarts = []
    try:
        for data in (bump, {}):
            t1 = time.time()
            run = drills.deploy(data=data)
            assert run.returncode == 0, drills.run_excerpt(run.stdout)
            assert "restart mariadb" in run.stdout and "restart rabbitmq-server" in run.stdout, drills.run_excerpt(run.stdout)
            time.sleep(max(wait - (time.time() - t1), 0))
            assert not fired_since(t0), fired_since(t0)
            restarts.append(round(time.time() - t1))
            log(f"rolling restart ({'changed' if data else 'back'}) in {restarts[-1]} s: nothing received")
    finally:
        drills.deploy()
    record("quiet", "ten healthy minutes, then a rolling restart of every MariaDB and RabbitMQ and its revert",
           {"quiet_s": QUIET, "rolling_restarts_s": restarts, "received": len(fired_since(t0)), "firing": len(firing_anywhere())})
