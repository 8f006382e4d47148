"""Monitoring on the deployed lab (issue 20; docs/monitoring.md): every controller's Prometheus
scrapes every controller's targets and each is up, the three Alertmanagers form one cluster,
every metric name an alert rule uses appears in a live scrape (no dead rule), and a healthy
lab fires no alert.

The lab inventory turns monitoring on (inventories/lab.py) and admits this machine among
monitoring_networks: the test asks Prometheus and Alertmanager on the node addresses over
HTTP, as an operator's browser would. It uses the deployed lab (`deployed`), never rebuilds it.
"""

from __future__ import annotations

import pytest

from config import backup, monitoring
from lab import drills, sitemodel
from lab.drills import log

NODES = ["node01", "node02", "node03"]
# The first scrape of a just (re)started target: a few scrape intervals after the deploy.
SETTLE = 120


get = drills.monitoring_get


def prometheus(node: str, path: str, **params):
    answer = get(node, "monitoring_prometheus_port", path, **params)
    assert answer["status"] == "success", answer
    return answer["data"]


def query(node: str, promql: str) -> list[dict]:
    return prometheus(node, "/api/v1/query", query=promql)["result"]


@pytest.fixture(scope="module")
def monitored(deployed):
    assert sitemodel.data("monitoring_enabled"), "inventories/lab.py must turn monitoring_enabled on"
    return deployed


def every_target_up(node: str):
    """{(job, node label): value of up} on one Prometheus, when every job has every controller up."""
    ups = {(r["metric"]["job"], r["metric"]["node"]): r["value"][1] for r in query(node, "up")}
    wanted = {(job, n) for job, _, _ in monitoring.JOBS for n in NODES}
    return ups if set(ups) == wanted and all(v == "1" for v in ups.values()) else False


@pytest.mark.parametrize("node", NODES)
def test_every_prometheus_scrapes_every_controller_and_every_target_is_up(monitored, node):
    ups, waited = drills.wait_for(f"every target up on {node}'s Prometheus", lambda: every_target_up(node),
                                  timeout=SETTLE, interval=2)
    log(f"{node}: {len(ups)} targets up (after {waited:.0f}s)")
    assert len(ups) == len(monitoring.JOBS) * len(NODES)


@pytest.mark.parametrize("node", NODES)
def test_the_alertmanagers_are_one_cluster(monitored, node):
    def cluster():
        status = get(node, "monitoring_alertmanager_port", "/api/v2/status")["cluster"]
        return status if status["status"] == "ready" and len(status.get("peers") or []) == len(NODES) else False

    status, _ = drills.wait_for(f"{node}'s Alertmanager to see its {len(NODES)} peers", cluster, timeout=SETTLE, interval=2)
    assert sorted(p["address"].rsplit(":", 1)[0] for p in status["peers"]) == sorted(sitemodel.node_address(n) for n in NODES)


def test_every_metric_a_rule_names_appears_in_a_live_scrape(monitored):
    """No dead rule: each name the rules read is a series Prometheus holds from the controllers
    (the offline list config/monitoring.py KNOWN_METRICS is only evidence; this is the proof)."""
    site = sitemodel.site()
    needed = monitoring.rule_metrics(site)

    def gone() -> dict:
        live = set(prometheus("node01", "/api/v1/label/__name__/values"))
        return {alert: sorted(names - live) for alert, names in needed.items() if names - live}

    try:
        drills.wait_for("every metric name of the rules in node01's Prometheus", lambda: not gone(), timeout=SETTLE, interval=5)
    except drills.DrillError:
        pass  # said below, rule by rule
    assert not gone(), f"rules whose metrics no exporter serves: {gone()}"
    # each from every controller (the textfile's from each collector; the backup age from the backup node)
    backup_node = backup.node(NODES, site.data)
    for name in sorted({n for names in needed.values() for n in names} - {"up"}):
        nodes = {r["metric"].get("node") for r in query("node01", f"count by (node) ({name})")}
        wanted = {backup_node} if name == "openstack_ha_backup_last_success_timestamp_seconds" else set(NODES)
        assert nodes == wanted, f"{name}: served by {sorted(nodes)}, not {sorted(wanted)}"


def test_a_healthy_lab_fires_no_alert(monitored):
    """After the first evaluations, no alert fires on any Prometheus (a false alarm on a healthy
    lab is a rule to mend)."""
    drills.wait_for("every target up on node01", lambda: every_target_up("node01"), timeout=SETTLE, interval=2)

    def firing():
        return {node: [(a["labels"]["alertname"], a["labels"].get("node")) for a in prometheus(node, "/api/v1/alerts")["alerts"]
                       if a["state"] == "firing"] for node in NODES}

    # An alert of the drill before (a controller just back from maintenance) resolves once the
    # collector wrote, Prometheus scraped and evaluated again: bounded; one that stays is a false alarm.
    try:
        drills.wait_for("no alert firing", lambda: not any(firing().values()), timeout=SETTLE, interval=5)
    except drills.DrillError:
        pass
    assert not any(firing().values()), firing()
