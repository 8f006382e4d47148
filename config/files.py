"""Every file the deploy writes on a controller, rendered from files/templates/.

The deploy (operations/) and the offline render read the same list, so what `make render`
shows is exactly what a deploy installs. Secrets are passed in: real values for a deploy,
placeholders (config.secrets.PLACEHOLDERS) for a render or a printed diff.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from config import amqp_tls, backup, firewall, monitoring, peer_tls
from config.site import Site
from config.defaults import EPMD_PORT, GALERA_IST_PORT, GALERA_PORT, GALERA_SST_PORT
from config.paths import (  # the paths this table installs (importers of config.files may read them here too)
    APT_PINS, BACKUP_SCRIPT, DBCHECK, EPMD_SOCKET_DROPIN, ERLANG_COOKIE, FIREWALL_NFT, FIREWALL_UNIT, GALERA_CNF, GALERA_SST_CNF,
    HAPROXY_CFG, HAPROXY_DOWN_FILE, HAPROXY_MAINT_FILE, HAPROXY_STATS_USERLIST, HAPROXY_STATS_USERS, HAPROXY_UNIT_DROPIN,
    KEEPALIVED_AUTH, KEEPALIVED_CONF, KEEPALIVED_SERVE_SCRIPT, MAINTENANCE_FILE, RABBITMQ_MONITOR_CURLRC, RABBITMQ_UNIT_DROPIN,
    SST_ACCOUNT, SYSCTL_CONF,
)
from config.templates import MANAGED, TEMPLATES, env  # noqa: F401  (importers of config.files read MANAGED, TEMPLATES here)
from facts.galera_rules import SERVING  # the rule the clustercheck states
from facts.haproxy_api import send_file

_env = env  # the shared environment (config/templates.py)


@dataclass(frozen=True)
class ManagedFile:
    component: str  # the operations/ module that installs it
    path: str  # target path on the controller
    content: str
    mode: str = "0644"
    user: str = "root"
    group: str = "root"
    secret: bool = False  # holds a secret value: never diffed or printed as is


# The lines that held the secrets in the main configs of before (each is in a file of its own now,
# config/paths.py): a --diff of such a file still on a host shows their key, never their value (a
# secret rotated in the same run is not masked by its new value).
FORMER_SECRET_LINES = re.compile(r"^(\s*(?:stats auth|auth_pass|wsrep_sst_auth)\b\s*=?\s*).+$")

# (component, template, target path, mode, user, group, holds a secret); a path in braces
# is the site key that holds it (one source per datum).
FILES = (
    ("host", "sysctl/openstack-ha.conf.j2", SYSCTL_CONF, "0644", "root", "root", False),
    # The site's package_versions held (only when it pins one), before any package is installed.
    ("apt", "apt/openstack-ha.pref.j2", APT_PINS, "0644", "root", "root", False),
    # The host firewall (firewall True only), before any daemon whose port it guards changes.
    ("firewall", "firewall/openstack-ha.nft.j2", FIREWALL_NFT, "0644", "root", "root", False),
    ("firewall", "firewall/openstack-ha-firewall.service.j2", f"/etc/systemd/system/{FIREWALL_UNIT}.service", "0644", "root", "root", False),
    ("memcached", "memcached/memcached.conf.j2", "/etc/memcached.conf", "0644", "root", "root", False),
    # mysqld (user mysql) reads both; the secret's file is readable by nobody else.
    ("galera", "mariadb/galera-sst.cnf.j2", GALERA_SST_CNF, "0640", "root", "mysql", True),
    # galera_tls only (config/peer_tls.py): the CA, the node's certificate and its key, before the
    # galera.cnf that names them.
    *(("galera", f"tls/{n}.j2", f"{peer_tls.GALERA_TLS_DIR}/{n}", "0640", "root", "mysql", n == peer_tls.KEY_NAME)
      for n in (peer_tls.CA_NAME, peer_tls.CERT_NAME, peer_tls.KEY_NAME)),
    ("galera", "mariadb/galera.cnf.j2", GALERA_CNF, "0640", "root", "mysql", False),
    # rabbitmq_tls or rabbitmq_amqp_tls: the same material in RabbitMQ's copy, before the
    # rabbitmq.conf (AMQP's listener) that names it; rabbitmq_tls only: the Erlang distribution's
    # TLS options, before the rabbitmq-env.conf that names them.
    *(("rabbitmq", f"tls/{n}.j2", f"{peer_tls.RABBITMQ_TLS_DIR}/{n}", "0640", "root", "rabbitmq", n == peer_tls.KEY_NAME)
      for n in (peer_tls.CA_NAME, peer_tls.CERT_NAME, peer_tls.KEY_NAME)),
    ("rabbitmq", "rabbitmq/inter_node_tls.config.j2", peer_tls.DIST_OPTFILE, "0640", "root", "rabbitmq", False),
    ("rabbitmq", "rabbitmq/rabbitmq-env.conf.j2", "/etc/rabbitmq/rabbitmq-env.conf", "0644", "root", "root", False),
    ("rabbitmq", "rabbitmq/rabbitmq.conf.j2", "/etc/rabbitmq/rabbitmq.conf", "0644", "root", "root", False),
    ("rabbitmq", "rabbitmq/enabled_plugins.j2", "/etc/rabbitmq/enabled_plugins", "0644", "root", "root", False),
    ("rabbitmq", "rabbitmq/erlang.cookie.j2", ERLANG_COOKIE, "0400", "rabbitmq", "rabbitmq", True),
    # The health report's management API login (curl -K): its own component, so a rotated
    # password rewrites it without restarting the broker (operations/rabbitmq.py).
    ("rabbitmq_monitor", "rabbitmq/monitor.curlrc.j2", RABBITMQ_MONITOR_CURLRC, "0600", "root", "root", True),
    # epmd's listeners: applied with the broker stopped (operations/rabbitmq.py), own component.
    ("epmd", "rabbitmq/epmd.socket.conf.j2", EPMD_SOCKET_DROPIN, "0644", "root", "root", False),
    # The broker's start bounded by systemd (rabbitmq_start_timeout): its own component, so a
    # change is a daemon-reload, never a restart of the broker (operations/rabbitmq.py).
    ("rabbitmq_unit", "rabbitmq/rabbitmq-server.service.conf.j2", RABBITMQ_UNIT_DROPIN, "0644", "root", "root", False),
    # The VIP's certificate and key (haproxy_tls only), before the haproxy.cfg whose check reads it.
    ("haproxy", "haproxy/tls.pem.j2", "{haproxy_tls_pem_path}", "0640", "root", "haproxy", True),
    # The stats account before the haproxy.cfg whose check loads it (HAProxy reads both as root).
    ("haproxy", "haproxy/stats-users.cfg.j2", HAPROXY_STATS_USERS, "0600", "root", "root", True),
    ("haproxy", "haproxy/haproxy.cfg.j2", HAPROXY_CFG, "0640", "root", "haproxy", False),
    ("haproxy", "haproxy/haproxy.service.conf.j2", HAPROXY_UNIT_DROPIN, "0644", "root", "root", False),
    # Installed where keepalived.conf says it is: the path is the site's keepalived_check_script.
    ("keepalived", "keepalived/check_alive.sh.j2", "{keepalived_check_script}", "0755", "root", "root", False),
    ("keepalived", "keepalived/check_serving.py.j2", KEEPALIVED_SERVE_SCRIPT, "0755", "root", "root", False),
    # auth_pass before the keepalived.conf whose check includes it.
    ("keepalived", "keepalived/auth.conf.j2", KEEPALIVED_AUTH, "0600", "root", "root", True),
    ("keepalived", "keepalived/keepalived.conf.j2", KEEPALIVED_CONF, "0640", "root", "root", False),
    # The Galera-aware HTTP check HAProxy asks (mariadb_check_method "httpchk" only).
    ("dbcheck", "dbcheck/clustercheck.sysusers.j2", DBCHECK["sysusers"], "0644", "root", "root", False),
    ("dbcheck", "dbcheck/galera-clustercheck.py.j2", DBCHECK["script"], "0755", "root", "root", False),
    ("dbcheck", "dbcheck/galera-clustercheck.service.j2", f"/etc/systemd/system/{DBCHECK['unit']}.service", "0644", "root", "root", False),
    # Monitoring (monitoring_enabled only; config/monitoring.py renders them): the rules before the
    # prometheus.yml whose check reads them; each daemon's command line in Debian's /etc/default.
    ("monitoring", "monitoring/node-exporter.default.j2", monitoring.DEFAULT_FILES["prometheus-node-exporter"], "0644", "root", "root", False),
    ("monitoring", "monitoring/mysqld-exporter.default.j2", monitoring.DEFAULT_FILES["prometheus-mysqld-exporter"], "0644", "root", "root", False),
    ("monitoring", "monitoring/alerts.yml.j2", monitoring.RULES_FILE, "0644", "root", "root", False),
    ("monitoring", "monitoring/prometheus.yml.j2", monitoring.PROMETHEUS_YML, "0644", "root", "root", False),
    ("monitoring", "monitoring/prometheus.default.j2", monitoring.DEFAULT_FILES["prometheus"], "0644", "root", "root", False),
    ("monitoring", "monitoring/alertmanager.yml.j2", monitoring.ALERTMANAGER_YML, "0644", "root", "root", False),
    ("monitoring", "monitoring/alertmanager.default.j2", monitoring.DEFAULT_FILES["prometheus-alertmanager"], "0644", "root", "root", False),
    ("monitoring", "monitoring/openstack-ha-metrics.py.j2", monitoring.COLLECTOR, "0755", "root", "root", False),
    ("monitoring", "monitoring/openstack-ha-metrics.service.j2", f"/etc/systemd/system/{monitoring.COLLECTOR_UNIT}.service", "0644", "root", "root", False),
    ("monitoring", "monitoring/openstack-ha-metrics.timer.j2", f"/etc/systemd/system/{monitoring.COLLECTOR_UNIT}.timer", "0644", "root", "root", False),
    # Backups (backup_enabled), on backup_node only: the script, its service (%i = full or
    # incremental) and a timer per kind (the incremental's only with its calendar).
    ("backup", "backup/openstack-ha-backup.sh.j2", BACKUP_SCRIPT, "0700", "root", "root", False),
    # the restore tooling: a backup prepared (a copy, never the artifact), verified, restored
    *(("backup", template, path, "0700", "root", "root", False) for path, template in backup.TOOLS.items()),
    ("backup", "backup/openstack-ha-backup@.service.j2", "/etc/systemd/system/openstack-ha-backup@.service", "0644", "root", "root", False),
    ("backup", "backup/openstack-ha-backup.timer.j2", "/etc/systemd/system/openstack-ha-backup-full.timer", "0644", "root", "root", False),
    ("backup", "backup/openstack-ha-backup.timer.j2", "/etc/systemd/system/openstack-ha-backup-incremental.timer", "0644", "root", "root", False),
)

BACKUP_PATHS = tuple(row[2] for row in FILES if row[0] == "backup")  # removed where they are not wanted


def wanted(component: str, site: Site, template: str = "", name: str = "", path: str = "") -> bool:
    """Whether a site's controller `name` gets a file (of a component): the HTTP check only with
    httpchk, the certificate only with haproxy_tls, the peers' TLS material with galera_tls, or
    with rabbitmq_tls or rabbitmq_amqp_tls (each its component's; the Erlang distribution's
    options with rabbitmq_tls only), the firewall only with firewall, the apt pins
    only with package_versions, the backups' files only on the backup node of a site that takes
    them (the incremental timer only with its calendar), monitoring only with monitoring_enabled."""
    if component == "backup":
        return (site.data["backup_enabled"] and name == backup.node([c.name for c in site.controllers], site.data)
                and not (path.endswith("-incremental.timer") and site.data["backup_incremental_calendar"] is None))
    if template == "rabbitmq/inter_node_tls.config.j2":
        return site.data["rabbitmq_tls"]
    if template.startswith("tls/"):
        return any(site.data[k] for k in peer_tls.SWITCH_OF[component])
    if template == "haproxy/tls.pem.j2":
        return site.data["haproxy_tls"]
    if template == "keepalived/check_serving.py.j2":
        return site.data["keepalived_serve_check"]
    if component == "firewall":
        return site.data["firewall"]
    if component == "apt":
        return bool(site.data["package_versions"])
    if component == "monitoring":
        return site.data["monitoring_enabled"]
    return component != "dbcheck" or site.data["mariadb_check_method"] == "httpchk"


def serve_check(site: Site, name: str) -> dict:
    """What check_serving on controller `name` asks (its template renders it as JSON): the
    listeners that must have a usable server (the database's first), its peers' addresses and,
    for each, the ports of those API listeners' servers there (a peer that can serve accepts
    them)."""
    d = site.data
    db = next(s for s in site.services if s.port_key == "mariadb_port")
    apis = [s for s in site.services if s.name in d["keepalived_serve_listeners"]]
    return {
        "controllers": len(site.controllers),
        "peers": {c.name: c.address for c in site.peers(name)},
        "listeners": [db.name, *(s.name for s in apis)],
        "api_ports": {c.name: [s.backend_port or s.port for s in apis] for c in site.peers(name)},
        "check_port": d["mariadb_check_port"],
        "check_method": d["mariadb_check_method"],
        "socket": d["haproxy_stats_socket"],
        "vip": d["vip"],
        "vip_port": d["mariadb_port"],
        "interface": d["vip_interface"],
        "peer_timeout": d["keepalived_serve_peer_timeout_ms"] / 1000,
        "last_resort": d["keepalived_serve_last_resort"],
    }


def render_template(template: str, site: Site, name: str, secrets: dict[str, str], path: str = "",
                    shared: dict | None = None) -> str:
    """One template rendered for controller `name` (`path`: where it goes, for a template
    installed twice, as the backup timers: the kind is in their name). `shared`: what
    managed_files() computes once for all the files of one call (the site's listeners, the
    firewall's rule count), instead of once per template; computed here when not given."""
    shared = {} if shared is None else shared
    if template.startswith("monitoring/"):
        rules = None
        if site.data["firewall"] and template.startswith("monitoring/openstack-ha-metrics"):  # the collector's alone
            rules = shared["rules"] if "rules" in shared else expected_rules(site)
        return monitoring.render_file(template, site, name, rules)
    me = site.controller(name)
    text = _env.get_template(template).render(
        site=site,
        d=site.data,
        me=me,
        peers=site.peers(name),
        listeners=shared["listeners"] if "listeners" in shared else site.listeners,
        dbcheck=DBCHECK,
        haproxy_down_file=HAPROXY_DOWN_FILE,
        maintenance_file=MAINTENANCE_FILE,
        haproxy_maint_file=HAPROXY_MAINT_FILE,
        haproxy_replay=send_file(site.data["haproxy_stats_socket"], HAPROXY_MAINT_FILE),  # schema PATHs: never quoted
        haproxy_stats_users=HAPROXY_STATS_USERS,
        haproxy_stats_userlist=HAPROXY_STATS_USERLIST,
        keepalived_auth=KEEPALIVED_AUTH,
        fw=firewall.rules(site) if template.startswith("firewall/") else None,
        serve=serve_check(site, name) if template == "keepalived/check_serving.py.j2" else None,
        serve_script=KEEPALIVED_SERVE_SCRIPT,
        serve_listeners=serve_check(site, name)["listeners"] if template.startswith("keepalived/") else (),
        fw_table=firewall.TABLE,
        fw_file=FIREWALL_NFT,
        ports={"galera": GALERA_PORT, "galera_ist": GALERA_IST_PORT, "galera_sst": GALERA_SST_PORT, "epmd": EPMD_PORT},
        galera_serving=SERVING,
        sst_account=SST_ACCOUNT,
        b=backup.script_values(site) if template.startswith("backup/") else None,
        kind="incremental" if path.endswith("-incremental.timer") else "full",
        manifest_suffix=backup.MANIFEST_SUFFIX,
        peer=peer_tls.material(site, name, secrets) if template.startswith("tls/") else None,
        peer_paths={c: peer_tls.paths(c) for c in peer_tls.DIRS},
        dist_optfile=peer_tls.DIST_OPTFILE,
        amqp_ciphers=amqp_tls.ciphers(site.data) if template == "rabbitmq/rabbitmq.conf.j2" else (),
        secrets=secrets,
        managed=MANAGED,
    )
    if template.endswith("erlang.cookie.j2"):
        text = text.strip()  # the cookie is the file's whole content, no newline
    return text



def render_backup_tool(site: Site, path: str) -> str:
    """A restore tool of the backups (config/backup.py TOOLS: the prepare, the verify step, the
    restore) as the site's backup node gets it (its FILES row)."""
    return render_template(backup.TOOLS[path], site, backup.node([c.name for c in site.controllers], site.data), {}, path)

def _rows(site: Site, name: str, component: str | None = None) -> list[tuple]:
    return [row for row in FILES if component in (None, row[0]) and wanted(row[0], site, row[1], name, row[2])]


def managed_paths(site: Site, name: str) -> list[str]:
    """Where controller `name`'s files go (managed_files()' paths, in its order), without
    rendering them: a run reads their state on the host while it renders them here."""
    return [path.format(**site.data) for _, _, path, *_ in _rows(site, name)]


def managed_files(site: Site, name: str, secrets: dict[str, str], component: str | None = None) -> list[ManagedFile]:
    """The files controller `name` gets, in install order (optionally one component's).
    The site's listeners and the firewall's rule count are computed once for all of them
    (per template they were 15 listeners built ~30 times and the firewall table rendered
    again for each of the collector's files, on each controller of each run)."""
    rows = _rows(site, name, component)
    shared = {"listeners": site.listeners}
    if site.data["firewall"] and any(tpl.startswith("monitoring/openstack-ha-metrics") for _, tpl, *_ in rows):
        shared["rules"] = expected_rules(site)
    return [
        ManagedFile(comp, path.format(**site.data), render_template(tpl, site, name, secrets, path, shared), mode, user, group, secret)
        for comp, tpl, path, mode, user, group, secret in rows
    ]


def expected_rules(site: Site) -> int:
    """The number of rules the site's table holds when loaded (the same on every controller):
    fewer (`nft flush table` keeps the sets, drops every rule) is a table changed by hand."""
    return firewall.rule_count(render_template("firewall/openstack-ha.nft.j2", site, site.controllers[0].name, {}))
