"""Every file the deploy writes on a controller, rendered from files/templates/.

The deploy (operations/) and the offline render read the same list, so what `make render`
shows is exactly what a deploy installs. Secrets are passed in: real values for a deploy,
placeholders (config.secrets.PLACEHOLDERS) for a render or a printed diff.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from config.site import Site
from config.defaults import EPMD_PORT, GALERA_IST_PORT, GALERA_PORT, GALERA_SST_PORT
from config.syntax import erlang_ip, haproxy_word, option_value

TEMPLATES = Path(__file__).resolve().parent.parent / "files" / "templates"
MANAGED = "Managed by the openstack-ha pyinfra deploy; local changes are overwritten."

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)
# Values quoted for the file they land in (config/syntax.py).
_env.filters["haproxy_word"] = haproxy_word
_env.filters["option_value"] = option_value
_env.filters["erlang_ip"] = erlang_ip
_env.filters["dirname"] = lambda path: str(Path(path).parent)


@dataclass(frozen=True)
class ManagedFile:
    component: str  # the operations/ module that installs it
    path: str  # target path on the controller
    content: str
    mode: str = "0644"
    user: str = "root"
    group: str = "root"
    secret: bool = False  # holds a secret value: never diffed or printed as is


# Paths and names that operations/ need as well as this table: each written once, here.
SYSCTL_CONF = "/etc/sysctl.d/60-openstack-ha.conf"
GALERA_CNF = "/etc/mysql/mariadb.conf.d/99-openstack-galera.cnf"
ERLANG_COOKIE = "/var/lib/rabbitmq/.erlang.cookie"
EPMD_SOCKET_DROPIN = "/etc/systemd/system/epmd.socket.d/openstack-ha.conf"
HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
# The three secrets of the main configs, each in a file of its own that holds nothing else, so
# that --diff shows every line of haproxy.cfg, keepalived.conf and galera.cnf (masked):
# the stats page's account (an HAProxy userlist, loaded with haproxy.cfg by the unit's drop-in,
# `-f` twice), keepalived's auth_pass (an `include` in each authentication block) and
# wsrep_sst_auth (an option file of MariaDB's includedir, read by mysqld beside galera.cnf).
HAPROXY_STATS_USERS = "/etc/haproxy/openstack-ha-stats.cfg"
# The lines that held those secrets in the main configs of before: a --diff of such a file still
# on a host shows their key, never their value (a rotated secret is not masked by its new value).
FORMER_SECRET_LINES = re.compile(r"^(\s*(?:stats auth|auth_pass|wsrep_sst_auth)\b\s*=?\s*).+$")
HAPROXY_STATS_USERLIST = "openstack_ha_stats"  # the userlist's name, in both files
KEEPALIVED_AUTH = "/etc/keepalived/openstack-ha-auth.conf"
GALERA_SST_CNF = "/etc/mysql/mariadb.conf.d/99-openstack-galera-sst.cnf"
# HAProxy's unit writes 1 here when it stops or dies and 0 once it runs (a systemd drop-in);
# keepalived tracks the file (inotify on its directory, which must exist when keepalived loads
# its config: not under /run, emptied at boot): the VIP leaves a holder whose HAProxy died at
# once. After a reboot it still says 1 (written at shutdown) until HAProxy runs again.
HAPROXY_UNIT_DROPIN = "/etc/systemd/system/haproxy.service.d/openstack-ha.conf"
HAPROXY_DOWN_FILE = "/var/lib/openstack-ha/haproxy-down"
# Maintenance (README "Maintenance"): 1 here takes this controller out (keepalived tracks it
# like HAPROXY_DOWN_FILE: FAULT while it says 1, so the VIP leaves and stays away, also after a
# reboot); the deploy, the report and `maintenance.py` read it. Same directory, for the same reason.
MAINTENANCE_FILE = "/var/lib/openstack-ha/maintenance"
# On every controller: the runtime-API line that puts the servers of the controllers in
# maintenance in `maint` (one line, `;`-separated); HAProxy's unit replays it at every start
# (ExecStartPost), the deploy after every reload: runtime state does not survive either.
HAPROXY_MAINT_FILE = "/var/lib/openstack-ha/haproxy-maint"
# The host firewall (config/firewall.py): its rules and the unit that loads them at boot.
FIREWALL_NFT = "/etc/openstack-ha/firewall.nft"
FIREWALL_UNIT = "openstack-ha-firewall"
SST_ACCOUNT = "sst"  # mariabackup's MariaDB account (galera.cnf wsrep_sst_auth, operations/galera.py)

# The database check service's names, shared by its templates and operations/dbcheck.py.
DBCHECK = {
    "account": "clustercheck",  # system user and MariaDB account (unix_socket, no privileges)
    "script": "/usr/local/sbin/galera-clustercheck",
    "unit": "galera-clustercheck",
    "sysusers": "/etc/sysusers.d/openstack-ha-clustercheck.conf",
}

# (component, template, target path, mode, user, group, holds a secret); a path in braces
# is the site key that holds it (one source per datum).
FILES = (
    ("host", "sysctl/openstack-ha.conf.j2", SYSCTL_CONF, "0644", "root", "root", False),
    # The host firewall (firewall True only), before any daemon whose port it guards changes.
    ("firewall", "firewall/openstack-ha.nft.j2", FIREWALL_NFT, "0644", "root", "root", False),
    ("firewall", "firewall/openstack-ha-firewall.service.j2", f"/etc/systemd/system/{FIREWALL_UNIT}.service", "0644", "root", "root", False),
    ("memcached", "memcached/memcached.conf.j2", "/etc/memcached.conf", "0644", "root", "root", False),
    # mysqld (user mysql) reads both; the secret's file is readable by nobody else.
    ("galera", "mariadb/galera-sst.cnf.j2", GALERA_SST_CNF, "0640", "root", "mysql", True),
    ("galera", "mariadb/galera.cnf.j2", GALERA_CNF, "0640", "root", "mysql", False),
    ("rabbitmq", "rabbitmq/rabbitmq-env.conf.j2", "/etc/rabbitmq/rabbitmq-env.conf", "0644", "root", "root", False),
    ("rabbitmq", "rabbitmq/rabbitmq.conf.j2", "/etc/rabbitmq/rabbitmq.conf", "0644", "root", "root", False),
    ("rabbitmq", "rabbitmq/enabled_plugins.j2", "/etc/rabbitmq/enabled_plugins", "0644", "root", "root", False),
    ("rabbitmq", "rabbitmq/erlang.cookie.j2", ERLANG_COOKIE, "0400", "rabbitmq", "rabbitmq", True),
    # epmd's listeners: applied with the broker stopped (operations/rabbitmq.py), own component.
    ("epmd", "rabbitmq/epmd.socket.conf.j2", EPMD_SOCKET_DROPIN, "0644", "root", "root", False),
    # The VIP's certificate and key (haproxy_tls only), before the haproxy.cfg whose check reads it.
    ("haproxy", "haproxy/tls.pem.j2", "{haproxy_tls_pem_path}", "0640", "root", "haproxy", True),
    # The stats account before the haproxy.cfg whose check loads it (HAProxy reads both as root).
    ("haproxy", "haproxy/stats-users.cfg.j2", HAPROXY_STATS_USERS, "0600", "root", "root", True),
    ("haproxy", "haproxy/haproxy.cfg.j2", HAPROXY_CFG, "0640", "root", "haproxy", False),
    ("haproxy", "haproxy/haproxy.service.conf.j2", HAPROXY_UNIT_DROPIN, "0644", "root", "root", False),
    # Installed where keepalived.conf says it is: the path is the site's keepalived_check_script.
    ("keepalived", "keepalived/check_alive.sh.j2", "{keepalived_check_script}", "0755", "root", "root", False),
    # auth_pass before the keepalived.conf whose check includes it.
    ("keepalived", "keepalived/auth.conf.j2", KEEPALIVED_AUTH, "0600", "root", "root", True),
    ("keepalived", "keepalived/keepalived.conf.j2", KEEPALIVED_CONF, "0640", "root", "root", False),
    # The Galera-aware HTTP check HAProxy asks (mariadb_check_method "httpchk" only).
    ("dbcheck", "dbcheck/clustercheck.sysusers.j2", DBCHECK["sysusers"], "0644", "root", "root", False),
    ("dbcheck", "dbcheck/galera-clustercheck.py.j2", DBCHECK["script"], "0755", "root", "root", False),
    ("dbcheck", "dbcheck/galera-clustercheck.service.j2", f"/etc/systemd/system/{DBCHECK['unit']}.service", "0644", "root", "root", False),
)


def wanted(component: str, site: Site, template: str = "") -> bool:
    """Whether a site gets a file (of a component): the HTTP check only with httpchk, the
    certificate only with haproxy_tls, the firewall only with firewall."""
    if template == "haproxy/tls.pem.j2":
        return site.data["haproxy_tls"]
    if component == "firewall":
        return site.data["firewall"]
    return component != "dbcheck" or site.data["mariadb_check_method"] == "httpchk"


def render_template(template: str, site: Site, name: str, secrets: dict[str, str]) -> str:
    from config import firewall
    from facts.galera import SERVING  # the rule the clustercheck states (facts.galera imports this module)

    me = site.controller(name)
    text = _env.get_template(template).render(
        site=site,
        d=site.data,
        me=me,
        peers=site.peers(name),
        listeners=site.listeners,
        dbcheck=DBCHECK,
        haproxy_down_file=HAPROXY_DOWN_FILE,
        maintenance_file=MAINTENANCE_FILE,
        haproxy_maint_file=HAPROXY_MAINT_FILE,
        haproxy_stats_users=HAPROXY_STATS_USERS,
        haproxy_stats_userlist=HAPROXY_STATS_USERLIST,
        keepalived_auth=KEEPALIVED_AUTH,
        fw=firewall.rules(site) if template.startswith("firewall/") else None,
        fw_table=firewall.TABLE,
        fw_file=FIREWALL_NFT,
        ports={"galera": GALERA_PORT, "galera_ist": GALERA_IST_PORT, "galera_sst": GALERA_SST_PORT, "epmd": EPMD_PORT},
        galera_serving=SERVING,
        sst_account=SST_ACCOUNT,
        secrets=secrets,
        managed=MANAGED,
    )
    if template.endswith("erlang.cookie.j2"):
        text = text.strip()  # the cookie is the file's whole content, no newline
    return text


def managed_files(site: Site, name: str, secrets: dict[str, str], component: str | None = None) -> list[ManagedFile]:
    """The files controller `name` gets, in install order (optionally one component's)."""
    return [
        ManagedFile(comp, path.format(**site.data), render_template(tpl, site, name, secrets), mode, user, group, secret)
        for comp, tpl, path, mode, user, group, secret in FILES
        if component in (None, comp) and wanted(comp, site, tpl)
    ]
