"""One source per datum: override each default key of inventories/lab.py's site in turn (a
valid, different value) and check that the rendered files still agree with each other.

AGREEMENTS is the table: (key, how file A says it, how file B says it). Each reader takes the
host's rendered files ({path: content}) and the site, and returns the value as that file
has it. With the default data and with every override, A == B on every host, and where the
key is a site key, A is the overridden value (the files follow the key, not a copy of it).
"""

from __future__ import annotations

import re

import pytest

from config.defaults import DEFAULTS
from config import monitoring
from config.files import (DBCHECK, FILES, GALERA_CNF, GALERA_SST_CNF, HAPROXY_CFG, HAPROXY_UNIT_DROPIN, KEEPALIVED_CONF,
                          RABBITMQ_MONITOR_CURLRC, RABBITMQ_UNIT_DROPIN, managed_files, wanted)
from config.preflight import check
from config.schema import SITE
from config.site import build_site
from operations.galera import account_statements
from operations.rabbitmq import definition_commands, restart_command
from unitkit import FAKE_SECRETS, lab_data, listens, parse_haproxy

MEMCACHED_CONF = "/etc/memcached.conf"
RABBITMQ_CONF = "/etc/rabbitmq/rabbitmq.conf"
CHECK_UNIT = f"/etc/systemd/system/{DBCHECK['unit']}.service"


# --- readers: one value out of one rendered file ----------------------------------------------


def line_value(path: str, pattern: str):
    """The first group of the first line of `path` matching `pattern` (the whole line)."""
    def read(files, site):
        for line in files[path].splitlines():
            if m := re.fullmatch(pattern, line.strip()):
                return m.group(1)
        raise AssertionError(f"{path}: no line matches {pattern!r}")
    return read


def nth_line_value(path: str, pattern: str, n: int):
    """The first group of the n-th line (from 0) of `path` matching `pattern`."""
    def read(files, site):
        found = [m.group(1) for line in files[path].splitlines() if (m := re.fullmatch(pattern, line.strip()))]
        assert len(found) > n, f"{path}: fewer than {n + 1} lines match {pattern!r}"
        return found[n]
    return read


def listen(name: str):
    def section(files):
        return listens(parse_haproxy(files[HAPROXY_CFG]))[name]
    return section


def server_ports(name: str):
    """The port every server line of a listener forwards to (one value, or a set if they differ)."""
    def read(files, site):
        ports = {re.match(r"\S+ [^ ]+:(\d+) ", s).group(1) for s in listen(name)(files).values("server")}
        return ports.pop() if len(ports) == 1 else ports
    return read


def check_ports(name: str):
    def read(files, site):
        ports = {re.search(r" port (\d+)", s).group(1) for s in listen(name)(files).values("server")}
        return ports.pop() if len(ports) == 1 else ports
    return read


def bind(name: str, part: int):
    """A listener's bind address (part 0) or port (part 1)."""
    return lambda files, site: listen(name)(files).values("bind")[0].rsplit(":", 1)[part]


def external_bind(name: str, part: int):
    """A public listener's bind on the external VIP (after the VIP's): address or port."""
    return lambda files, site: [b for b in listen(name)(files).values("bind")
                                if b.startswith(f"{site['external_vip']}:")][0].split()[0].rsplit(":", 1)[part]


def crt(name: str):
    """The certificate a listener's TLS bind names (`bind VIP:PORT ssl crt PATH`)."""
    return lambda files, site: listen(name)(files).values("bind")[0].split(" ssl crt ", 1)[1]


def client_string(key: str, pattern: str):
    """A value of the strings the OpenStack services are given (Site.client_strings)."""
    def read(files, site):
        values = set(re.findall(pattern, site.client_strings(FAKE_SECRETS)[key]))
        return values.pop() if len(values) == 1 else values
    return read


def installed_path(template: str):
    """Where the deploy installs a template's file (config.files FILES)."""
    def read(files, site):
        (path,) = [p for p, t in files["__templates__"].items() if t == template]
        return path
    return read


def sql_account(pattern: str):
    """An account name in the SQL the deploy runs (operations.galera.account_statements)."""
    def read(files, site):
        sql = account_statements({"error": "not read"}, site.data, [c.address for c in site.controllers],
                                 {"mariadb_admin_password": "x", "mariadb_sst_password": "y"})
        names = {m.group(1) for s in sql if (m := re.search(pattern, s))}
        return names.pop() if len(names) == 1 else names
    return read


def rabbitmqctl(pattern: str):
    """A name in the rabbitmqctl commands the deploy runs on a fresh node (definition_commands)."""
    def read(files, site):
        names = {m.group(1) for c in definition_commands({"error": "not read"}, site.data,
                                                                {"rabbitmq_password": "x", "rabbitmq_admin_password": "y",
                                                                 "rabbitmq_monitor_password": "z"}) if (m := re.search(pattern, str(c)))}
        return names.pop() if len(names) == 1 else names
    return read


def deploy_start_bound(files, site):
    """The bound of the deploy's first try of a broker's restart (operations/rabbitmq.py)."""
    return re.match(r"timeout (\d+) systemctl restart rabbitmq-server ", restart_command(site["rabbitmq_start_timeout"])).group(1)


def flag_port(path: str, flag: str):
    """The port of a `--flag=ADDRESS:PORT` in an /etc/default file's ARGS (one value, or the set)."""
    def read(files, site):
        ports = set(re.findall(rf"--{re.escape(flag)}=[0-9.]+:(\d+)\b", files[path]))
        assert ports, f"{path}: no --{flag}"
        return ports.pop() if len(ports) == 1 else ports
    return read


def scrape_port(job: str | None):
    """The port of every target of a scrape job of prometheus.yml (None: of the Alertmanagers it alerts)."""
    def read(files, site):
        text = files[monitoring.PROMETHEUS_YML]
        if job is None:
            section = text.split("alertmanagers:", 1)[1].split("scrape_configs:", 1)[0]
        else:
            section = text.split(f"  - job_name: {job}\n", 1)[1].split("  - job_name:", 1)[0]
        ports = set(re.findall(r"'[0-9.]+:(\d+)'", section))
        assert ports, f"prometheus.yml: no target of {job or 'alerting'}"
        return ports.pop() if len(ports) == 1 else ports
    return read


def frontend_port(name: str):
    """The port a haproxy.cfg `frontend` binds (the exporter's is no listener of the catalogue)."""
    def read(files, site):
        section = files[HAPROXY_CFG].split(f"\nfrontend {name}\n", 1)[1].split("\n\n", 1)[0]
        return re.search(r"bind \S+:(\d+)", section).group(1)
    return read


STATS_SOCKET = line_value(HAPROXY_CFG, r"stats socket (\S+) .*")
MYSQL_CHECK_USER = line_value(HAPROXY_CFG, r"option mysql-check user (\S+) .*")

# (key, file A, file B): key is a site key (the value both must show) or None for a constant
# of config/files.py shared by two files; ONLY_WITH rows hold when a key has a value.
AGREEMENTS = [
    ("mariadb_port", line_value(GALERA_CNF, r"port = (\d+)"), server_ports("mariadb")),
    ("mariadb_port", bind("mariadb", 1), client_string("database_connection", r":(\d+)/")),
    ("haproxy_stats_socket", STATS_SOCKET, line_value("{keepalived_check_script}", r'.*UNIX-CONNECT:([^"]+)".*')),
    ("keepalived_check_script", line_value(KEEPALIVED_CONF, r'script "([^"]+)"'), installed_path("keepalived/check_alive.sh.j2")),
    ("rabbitmq_management_port", line_value(RABBITMQ_CONF, r"management\.tcp\.port = (\d+)"), server_ports("rabbitmq_management")),
    ("rabbitmq_management_port", bind("rabbitmq_management", 1), server_ports("rabbitmq_management")),
    ("rabbitmq_port", line_value(RABBITMQ_CONF, r"listeners\.tcp\.1 = \S+:(\d+)"), client_string("transport_url", r"@[a-z0-9-]+:(\d+)")),
    ("memcached_port", line_value(MEMCACHED_CONF, r"-p (\d+)"), client_string("memcached_servers", r":(\d+)")),
    ("vip", bind("mariadb", 0), line_value(KEEPALIVED_CONF, r"(\S+)/\d+ dev \S+")),
    ("vip_interface", line_value(KEEPALIVED_CONF, r"interface (\S+)"), line_value(KEEPALIVED_CONF, r"\S+/\d+ dev (\S+)")),
    ("rabbitmq_user", client_string("transport_url", r"(?:rabbit://|,)([^:]+):"), rabbitmqctl(r"set_permissions -p \S+ (\S+) ")),
    ("rabbitmq_vhost", client_string("transport_url", r"/([^/]+)$"), rabbitmqctl(r"add_vhost (\S+)$")),
    # the account the health report logs in as is the one the deploy tags monitoring
    ("rabbitmq_monitor_user", line_value(RABBITMQ_MONITOR_CURLRC, r'user = "([^:"]+):.*"'),
     rabbitmqctl(r"set_user_tags (\S+) monitoring$")),
    # systemd bounds every start of the broker as the deploy bounds its restarts
    ("rabbitmq_start_timeout", line_value(RABBITMQ_UNIT_DROPIN, r"TimeoutStartSec=(\d+)"), deploy_start_bound),
]
# Rows that hold when the site has an external VIP (the lab's has).
WITH_EXTERNAL_VIP = [
    # the external VIP HAProxy binds is the address keepalived's second instance holds
    ("external_vip", external_bind("keystone_internal", 0), nth_line_value(KEEPALIVED_CONF, r"(\S+)/\d+ dev \S+", 1)),
    ("keepalived_external_router_id", nth_line_value(KEEPALIVED_CONF, r"vrrp_instance external_vip_(\d+) \{", 0),
     nth_line_value(KEEPALIVED_CONF, r"virtual_router_id (\d+)", 1)),
]
ONLY_WITH = {
    ("keepalived_track_haproxy_unit", True): [
        # the file HAProxy's unit writes is the file keepalived tracks
        (None, line_value(KEEPALIVED_CONF, r'file "([^"]+)"'),
         line_value(HAPROXY_UNIT_DROPIN, r"ExecStopPost=.* echo 1 > (\S+)'")),
    ],
    ("haproxy_tls", True): [
        # the certificate HAProxy reads is the one the deploy installs
        ("haproxy_tls_pem_path", crt("keystone_internal"), installed_path("haproxy/tls.pem.j2")),
    ],
    ("galera_sst_method", "mariabackup"): [
        (None, line_value(GALERA_SST_CNF, r'wsrep_sst_auth = "?([^:]+):.*'), sql_account(r"GRANT RELOAD, .* TO '([^']+)'@'localhost'")),
    ],
    ("mariadb_check_method", "httpchk"): [
        ("mariadb_check_port", check_ports("mariadb"), line_value(CHECK_UNIT, r"ExecStart=\S+ \S+ \S+ (\d+)")),
        (None, line_value(DBCHECK["sysusers"], r"u (\S+) .*"), line_value(CHECK_UNIT, r"User=(\S+)")),
    ],
    # each daemon's command line and the scrape of it (or its peers, or its timer) name one port
    ("monitoring_enabled", True): [
        ("monitoring_node_exporter_port", flag_port(monitoring.DEFAULT_FILES["prometheus-node-exporter"], "web.listen-address"),
         scrape_port("node")),
        ("monitoring_mysqld_exporter_port", flag_port(monitoring.DEFAULT_FILES["prometheus-mysqld-exporter"], "web.listen-address"),
         scrape_port("mysqld")),
        ("monitoring_prometheus_port", flag_port(monitoring.DEFAULT_FILES["prometheus"], "web.listen-address"), scrape_port("prometheus")),
        ("monitoring_alertmanager_port", flag_port(monitoring.DEFAULT_FILES["prometheus-alertmanager"], "web.listen-address"),
         scrape_port(None)),
        ("monitoring_alertmanager_port", scrape_port(None), scrape_port("alertmanager")),
        ("monitoring_alertmanager_cluster_port", flag_port(monitoring.DEFAULT_FILES["prometheus-alertmanager"], "cluster.listen-address"),
         flag_port(monitoring.DEFAULT_FILES["prometheus-alertmanager"], "cluster.peer")),
        ("monitoring_haproxy_exporter_port", frontend_port("prometheus"), scrape_port("haproxy")),
        ("monitoring_rabbitmq_exporter_port", line_value(RABBITMQ_CONF, r"prometheus\.tcp\.port = (\d+)"), scrape_port("rabbitmq")),
        # the collector writes a textfile as often as Prometheus reads it
        ("monitoring_scrape_interval", line_value(monitoring.PROMETHEUS_YML, r"scrape_interval: (\d+)s"),
         line_value(f"/etc/systemd/system/{monitoring.COLLECTOR_UNIT}.timer", r"OnUnitActiveSec=(\d+)s")),
    ],
    ("mariadb_check_method", "mysql-check"): [
        ("mariadb_check_user", MYSQL_CHECK_USER, sql_account(r"CREATE USER IF NOT EXISTS '([^']+)'@'[0-9.]+'$")),
        # mysql-check asks the server port itself: no `port` on the server lines
        ("mariadb_check_port", server_ports("mariadb"), line_value(GALERA_CNF, r"port = (\d+)")),
    ],
}

# One valid, different value per overridable key (some need a companion to pass preflight).
OVERRIDES = {
    "vip": {"vip": "10.77.0.200"},
    "vip_interface": {"vip_interface": "eth1"},
    "keepalived_virtual_router_id": {"keepalived_virtual_router_id": 76},
    "keepalived_advert_int": {"keepalived_advert_int": 2},
    "keepalived_check_interval": {"keepalived_check_interval": 3},
    "keepalived_check_fall": {"keepalived_check_fall": 3},
    "keepalived_check_rise": {"keepalived_check_rise": 5},
    "keepalived_unicast": {"keepalived_unicast": True},
    "keepalived_check_script": {"keepalived_check_script": "/usr/local/libexec/ha/check_haproxy"},
    "keepalived_track_haproxy_unit": {"keepalived_track_haproxy_unit": False},
    "keepalived_serve_check": {"keepalived_serve_check": False},
    "mariadb_max_connect_errors": {"mariadb_max_connect_errors": 1000},
    "services_wsrep_sync_wait": {"services_wsrep_sync_wait": 3},
    "keepalived_serve_listeners": {"keepalived_serve_listeners": ["keystone_internal"], "keepalived_serve_peer_timeout_ms": 200},
    "keepalived_serve_interval": {"keepalived_serve_interval": 2},
    "keepalived_serve_fall": {"keepalived_serve_fall": 3},
    "keepalived_serve_rise": {"keepalived_serve_rise": 7},
    "keepalived_serve_peer_timeout_ms": {"keepalived_serve_peer_timeout_ms": 250},
    "keepalived_serve_last_resort": {"keepalived_serve_last_resort": 20},
    "haproxy_maxconn": {"haproxy_maxconn": 8000},
    "haproxy_log_target": {"haproxy_log_target": "/dev/log"},
    "haproxy_log_facility": {"haproxy_log_facility": "local2"},
    "haproxy_stats_socket": {"haproxy_stats_socket": "/run/haproxy/stats.sock"},
    "haproxy_stats_port": {"haproxy_stats_port": 1985},
    "haproxy_stats_user": {"haproxy_stats_user": "statsman"},
    "haproxy_retries": {"haproxy_retries": 4},
    "haproxy_retry_on": {"haproxy_retry_on": ""},
    "haproxy_redispatch": {"haproxy_redispatch": -1},
    "haproxy_error_limit": {"haproxy_error_limit": 0},
    "mariadb_check_inter": {"mariadb_check_inter": 2000},
    "mariadb_check_fall": {"mariadb_check_fall": 5},
    "mariadb_check_timeout": {"mariadb_check_timeout": "10s"},
    "mariadb_connect_timeout": {"mariadb_connect_timeout": "2s"},
    "haproxy_server_keepalive": {"haproxy_server_keepalive": False},
    "haproxy_timeouts": {"haproxy_timeouts": {"connect": "5s"}},
    "haproxy_check_inter": {"haproxy_check_inter": 3000},
    "haproxy_check_rise": {"haproxy_check_rise": 3},
    "haproxy_check_fall": {"haproxy_check_fall": 4},
    "haproxy_legacy_services": {"haproxy_legacy_services": False},
    "haproxy_tls": {"haproxy_tls": False, "external_vip": None},  # TLS is required on it
    "haproxy_tls_pem_path": {"haproxy_tls_pem_path": "/etc/ssl/private/vip.pem"},
    "haproxy_tls_expiry_warn_days": {"haproxy_tls_expiry_warn_days": 45},
    "services": {"services": {"octavia_api": {"port": 9876}}},
    "galera_cluster_name": {"galera_cluster_name": "cloud2"},
    "galera_sst_method": {"galera_sst_method": "rsync"},
    "galera_gcache_size": {"galera_gcache_size": "2G"},
    "galera_suspect_timeout": {"galera_suspect_timeout": 5},
    "mariadb_port": {"mariadb_port": 3307},
    "mariadb_check_method": {"mariadb_check_method": "mysql-check", "mariadb_check_port": 3306},
    "mariadb_check_port": {"mariadb_check_port": 9201},
    "mariadb_check_user": {"mariadb_check_user": "lbcheck", "mariadb_check_method": "mysql-check", "mariadb_check_port": 3306},
    "mariadb_admin_user": {"mariadb_admin_user": "dba"},
    "mariadb_max_connections": {"mariadb_max_connections": 2048},
    "mariadb_innodb_buffer_pool_size": {"mariadb_innodb_buffer_pool_size": "128M"},
    "mariadb_innodb_flush_log_at_trx_commit": {"mariadb_innodb_flush_log_at_trx_commit": 2},
    "rabbitmq_port": {"rabbitmq_port": 5673},
    "rabbitmq_management_port": {"rabbitmq_management_port": 15673},
    "rabbitmq_partition_handling": {"rabbitmq_partition_handling": "autoheal"},
    "rabbitmq_heartbeat": {"rabbitmq_heartbeat": 17},
    "rabbitmq_start_timeout": {"rabbitmq_start_timeout": 173},
    "rabbitmq_memory_high_watermark": {"rabbitmq_memory_high_watermark": 0.5},
    "rabbitmq_queue_type": {"rabbitmq_queue_type": "mirrored"},
    "rabbitmq_user": {"rabbitmq_user": "os2"},
    "rabbitmq_admin_user": {"rabbitmq_admin_user": "mqadmin"},
    "rabbitmq_monitor_user": {"rabbitmq_monitor_user": "mqmon"},
    "rabbitmq_vhost": {"rabbitmq_vhost": "os2"},
    "memcached_port": {"memcached_port": 11212},
    "memcached_memory_mb": {"memcached_memory_mb": 128},
    "memcached_max_connections": {"memcached_max_connections": 2048},
    "sysctl": {"sysctl": {"net.ipv4.tcp_retries2": 8}},
    "internal_network": {"internal_network": "10.77.0.0/23"},
    "maintenance_drain_seconds": {"maintenance_drain_seconds": 30},
    "package_versions": {"package_versions": {"haproxy": "2.6.12-1+deb12u4"}},  # adds the apt pins file
    "firewall": {"firewall": False},
    "firewall_client_networks": {"firewall_client_networks": ["192.0.2.0/24"]},
    "admin_networks": {"admin_networks": ["192.0.2.0/24"]},
    "haproxy_tls_ciphers": {"haproxy_tls_ciphers": "ECDHE-RSA-AES128-GCM-SHA256"},
    "haproxy_tls_ciphersuites": {"haproxy_tls_ciphersuites": "TLS_AES_256_GCM_SHA384"},
    "haproxy_tls_options": {"haproxy_tls_options": "ssl-min-ver TLSv1.3 no-tls-tickets"},
    "haproxy_hsts_max_age": {"haproxy_hsts_max_age": 0},
    "external_vip": {"external_vip": "10.77.0.102"},
    "external_vip_interface": {"external_vip_interface": "eth2"},
    "external_network": {"external_network": "10.77.0.96/28"},
    "keepalived_external_router_id": {"keepalived_external_router_id": 79},
    # backups: each on (backup_enabled) and changed (the backup node's script, service and timers)
    "backup_enabled": {"backup_enabled": True},
    "backup_full_calendar": {"backup_enabled": True, "backup_full_calendar": "*-*-* 03:00:00"},
    "backup_incremental_calendar": {"backup_enabled": True, "backup_incremental_calendar": None},
    "backup_retention_days": {"backup_enabled": True, "backup_retention_days": 7},
    "backup_node": {"backup_enabled": True, "backup_node": "node02"},
    "backup_dir": {"backup_enabled": True, "backup_dir": "/srv/backups/mariadb"},
    "backup_copy_to": {"backup_enabled": True, "backup_copy_to": "backup@192.0.2.9"},
    "backup_copy_dir": {"backup_enabled": True, "backup_copy_dir": "/srv/copies"},
    "backup_compress": {"backup_enabled": True, "backup_compress": "zstd"},
    "backup_space_margin_percent": {"backup_enabled": True, "backup_space_margin_percent": 100},
    # monitoring: each on (monitoring_enabled, a SWITCHES key: the comparison's base has it too) and changed
    "monitoring_enabled": {"monitoring_enabled": True},
    "monitoring_networks": {"monitoring_enabled": True, "monitoring_networks": ["192.0.2.0/24"]},
    "monitoring_prometheus_port": {"monitoring_enabled": True, "monitoring_prometheus_port": 9091},
    "monitoring_alertmanager_port": {"monitoring_enabled": True, "monitoring_alertmanager_port": 9095},
    "monitoring_alertmanager_cluster_port": {"monitoring_enabled": True, "monitoring_alertmanager_cluster_port": 9096},
    "monitoring_node_exporter_port": {"monitoring_enabled": True, "monitoring_node_exporter_port": 9101},
    "monitoring_mysqld_exporter_port": {"monitoring_enabled": True, "monitoring_mysqld_exporter_port": 9105},
    "monitoring_haproxy_exporter_port": {"monitoring_enabled": True, "monitoring_haproxy_exporter_port": 8406},
    "monitoring_rabbitmq_exporter_port": {"monitoring_enabled": True, "monitoring_rabbitmq_exporter_port": 15693},
    "monitoring_scrape_interval": {"monitoring_enabled": True, "monitoring_scrape_interval": 30},
    "monitoring_group_wait": {"monitoring_enabled": True, "monitoring_group_wait": 10},
    "monitoring_group_interval": {"monitoring_enabled": True, "monitoring_group_interval": 60},
    "monitoring_evaluation_interval": {"monitoring_enabled": True, "monitoring_evaluation_interval": 30},
    "monitoring_certificate_days": {"monitoring_enabled": True, "monitoring_certificate_days": 14},
    "monitoring_maintenance_hours": {"monitoring_enabled": True, "monitoring_maintenance_hours": 8},
    "monitoring_backup_schedules": {"monitoring_enabled": True, "backup_enabled": True, "monitoring_backup_schedules": 3},
    "monitoring_flow_control_percent": {"monitoring_enabled": True, "monitoring_flow_control_percent": 20},
    "monitoring_webhooks": {"monitoring_enabled": True, "monitoring_webhooks": ["http://192.0.2.9:5001/alerts"]},
}

# Keys whose override reaches no rendered file (nor the client strings a deploy prints), so no two files can disagree about them; why,
# and where their use is tested instead.
NOT_IN_FILES = {
    "mariadb_admin_user": "only in the SQL the deploy runs (account_statements; test_operations)",
    "rabbitmq_queue_type": "only in rabbitmqctl commands (definition_commands; test_operations)",
    "rabbitmq_admin_user": "only in rabbitmqctl commands (definition_commands; test_operations)",
    "maintenance_drain_seconds": "only in the maintenance command's shell (test_maintenance)",
    "secrets_file": "where the secrets are read from; no file shows it (test_preflight, test_render)",
    "haproxy_tls_expiry_warn_days": "only in the health report and preflight's warning (test_config_tls)",
}
# Keys the table cannot override: required (no default) or read from the secrets file.
NOT_OVERRIDDEN = {"secrets_file": "changes where secrets come from, not what is rendered",
                  # need a certificate file per controller (host key tls_node_pem): their files on and
                  # off, and one source for their paths, are tested in test_peer_tls.py
                  "galera_tls": "needs the controllers' certificates (test_peer_tls.py)",
                  "rabbitmq_tls": "needs the controllers' certificates (test_peer_tls.py)",
                  "peer_tls_ca_file": "read only with galera_tls or rabbitmq_tls (test_peer_tls.py)",
                  # AMQP over TLS: the same certificates; on, off and one source in test_amqp_tls.py
                  **{k: "needs the controllers' certificates (test_amqp_tls.py)" for k in (
                      "rabbitmq_amqp_tls", "rabbitmq_amqp_tls_port", "rabbitmq_amqp_plain", "rabbitmq_amqp_tls_verify_peer")},
                  # no controller's file: the rehearsal hosts' files are rendered by the rehearsal only
                  "backup_rehearsal_hosts": "changes no controller's file: read by the restore rehearsal only "
                                            "(its cluster's files: test_rehearsal_plan.py)"}


def rendered(group_changes: dict):
    hosts, group = lab_data()
    group = {**group, "backup_enabled": False, "monitoring_enabled": False, **group_changes}  # the site defaults (the lab's are on)
    report = check(hosts, group, FAKE_SECRETS)
    assert not report.errors, [str(p) for p in report.errors]
    site = build_site(hosts, group)
    out = {}
    for name, _ in hosts:
        files = managed_files(site, name, FAKE_SECRETS)
        by_path = {f.path: f.content for f in files}
        by_path["{keepalived_check_script}"] = by_path.get(site["keepalived_check_script"], "")
        by_path["__client_strings__"] = site.client_strings(FAKE_SECRETS)  # printed by every deploy
        rows = [row for row in FILES if wanted(row[0], site, row[1], name, row[2].format(**site.data))]  # managed_files' order
        by_path["__templates__"] = {f.path: row[1] for f, row in zip(files, rows)}
        out[name] = by_path
    return site, out


def agreements(site):
    return (AGREEMENTS + [row for (key, value), rows in ONLY_WITH.items() if site[key] == value for row in rows]
            + (WITH_EXTERNAL_VIP if site["external_vip"] else []))


def test_every_overridable_key_is_overridden_or_said_why_not():
    overridable = {k for k, v in DEFAULTS.items()} - set(NOT_OVERRIDDEN)
    assert set(OVERRIDES) == overridable, set(OVERRIDES) ^ overridable
    for key, changes in OVERRIDES.items():
        value = changes[key]
        assert SITE[key].kind.why(value) is None, (key, value)
        assert value != DEFAULTS[key], key


@pytest.mark.parametrize("key", ["(defaults)", *OVERRIDES])
def test_rendered_files_agree_after_overriding(key):
    changes = OVERRIDES.get(key, {})
    site, hosts = rendered(changes)
    for name, files in hosts.items():
        for what, read_a, read_b in agreements(site):
            a, b = read_a(files, site), read_b(files, site)
            assert a == b, f"{key} overridden: {name}: {what}: {a!r} in one file, {b!r} in the other"
            if what is not None:
                assert a == str(site[what]), f"{name}: {what}: the files say {a!r}, the site {site[what]!r}"


# Keys that switch a feature on: an override's companion among them is in the comparison's base
# too, so that the key itself, not its feature's files appearing, is what must change a file.
SWITCHES = ("monitoring_enabled", "backup_enabled")


@pytest.mark.parametrize("key", [k for k in OVERRIDES if k not in NOT_IN_FILES])
def test_an_overridden_key_reaches_the_files(key):
    """Each key that is said to reach a file does: the override changes some rendered file."""
    _, before = rendered({k: v for k, v in OVERRIDES[key].items() if k != key and k in SWITCHES})
    _, after = rendered(OVERRIDES[key])
    assert before != after, f"{key}: overriding it changed no rendered file; list it in NOT_IN_FILES with why"


@pytest.mark.parametrize("key", [k for k in NOT_IN_FILES if k in OVERRIDES])
def test_keys_said_not_to_reach_files_do_not(key):
    _, before = rendered({k: v for k, v in OVERRIDES[key].items() if k != key and k in SWITCHES})
    _, after = rendered(OVERRIDES[key])
    assert before == after, f"{key} changes a rendered file: add its agreement to AGREEMENTS"
