"""Monitoring's site values resolved (docs/monitoring.md): the alert rules as data, the
Prometheus and Alertmanager configs of each controller, and the metric names the rules may use.

Pure. The rules (files/templates/monitoring/alerts.yml.j2) are rendered from ALERTS with the
site's sizes and thresholds; tests/unit/test_monitoring.py checks them with `promtool check
rules` and makes each fire with `promtool test rules` (tests/unit/monitoring/<Alert>.yml).
With monitoring_enabled, config/files.py installs every file of this module (component
"monitoring", render_file()) and operations/monitoring.py the packages, the exporters' MariaDB
account and the units; the firewall rows are config/firewall.py's.

Every series carries the label `node` (the controller scraped, set by the scrape config), so
one alert names one controller and Alertmanager's inhibition of a controller in maintenance
matches it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from config import backup
from config.firewall import TABLE as FIREWALL_TABLE
from config.paths import MAINTENANCE_FILE, METRICS_UNIT, MONITORING_UNITS, RABBITMQ_MONITOR_CURLRC
from config.site import Site
from config.templates import MANAGED, env
from health.metrics import METRICS as TEXTFILE_METRICS, VRRP_STATES

# Where the files are installed (Debian's packages read these paths).
RULES_FILE = "/etc/prometheus/openstack-ha-alerts.yml"
PROMETHEUS_YML = "/etc/prometheus/prometheus.yml"
ALERTMANAGER_YML = "/etc/prometheus/alertmanager.yml"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"  # node-exporter's textfile collector (Debian's default)
TEXTFILE = f"{TEXTFILE_DIR}/openstack_ha.prom"  # the collector's file (MonitoringTextfileStale reads its mtime)
# The health report's verdict per controller (health.metrics.health_textfile), written by
# operations/verify.py at each deploy or verify run: a snapshot, not watched for staleness.
HEALTH_TEXTFILE = f"{TEXTFILE_DIR}/openstack_ha_health.prom"
# Each Debian unit's command line: ARGS (and the exporter's DATA_SOURCE_NAME) in /etc/default/<unit>.
UNITS = MONITORING_UNITS
DEFAULT_FILES = {unit: f"/etc/default/{unit}" for unit in UNITS}
# The project's collector: a script run by a timer as root (it signals keepalived, reads nft).
COLLECTOR = "/usr/local/sbin/openstack-ha-metrics"
COLLECTOR_UNIT = METRICS_UNIT
# mysqld_exporter runs as Debian's `prometheus` system user: MariaDB knows it as
# 'prometheus'@'localhost' through the unix_socket plugin (no password exists), with what
# mysqld_exporter 0.14's default collectors read: PROCESS, REPLICATION CLIENT, SELECT on performance_schema.
EXPORTER_ACCOUNT = "prometheus"
MYSQL_SOCKET = "/run/mysqld/mysqld.sock"
TEMPLATES = {"rules": "monitoring/alerts.yml.j2", "prometheus": "monitoring/prometheus.yml.j2",
             "alertmanager": "monitoring/alertmanager.yml.j2"}

# The scrape jobs: (job, port key, metrics path).
JOBS = (
    ("node", "monitoring_node_exporter_port", "/metrics"),
    ("mysqld", "monitoring_mysqld_exporter_port", "/metrics"),
    ("haproxy", "monitoring_haproxy_exporter_port", "/metrics"),
    ("rabbitmq", "monitoring_rabbitmq_exporter_port", "/metrics"),
    ("prometheus", "monitoring_prometheus_port", "/metrics"),
    ("alertmanager", "monitoring_alertmanager_port", "/metrics"),
)

# The metric names each exporter of Debian 12 produces that a rule may use. A rule naming
# anything else is refused by test_monitoring (a name no exporter produces never fires: the
# widely copied haproxy_up / haproxy_backend_up / haproxy_server_up). The lab's guard (next
# session) checks each against a live scrape.
KNOWN_METRICS = {
    # Prometheus itself: one `up` per target.
    "prometheus 2.42": ("up",),
    # prometheus-node-exporter 1.5, textfile collector.
    "node-exporter 1.5": ("node_textfile_mtime_seconds", "node_textfile_scrape_error"),
    # prometheus-mysqld-exporter 0.14: SHOW GLOBAL STATUS as mysql_global_status_<lowercase
    # name> (wsrep_cluster_status "Primary" is read as 1, non-Primary/Disconnected as 0).
    "mysqld_exporter 0.14": ("mysql_up", "mysql_global_status_wsrep_cluster_size", "mysql_global_status_wsrep_cluster_status",
                             "mysql_global_status_wsrep_local_state", "mysql_global_status_wsrep_ready",
                             "mysql_global_status_wsrep_flow_control_paused_ns"),
    # HAProxy 2.6's built-in exporter (addons/promex, `http-request use-service
    # prometheus-exporter`): haproxy_backend_<field>, active_servers = "act", backup_servers =
    # "bck" (UP servers with a non-zero weight). A `listen` section is a frontend and a backend.
    "haproxy 2.6 promex": ("haproxy_backend_active_servers", "haproxy_backend_backup_servers", "haproxy_server_status"),
    # RabbitMQ 3.10's rabbitmq_prometheus plugin (/metrics, aggregated) with the Erlang VM's
    # distribution collector (erlang_vm_dist_node_state: 1 pending, 2 up_pending, 3 up).
    "rabbitmq_prometheus 3.10": ("rabbitmq_identity_info", "rabbitmq_alarms_memory_used_watermark",
                                 "rabbitmq_alarms_free_disk_space_watermark", "erlang_vm_dist_node_state"),
    # No memcached exporter in Debian 12: openstack_ha_memcached_up (textfile) instead.
    # The project's textfile collector (health/metrics.py).
    "openstack-ha textfile": tuple(TEXTFILE_METRICS),
}

# PromQL words that are not metric names.
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
                "inf", "nan"}


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str  # Prometheus duration, e.g. "2m"; "0s": at once
    severity: str  # "critical", "warning" or "info" (info is routed to no receiver)
    summary: str  # one line, may use {{ $labels.x }} and {{ $value }}
    runbook: str  # one line: what to do


def _seconds(n: int) -> str:
    return f"{n}s"


def backup_period_seconds(calendar: str) -> int | None:
    """The period of a systemd OnCalendar expression of the usual shapes (a shorthand, or a
    time whose hour or minute is `*` or `*/N` every day); None for the others."""
    shorthand = {"minutely": 60, "hourly": 3600, "daily": 86400, "weekly": 7 * 86400, "monthly": 31 * 86400,
                 "quarterly": 92 * 86400, "semiannually": 183 * 86400, "yearly": 366 * 86400, "annually": 366 * 86400}
    if calendar in shorthand:
        return shorthand[calendar]
    m = re.fullmatch(r"(\*-\*-\* )?(?P<h>\*|[0-9]{1,2}|\*/[0-9]+|[0-9]{1,2}/[0-9]+):(?P<m>\*|[0-9]{1,2}|\*/[0-9]+)(:[0-9]{1,2})?( UTC)?", calendar)
    if not m:
        return None
    h, mi = m["h"], m["m"]
    if h == "*":
        return 60 if mi == "*" else int(mi[2:]) * 60 if mi.startswith("*/") else 3600
    if "/" in h:
        return int(h.split("/")[1]) * 3600
    return 86400 if not ("*" in mi) else None


def backup_max_age(site: Site) -> dict[str, int]:
    """{kind: seconds} the newest backup of a kind may be old: monitoring_backup_schedules
    periods of its calendar (a day when the shape is not one backup_period_seconds reads)."""
    d = site.data
    n = d["monitoring_backup_schedules"]
    out = {"full": n * (backup_period_seconds(d["backup_full_calendar"]) or 86400)}
    if d["backup_incremental_calendar"]:
        out["incremental"] = n * (backup_period_seconds(d["backup_incremental_calendar"]) or 86400)
    return out


def api_proxies(site: Site) -> list[str]:
    """The HAProxy listeners whose backends must keep a server up: the database and each API."""
    return [svc.name for svc in site.services]


NOT_IN_MAINTENANCE = "unless on (node) (openstack_ha_maintenance == 1)"


def alerts(site: Site) -> list[Alert]:
    """Every alert rule of the site, in the file's order."""
    d = site.data
    n = len(site.controllers)
    proxies = "|".join(api_proxies(site))
    fc = d["monitoring_flow_control_percent"] / 100
    out = [
        Alert("VipHeldByNoController", "sum by (vip) (openstack_ha_vip_held) == 0", "30s", "critical",
              "The {{ $labels.vip }} VIP is held by no controller",
              "Every API is unreachable: check keepalived on each controller (make verify; journalctl -u keepalived)."),
        Alert("VipHeldByManyControllers", "sum by (vip) (openstack_ha_vip_held) > 1", "30s", "critical",
              "The {{ $labels.vip }} VIP is held by {{ $value }} controllers",
              "Split brain: find the VRRP traffic lost between controllers (firewall, switch); restart keepalived on the wrong holder."),
        Alert("KeepalivedFault", f'openstack_ha_keepalived_vrrp_state{{state="FAULT"}} == 1 {NOT_IN_MAINTENANCE}', "1m", "critical",
              "keepalived {{ $labels.vrrp_instance }} on {{ $labels.node }} is in FAULT",
              "The node cannot take the VIP: its HAProxy is down or check_alive fails; fix HAProxy, then watch keepalived rise."),
        Alert("KeepalivedDown", f"openstack_ha_keepalived_active == 0 {NOT_IN_MAINTENANCE}", "1m", "warning",
              "keepalived is not running on {{ $labels.node }}",
              "systemctl status keepalived on the node; deploy to restore it."),
        Alert("HaproxyBackendNoServerUp",
              f'(haproxy_backend_active_servers{{proxy=~"{proxies}"}} + haproxy_backend_backup_servers{{proxy=~"{proxies}"}}) == 0',
              "1m", "critical",
              "HAProxy on {{ $labels.node }} has no server up for {{ $labels.proxy }}",
              "Every backend of the listener is down: check the service on every controller (make verify shows which)."),
        Alert("GaleraClusterSizeBelowInventory", f"mysql_global_status_wsrep_cluster_size < {n}", "1m", "critical",
              f"Galera on {{{{ $labels.node }}}} sees {{{{ $value }}}} of the {n} nodes",
              "A database node left the cluster: start mariadb on it, or see docs/operations.md (Partial runs)."),
        Alert("GaleraNotPrimary", "mysql_global_status_wsrep_cluster_status != 1", "30s", "critical",
              "Galera on {{ $labels.node }} is not in the Primary component",
              "The node lost quorum and refuses writes: restore the network to the others; bootstrap only as "
              "docs/operations.md (Recovery from a full outage) says."),
        Alert("GaleraNotSynced",
              "mysql_global_status_wsrep_local_state != 4 and mysql_global_status_wsrep_local_state != 2", "5m", "warning",
              "Galera on {{ $labels.node }} is in state {{ $value }}, not Synced",
              "The node is joining or stuck (state 2, donor or desynced for a backup, is excepted): read its mariadb journal."),
        Alert("MysqlDown", "mysql_up == 0", "1m", "critical",
              "MariaDB on {{ $labels.node }} does not answer its exporter",
              "systemctl status mariadb on the node; a stopped member re-joins with systemctl start mariadb."),
        Alert("GaleraFlowControlPaused",
              f"rate(mysql_global_status_wsrep_flow_control_paused_ns[5m]) / 1e9 > {fc:g}", "5m", "warning",
              "Galera on {{ $labels.node }} was paused by flow control {{ $value | humanizePercentage }} of the time",
              "A slow node holds every write back: find it (wsrep_local_recv_queue), its disk or CPU."),
        Alert("RabbitmqNodeDown", f'up{{job="rabbitmq"}} == 0 {NOT_IN_MAINTENANCE}', "1m", "critical",
              "RabbitMQ on {{ $labels.node }} does not answer",
              "systemctl status rabbitmq-server on the node; rabbitmqctl cluster_status on another."),
        Alert("RabbitmqPartition", "openstack_ha_rabbitmq_partitions > 0", "30s", "critical",
              "RabbitMQ on {{ $labels.node }} reports a network partition",
              "pause_minority paused the minority: restore the network; rabbitmqctl cluster_status shows the partitions."),
        Alert("RabbitmqMemoryAlarm", "rabbitmq_alarms_memory_used_watermark == 1", "1m", "critical",
              "RabbitMQ on {{ $labels.node }} raised its memory alarm: publishers are blocked",
              "Find the queues that grow (rabbitmqctl list_queues name messages); check rabbitmq_memory_high_watermark."),
        Alert("RabbitmqDiskAlarm", "rabbitmq_alarms_free_disk_space_watermark == 1", "1m", "critical",
              "RabbitMQ on {{ $labels.node }} raised its disk alarm: publishers are blocked",
              "Free space under /var/lib/rabbitmq on the node."),
        Alert("RabbitmqDistributionLinksMissing",
              "count(erlang_vm_dist_node_state == 3) < count(rabbitmq_identity_info) * (count(rabbitmq_identity_info) - 1)",
              "2m", "warning",
              "RabbitMQ has {{ $value }} established distribution links, fewer than n(n-1)",
              "A node does not talk to another: rabbitmqctl cluster_status on each; check the Erlang distribution port."),
        Alert("MemcachedDown", "openstack_ha_memcached_up == 0", "1m", "warning",
              "memcached on {{ $labels.node }} is down",
              "systemctl status memcached on the node; the services' caches miss meanwhile."),
        Alert("ControllerInMaintenanceTooLong", "openstack_ha_maintenance == 1", f"{d['monitoring_maintenance_hours']}h", "warning",
              f"{{{{ $labels.node }}}} has been in maintenance for more than {d['monitoring_maintenance_hours']} hours",
              "Bring it back (make maintenance-back NODE=...) or say why: the cluster runs with one node less."),
        # At once and to no receiver: Alertmanager inhibits the node's other alerts with it.
        Alert("ControllerInMaintenance", "openstack_ha_maintenance == 1", "0s", "info",
              "{{ $labels.node }} is in maintenance",
              "Expected during maintenance: its own alerts are inhibited until make maintenance-back."),
        Alert("NodeDown", 'up{job="node"} == 0', "1m", "critical",
              "{{ $labels.node }} does not answer node-exporter",
              "The controller is down or cut off: check its power and network; the others carry the load."),
        Alert("MonitoringTextfileStale",
              f'time() - node_textfile_mtime_seconds{{file="{TEXTFILE.rsplit("/", 1)[1]}"}} > {20 * d["monitoring_scrape_interval"]}',
              "5m", "warning",
              "The project's collector on {{ $labels.node }} stopped writing {{ $labels.file }}",
              "The VIP, keepalived, maintenance, firewall, certificate and backup alerts are blind: check the collector's timer."),
    ]
    if d["firewall"]:
        out.append(Alert("FirewallDrifted", "openstack_ha_firewall_drifted == 1", "5m", "warning",
                         "The firewall table on {{ $labels.node }} is not the one the deploy wrote",
                         "Flushed, changed by hand or not loaded: run the deploy (it reloads the table)."))
    if d["haproxy_tls"]:
        days = d["monitoring_certificate_days"]
        out.append(Alert("CertificateExpiresSoon",
                         f"openstack_ha_tls_certificate_expiry_timestamp_seconds - time() < {days} * 86400", "10m", "warning",
                         f"The VIP's certificate on {{{{ $labels.node }}}} expires within {days} days",
                         "Renew it: a new haproxy_tls_pem, then deploy (a reload)."))
    if d["backup_enabled"]:
        ages = backup_max_age(site)
        expr = " or ".join(f'time() - openstack_ha_backup_last_success_timestamp_seconds{{kind="{k}"}} > {s}'
                           for k, s in ages.items())
        out.append(Alert("BackupTooOld", expr, "10m", "warning",
                         "The newest {{ $labels.kind }} backup on {{ $labels.node }} is older than "
                         f"{d['monitoring_backup_schedules']} schedules",
                         "Backups stopped: read the backup unit's journal on backup_node and its manifests."))
    return out


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression uses: identifiers outside label matchers and
    strings that are not a function call, a keyword or the `by`/`on` label lists."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    names = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)\b(\s*\()?", text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS or re.fullmatch(r"[0-9.e]+", word):
            continue
        names.add(word)
    return names


def rule_metrics(site: Site) -> dict[str, set[str]]:
    """{alert: the metric names its expression uses}: what the lab's guard must find in a live
    scrape of the controllers (no dead rule)."""
    return {a.name: metric_names(a.expr) for a in alerts(site)}


def known_metrics() -> set[str]:
    return {name for names in KNOWN_METRICS.values() for name in names}


def targets(site: Site, key: str) -> list[tuple[str, str]]:
    """(controller, address:port) of every controller for a port key."""
    return [(c.name, f"{c.address}:{site[key]}") for c in site.controllers]


def prometheus_values(site: Site, name: str) -> dict:
    d = site.data
    return {
        "scrape_interval": _seconds(d["monitoring_scrape_interval"]),
        "evaluation_interval": _seconds(d["monitoring_evaluation_interval"]),
        "site": d["galera_cluster_name"],
        "rules_file": RULES_FILE,
        "alertmanagers": [t for _, t in targets(site, "monitoring_alertmanager_port")],
        "jobs": [(job, path, targets(site, key)) for job, key, path in JOBS],
        "listen": f"{site.controller(name).address}:{d['monitoring_prometheus_port']}",
    }


def alertmanager_values(site: Site, name: str) -> dict:
    d = site.data
    me = site.controller(name).address
    return {
        "webhooks": list(d["monitoring_webhooks"]),
        "listen": f"{me}:{d['monitoring_alertmanager_port']}",
        "cluster_listen": f"{me}:{d['monitoring_alertmanager_cluster_port']}",
        "peers": [f"{c.address}:{d['monitoring_alertmanager_cluster_port']}" for c in site.peers(name)],
        "group_wait": d["monitoring_group_wait"],
        "group_interval": d["monitoring_group_interval"],
    }


def _render(template: str, **values) -> str:
    return env.get_template(template).render(managed=MANAGED, q=yaml_quoted, **values)


def yaml_quoted(value: str) -> str:
    """A YAML single-quoted scalar (PromQL's double quotes stay readable); one line only."""
    if "\n" in value or "\r" in value:
        raise ValueError(f"{value!r}: one line only")
    return "'" + value.replace("'", "''") + "'"


def render_rules(site: Site) -> str:
    return _render(TEMPLATES["rules"], alerts=alerts(site), site_name=site["galera_cluster_name"])


def render_prometheus(site: Site, name: str) -> str:
    return _render(TEMPLATES["prometheus"], p=prometheus_values(site, name))


def render_alertmanager(site: Site, name: str) -> str:
    return _render(TEMPLATES["alertmanager"], a=alertmanager_values(site, name))


def alertmanager_args(site: Site, name: str) -> str:
    """The command line of this controller's Alertmanager (Debian's /etc/default/
    prometheus-alertmanager ARGS): its addresses and its cluster peers, which are flags, not
    alertmanager.yml keys."""
    a = alertmanager_values(site, name)
    return " ".join([f"--web.listen-address={a['listen']}", f"--cluster.listen-address={a['cluster_listen']}",
                     *(f"--cluster.peer={p}" for p in a["peers"])])


def prometheus_args(site: Site, name: str) -> str:
    """The command line of this controller's Prometheus (Debian's /etc/default/prometheus ARGS)."""
    return f"--web.listen-address={prometheus_values(site, name)['listen']}"


def node_exporter_args(site: Site, name: str) -> str:
    """node-exporter on the node address, reading the collector's textfile directory."""
    me = site.controller(name).address
    return f"--web.listen-address={me}:{site['monitoring_node_exporter_port']} --collector.textfile.directory={TEXTFILE_DIR}"


def mysqld_exporter_args(site: Site, name: str) -> str:
    return f"--web.listen-address={site.controller(name).address}:{site['monitoring_mysqld_exporter_port']}"


def data_source_name() -> str:
    """mysqld_exporter's DSN: its unix_socket account on the local socket, no password."""
    return f"{EXPORTER_ACCOUNT}@unix({MYSQL_SOCKET})/"


def account_sql() -> list[str]:
    """The exporter's MariaDB account (created on one node; Galera replicates it)."""
    who = f"'{EXPORTER_ACCOUNT}'@'localhost'"
    return [f"CREATE USER IF NOT EXISTS {who} IDENTIFIED VIA unix_socket",
            f"GRANT PROCESS, REPLICATION CLIENT ON *.* TO {who}",
            f"GRANT SELECT ON performance_schema.* TO {who}"]


def collector_values(site: Site, name: str, firewall_rules: int | None) -> dict:
    """What the collector script on controller `name` reads (health/metrics.py's series that
    a host can answer alone): the VIPs, keepalived, the maintenance marker, memcached, RabbitMQ's
    partitions, the firewall's rule count (firewall_rules: config.files.expected_rules; None
    without the firewall), the certificate's expiry (haproxy_tls) and, on the backup node of a
    site that takes backups, the newest good backup of each kind (its manifests)."""
    d = site.data
    vips = [("internal", d["vip"])] + ([("external", d["external_vip"])] if d["external_vip"] else [])
    return {
        "output": TEXTFILE,
        "metrics": {k: list(v) for k, v in TEXTFILE_METRICS.items()},
        "vrrp_states": list(VRRP_STATES),
        "vips": vips,
        "maintenance_file": MAINTENANCE_FILE,
        "keepalived_pid": "/run/keepalived.pid",
        "keepalived_json": "/tmp/keepalived.json",  # keepalived's JSON dump (the report's fact reads its text dump)
        "memcached": [site.controller(name).address, d["memcached_port"]],
        "rabbitmq": [site.controller(name).address, d["rabbitmq_management_port"], RABBITMQ_MONITOR_CURLRC],
        "firewall": [FIREWALL_TABLE, firewall_rules] if d["firewall"] else None,
        "tls_pem": d["haproxy_tls_pem_path"] if d["haproxy_tls"] else None,
        "backup": ([d["backup_dir"], backup.MANIFEST_SUFFIX, ["full", "incremental"]]
                   if d["backup_enabled"] and name == backup.node([c.name for c in site.controllers], d) else None),
    }


def render_file(template: str, site: Site, name: str, firewall_rules: int | None = None) -> str:
    """A file of component "monitoring" (config/files.py FILES) for controller `name`."""
    unit = {"monitoring/node-exporter.default.j2": ("prometheus-node-exporter", node_exporter_args),
            "monitoring/mysqld-exporter.default.j2": ("prometheus-mysqld-exporter", mysqld_exporter_args),
            "monitoring/prometheus.default.j2": ("prometheus", prometheus_args),
            "monitoring/alertmanager.default.j2": ("prometheus-alertmanager", alertmanager_args)}
    if template == TEMPLATES["rules"]:
        return render_rules(site)
    if template == TEMPLATES["prometheus"]:
        return render_prometheus(site, name)
    if template == TEMPLATES["alertmanager"]:
        return render_alertmanager(site, name)
    if template in unit:
        what, args = unit[template]
        return _render(template, unit=what, args=args(site, name), dsn=data_source_name())
    if template.startswith("monitoring/openstack-ha-metrics"):
        return _render(template, c=repr(collector_values(site, name, firewall_rules)), script=COLLECTOR,
                       unit=COLLECTOR_UNIT, interval=site["monitoring_scrape_interval"])
    raise KeyError(f"{template}: not a monitoring template")
