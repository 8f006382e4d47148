"""The project's own metrics for node-exporter's textfile collector: what no Debian exporter
gives (whether this controller holds each VIP, keepalived's VRRP state per instance, the
maintenance marker, memcached (Debian 12 packages no memcached exporter), firewall drift, the
certificate's expiry, the newest backup, and the health report's verdict per check) as
Prometheus text, from the facts and the health report the project already has. Pure
(docs/monitoring.md).

    node_textfile(site, name, facts, report, now, manifests=None) -> str
    health_textfile(report, name, now, cluster=True) -> str

Two files, two writers, because they are made in two places:

- node_textfile is what the collector on each controller writes every scrape interval to
  TEXTFILE_DIR/openstack_ha.prom (files/templates/monitoring/openstack-ha-metrics.py.j2, a copy
  of render(): the hosts have no project code; test_monitoring checks the two agree).
  `facts` is the controller's facts as health/checks.py reads them, `report` the health Report
  of a run that collected it (its firewall row), `manifests` the backup manifests of
  backup_node (facts.backup_manifest.Manifest, a ManifestError counting for nothing; None on
  the other controllers: no backup series). A fact that could not be read gives no series for
  it (the alert on that series then stays silent; MonitoringTextfileStale fires when the
  collector stops).
- health_textfile is the health report's verdict for one controller, which needs every
  controller's facts: the report is made on the deploying machine (operations/verify.py, at
  the end of every deploy and verify run), which writes it to
  TEXTFILE_DIR/openstack_ha_health.prom on each controller (a temporary file renamed). It is a
  snapshot of that run, not a live series: `openstack_ha_health_report_timestamp_seconds`
  says when it was made, and no alert reads it (every fault it checks has a live alert of its
  own; one on a snapshot would keep firing after the heal until the next run).

node-exporter serves both files with its own series, and the scrape adds the label `node`.
No label carries a check's detail: only check names (fixed words and listener names) and
statuses.
"""

from __future__ import annotations

from datetime import datetime

from config.tls import fact_date
from facts.backup_manifest import Manifest
from health.report import FAIL, INFO, OK, WARN, Report, problem

PREFIX = "openstack_ha_"
VRRP_STATES = ("INIT", "BACKUP", "MASTER", "FAULT", "STOP")
STATUSES = (OK, FAIL, WARN, INFO)
_WORST = {FAIL: 3, WARN: 2, OK: 1, INFO: 0}

# name: (type, help). The rules may use these (config/monitoring.py KNOWN_METRICS).
METRICS = {
    PREFIX + "collector_timestamp_seconds": ("gauge", "When the collector wrote this file (Unix time)."),
    PREFIX + "vip_held": ("gauge", "1 when this controller holds the VIP (vip: internal or external)."),
    PREFIX + "keepalived_active": ("gauge", "1 when keepalived's unit is active."),
    PREFIX + "keepalived_vrrp_state": ("gauge", "1 for the VRRP state each keepalived instance reports, 0 for the others."),
    PREFIX + "maintenance": ("gauge", "1 when the controller's maintenance marker says it is out."),
    PREFIX + "health_check": ("gauge", "1 for the status of each health report check of this controller, 0 for the others "
                                        "(cluster checks: `cluster <check>`, FAIL when it names this controller)."),
    PREFIX + "health_ok": ("gauge", "1 when no health check of this controller failed (nor a cluster check naming it)."),
    PREFIX + "health_report_timestamp_seconds": ("gauge", "When the health report of these health series was made (Unix time)."),
    PREFIX + "firewall_drifted": ("gauge", "1 when the project's nftables table is not the one the deploy wrote."),
    PREFIX + "memcached_up": ("gauge", "1 when memcached answers `stats` on the node address."),
    PREFIX + "rabbitmq_partitions": ("gauge", "Network partitions this RabbitMQ node reports."),
    PREFIX + "tls_certificate_expiry_timestamp_seconds": ("gauge", "notAfter of the VIP's installed certificate (Unix time)."),
    PREFIX + "backup_last_success_timestamp_seconds": ("gauge", "When the newest good backup of a kind finished (Unix time; 0: none)."),
}


def escape(value: str) -> str:
    """A label value as the text format wants it: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(v: float) -> str:
    return repr(float(v)) if isinstance(v, float) and v != int(v) else str(int(v))


def samples(site, name: str, facts: dict, report: Report, now: datetime, manifests=None) -> list[tuple[str, dict, float]]:
    """(metric, labels, value) of one controller, in METRICS order."""
    out = [(PREFIX + "collector_timestamp_seconds", {}, now.timestamp())]
    for key, vip in (("vip", "internal"), ("external_vip", "external")):
        if key == "external_vip" and not site["external_vip"]:
            continue
        if not problem(facts, key):
            out.append((PREFIX + "vip_held", {"vip": vip, "address": site[key]}, int(bool(facts[key].get("holds_vip")))))
    if not problem(facts, "keepalived"):
        k = facts["keepalived"]
        out.append((PREFIX + "keepalived_active", {}, int(k.get("active") == "active")))
        states = k.get("vrrp_states") or ({"vrrp": k["vrrp_state"]} if k.get("vrrp_state") else {})
        for instance, state in states.items():
            for s in VRRP_STATES:
                out.append((PREFIX + "keepalived_vrrp_state", {"vrrp_instance": instance, "state": s}, int(state == s)))
    if not problem(facts, "maintenance"):
        out.append((PREFIX + "maintenance", {}, int(bool(facts["maintenance"].get("out")))))
    worst = worst_status(report.hosts.get(name, []))
    if "firewall" in worst:
        out.append((PREFIX + "firewall_drifted", {}, int(worst["firewall"] == FAIL)))
    if isinstance(facts.get("memcached"), dict):  # an error is memcached not answering
        out.append((PREFIX + "memcached_up", {}, int(not problem(facts, "memcached") and bool(facts["memcached"].get("answering")))))
    if not problem(facts, "rabbitmq"):
        out.append((PREFIX + "rabbitmq_partitions", {}, len(facts["rabbitmq"].get("partitions") or [])))
    if site["haproxy_tls"] and not problem(facts, "haproxy_tls"):
        if until := fact_date(facts["haproxy_tls"].get("not_after")):
            out.append((PREFIX + "tls_certificate_expiry_timestamp_seconds", {"path": site["haproxy_tls_pem_path"]}, until.timestamp()))
    if manifests is not None:
        for kind in ("full", "incremental"):
            done = [m.finished for m in manifests if isinstance(m, Manifest) and m.kind == kind and m.ok and m.finished]
            out.append((PREFIX + "backup_last_success_timestamp_seconds", {"kind": kind}, max(done).timestamp() if done else 0))
    return out


def worst_status(checks) -> dict[str, str]:
    """{check name: the worst status of its rows} (a check may have several rows)."""
    worst: dict[str, str] = {}
    for c in checks:
        if c.name not in worst or _WORST[c.status] > _WORST[worst[c.name]]:
            worst[c.name] = c.status
    return worst


def health_samples(report: Report, name: str, now: datetime, cluster: bool = True) -> list[tuple[str, dict, float]]:
    """The report's verdict for controller `name` (none when the report has no rows for it):
    one one-hot `health_check` per check of its own (the worst row of each), one per cluster
    check as `cluster <check>` (cluster=False: a --serial run's host that reported before the
    others had collected, which judged no cluster check), `health_ok` and when the report was
    made. A cluster check is FAIL here only on the controllers it names: one fault, one failing
    series, on the node it blames; on the others it is ok (or its INFO/WARN)."""
    if name not in report.hosts:
        return []
    out = []
    statuses = list(worst_status(report.hosts[name]).items())
    if cluster:
        statuses += [(f"cluster {c.name}", OK if c.status == FAIL and name not in c.hosts else c.status) for c in report.cluster]
    for check, status in statuses:
        for s in STATUSES:
            out.append((PREFIX + "health_check", {"check": check, "status": s}, int(status == s)))
    out.append((PREFIX + "health_ok", {}, int(not report.host_failures(name, cluster=cluster))))
    out.append((PREFIX + "health_report_timestamp_seconds", {}, now.timestamp()))
    return out


def render(rows: list[tuple[str, dict, float]]) -> str:
    """Prometheus text (format 0.0.4): each metric's HELP and TYPE once, then its samples."""
    lines, said = [], set()
    for metric, labels, value in sorted(rows, key=lambda r: list(METRICS).index(r[0])):
        if metric not in said:
            kind, help_ = METRICS[metric]
            lines += [f"# HELP {metric} {help_}", f"# TYPE {metric} {kind}"]
            said.add(metric)
        inner = ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())
        lines.append(f"{metric}{{{inner}}} {_number(value)}" if inner else f"{metric} {_number(value)}")
    return "\n".join(lines) + "\n"


def node_textfile(site, name: str, facts: dict, report: Report, now: datetime, manifests=None) -> str:
    """The textfile of controller `name` (see the module's docstring)."""
    return render(samples(site, name, facts, report, now, manifests))


def health_textfile(report: Report, name: str, now: datetime, cluster: bool = True) -> str:
    """The health report's verdict of controller `name` as a textfile (see health_samples);
    an empty string when the report has no rows for it."""
    rows = health_samples(report, name, now, cluster)
    return render(rows) if rows else ""
