"""Preflight: refuse a wrong site before any host is touched.

check() returns every problem at once, each one line naming the host (or the controllers
group, for site-wide data), the key and the fix. Errors stop render and deploy; warnings are
printed and do not.

    python -m config.preflight inventories/prod.py
"""

from __future__ import annotations

import difflib
import ipaddress
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pyinfra.connectors.ssh import SSHConnector

from config import amqp_tls, backup, peer_tls, rehearsal, tls
from config.catalogue import CATALOGUE, PORT_KEYS, CatalogueError, merge_catalogue
from config.defaults import DEFAULTS, DIST_PORT_OFFSET, FIXED_PORTS, HOST_KEYS, PYINFRA_KEY_PREFIXES
from config.packages import INSTALLED, SAME_SOURCE, installed
from config.paths import DBCHECK, SST_ACCOUNT
from config.schema import CONTROL, HOST, HOST_NAME, SECRET, SERVICE, SITE, problems, show, text
from config.secrets import NEEDED_WHEN, SECRETS, SecretsError, env_name, load_secrets, needed, secrets_path
from config.site import GROUP, merged_data, service_overrides

# Site keys that are ports on each node's address, with their daemon.
NODE_PORT_KEYS = {
    "haproxy_stats_port": "HAProxy stats",
    "mariadb_port": "MariaDB",
    "mariadb_check_port": "galera-clustercheck",
    "rabbitmq_port": "RabbitMQ AMQP",
    "rabbitmq_management_port": "RabbitMQ management",
    "memcached_port": "memcached",
}

# Monitoring's ports on each node's address (monitoring_enabled only), with their daemon.
MONITORING_PORT_KEYS = {
    "monitoring_prometheus_port": "Prometheus",
    "monitoring_alertmanager_port": "Alertmanager",
    "monitoring_alertmanager_cluster_port": "the Alertmanager cluster",
    "monitoring_node_exporter_port": "node-exporter",
    "monitoring_mysqld_exporter_port": "mysqld_exporter",
    "monitoring_haproxy_exporter_port": "HAProxy's Prometheus exporter",
    "monitoring_rabbitmq_exporter_port": "rabbitmq_prometheus",
}


@dataclass(frozen=True)
class Problem:
    level: str  # "error" or "warning"
    where: str  # a host name, or the controllers group for site-wide data
    key: str
    message: str
    fix: str

    def __str__(self) -> str:
        # Names and keys as ascii() shows them when they are not plain ASCII, and any other
        # non-ASCII character escaped: a homoglyph ('v\u0456p', a Cyrillic i) is seen, not read.
        line = f"{self.level}: {_plain(self.where)}: {_plain(self.key)}: {self.message}; fix: {self.fix}"
        return line.encode("ascii", "backslashreplace").decode("ascii")


def _plain(name: str) -> str:
    return name if name.isascii() and name.isprintable() else ascii(name)


@dataclass
class Report:
    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]


def _is_ours(key: str) -> bool:
    return key.startswith(PYINFRA_KEY_PREFIXES)


# The ssh_* keys pyinfra's SSH connector reads; another (ssh_hostame) would be ignored.
SSH_KEYS = frozenset(SSHConnector.data_meta)
SSH_TARGET = text(r"[A-Za-z0-9_.:%\[\]-]{1,253}", "a host name or an IP address")
JSON_TYPES = {bool: "true or false", int: "a number", float: "a number", list: "an array", dict: "an object"}
PROC_SYS = Path("/proc/sys")
# Secrets a tool on the controllers trims (rabbitmqctl add_user / change_password read stdin).
TRIMMED = ("rabbitmq_password", "rabbitmq_admin_password", "rabbitmq_monitor_password")


def check(
    hosts: list[tuple[str, dict]], group_data: dict, secrets: dict | None = None, secrets_required: bool = True,
    others: dict | None = None,
) -> Report:
    """Every problem of a site. `secrets` are the values found (None: load them); `others`
    the inventory's groups besides controllers, {group: (hosts, group data)} (load_groups).

    With secrets_required=False (offline render, which shows placeholders) a missing secret
    is a warning.
    """
    out: list[Problem] = []
    bad: set[str] = set()  # keys refused by the schema: no cross-key check reads them

    def err(where, key, message, fix):
        out.append(Problem("error", where, key, message, fix))
        bad.add(key.split(".")[0])

    def warn(where, key, message, fix):
        out.append(Problem("warning", where, key, message, fix))

    G = GROUP
    # a name that is not a string is refused below as the text of it (pyinfra's are strings)
    hosts = [(name if isinstance(name, str) else show(name), hd if isinstance(hd, dict) else {}) for name, hd in hosts]
    # Unknown keys: a typo must not pass silently. Known keys: the schema's type and range.
    for key, value in group_data.items():
        if key in SITE:
            for k, message, expect in problems(key, SITE[key].kind, value):
                err(G, k, message, f"set {k} to {expect} ({SITE[key].meaning})")
        elif not _is_ours(key):
            hint = _close(key, DEFAULTS)
            err(G, key, "unknown key in the site data", f"remove it{hint} (known keys: config/defaults.py)")
        else:
            _check_pyinfra_key(G, key, value, err)
    for name, hd in hosts:
        if (reason := HOST_NAME.why(name)) is not None:
            err(name, "name", reason, f"name the controller by its hostname: {HOST_NAME.expect} (RabbitMQ's node is rabbit@<name>)")
        for key, value in hd.items():
            if key in HOST:
                for k, message, expect in problems(key, HOST[key].kind, value):
                    err(name, k, message, f"set {k} to {expect}")
            elif _is_ours(key):
                _check_pyinfra_key(name, key, value, err)
            elif key not in DEFAULTS:
                err(name, key, "unknown key in the host data", f"remove it{_close(key, HOST_KEYS)}")
            elif key in DEFAULTS:
                err(name, key, "a site-wide key set on one host", f"move {key} to the controllers group data")
        for key in HOST_KEYS:
            if key not in hd:
                err(name, key, "missing", f"set {key} in the host data ({HOST_KEYS[key]})")

    _check_other_groups(hosts, others or {}, err, warn)
    data = merged_data({k: v for k, v in group_data.items() if k not in bad})
    if "sysctl" not in bad and isinstance(group_data.get("sysctl"), dict):
        _check_sysctl_names(group_data["sysctl"], warn)

    # Network and VIP.
    for key in ("internal_network", "vip"):
        if not data.get(key) and key not in bad:
            err(G, key, "missing", f"set {key} in the controllers group data (see inventories/prod.py)")
    network = ipaddress.ip_network(data["internal_network"], strict=False) if data.get("internal_network") else None
    vip = ipaddress.ip_address(data["vip"]) if data.get("vip") else None
    if vip and network:
        if reason := _outside(vip, network):
            err(G, "vip", f"{vip} {reason}", f"pick a free address in {network}")
    if network and network.version == 6 and data["firewall"] and "firewall" not in bad:
        # config/firewall.py writes IPv4 sets and `ip saddr` rules: nft -c would refuse the file
        # on every controller, after the host basics had run.
        err(G, "firewall", f"the host firewall is IPv4 only and internal_network {network} is IPv6",
            "set \"firewall\": False and filter the cluster ports yourself")

    # Controllers: names, addresses, priorities, SSH targets.
    names = Counter(name for name, _ in hosts)
    for name, n in names.items():
        if n > 1:
            err(name, "name", f"{n} controllers share this name (pyinfra would merge them into one)", "give each controller its own hostname")
    seen_addr: dict[str, str] = {}
    seen_ssh: dict[str, str] = {}
    vips = {k: data[k] for k in ("vip", "external_vip") if data.get(k) and k not in bad}
    for name, hd in hosts:
        target = hd.get("ssh_hostname")
        if SSH_TARGET.why(target) is not None:
            target = None  # refused above
        for key, vip_value in vips.items():
            if target is not None and target != hd.get("address") and _same_address(target, vip_value):
                err(name, "ssh_hostname", f"{target} is the {'VIP' if key == 'vip' else 'external VIP'}: SSH would reach whichever controller holds it",
                    f"set ssh_hostname to this controller's own address ({hd.get('address', 'its address')})")
        if target is not None and target in seen_ssh:
            err(name, "ssh_hostname", f"{target} is also the SSH target of {seen_ssh[target]}: one controller would get another's files", "give each controller its own ssh_hostname")
        elif target is not None:
            seen_ssh[target] = name
        addr = hd.get("address")
        if not addr or "address" in bad:
            continue
        if target is not None and target != addr:
            warn(name, "ssh_hostname", f"{target} differs from the address {addr}", "make sure it reaches this controller (or use the address)")
        ip = ipaddress.ip_address(addr)
        if addr in seen_addr:
            err(name, "address", f"{addr} is also the address of {seen_addr[addr]}", "give each controller its own address")
        seen_addr[addr] = name
        if vip and ip == vip:
            err(name, "address", f"{addr} is the VIP", "the VIP must be an address no node has; change vip or the node address")
        elif data.get("external_vip") and "external_vip" not in bad and ip == ipaddress.ip_address(data["external_vip"]):
            err(name, "address", f"{addr} is the external VIP", "the external VIP must be an address no node has; change external_vip or the node address")
        elif network and (reason := _outside(ip, network)):
            err(name, "address", f"{addr} {reason}", "fix the address or internal_network")
    prios: dict[int, str] = {}
    for name, hd in hosts:
        prio = hd.get("vrrp_priority")
        if prio is None or name in {p.where for p in out if p.key == "vrrp_priority"}:
            continue
        if prio in prios:
            err(name, "vrrp_priority", f"{prio} is also the priority of {prios[prio]}", "give each controller a distinct priority")
        else:
            prios[prio] = name

    # keepalived.
    if data["keepalived_virtual_router_id"] == 51:
        warn(G, "keepalived_virtual_router_id", "51 is keepalived's and kolla's default, the usual collision on a shared segment", "pick an id no other VRRP router on the segment uses")

    _check_serve(data, bad, err, warn)

    # Cluster size: Galera and RabbitMQ run on every controller.
    n = len(hosts)
    if n < 3:
        err(G, "controllers", f"{n} Galera/RabbitMQ member(s): one failure loses quorum", "list at least 3 controllers")
    elif n % 2 == 0:
        warn(G, "controllers", f"{n} Galera/RabbitMQ members: an even split leaves no majority", "use an odd number of controllers")

    _check_accounts(data, bad, err)
    peer_tls.check(hosts, data, group_data, bad, secrets_required, err, warn)
    amqp_tls.check(G, data, group_data, bad, err, warn)
    _check_backup(data, group_data, bad, [name for name, _ in hosts], err, warn)
    if data["backup_enabled"] and rehearsal.KEY not in bad and "backup_enabled" not in bad:
        controllers = [(name, hd.get("address")) for name, hd in hosts if isinstance(hd.get("address"), str)]
        for host, message, fix in rehearsal.host_problems(data[rehearsal.KEY], controllers,
                                                          [data.get(k) for k in ("vip", "external_vip") if k not in bad]):
            err(G, f"{rehearsal.KEY}.{host}", message, fix)
    _check_monitoring(data, group_data, bad, warn)
    if "galera_gcache_size" not in bad:
        _check_gcache(data["galera_gcache_size"], err)
    if "package_versions" not in bad:
        _check_package_versions(data["package_versions"], data["firewall"] if "firewall" not in bad else True, err,
                                data["monitoring_enabled"] if "monitoring_enabled" not in bad else True)

    # Listeners: each entry's fields by the schema, then the catalogue merged.
    services = _check_services(data, err, warn) if "services" not in bad else []
    _check_external_vip(data, bad, vip, network, services, err, warn)
    by_port: dict[int, str] = {}
    for svc in services:
        for field, port in svc.vip_ports(data["haproxy_tls"]):
            if port in by_port:
                err(G, f"services.{svc.name}.{field}", f"port {port} is also the port of {by_port[port]}", "give one of them another port, or disable one")
            else:
                by_port[port] = svc.name

    # Database health check: method and port must agree.
    method, cport, dbport = data["mariadb_check_method"], data["mariadb_check_port"], data["mariadb_port"]
    if method == "mysql-check" and cport != dbport:
        err(G, "mariadb_check_port", f"mysql-check talks MySQL on the database port {dbport}, not {cport}", f"set mariadb_check_port to {dbport}, or use mariadb_check_method httpchk")
    if method == "httpchk" and cport == dbport:
        err(G, "mariadb_check_port", f"an HTTP check cannot run on the database port {dbport}", "give the HTTP check its own port, e.g. 9200")
    else:
        _check_ports(data, group_data, services, err)

    # Secrets: present, carried by the file they land in, never shown.
    path = secrets_path(data.get("secrets_file")) if "secrets_file" not in bad else None
    if path is not None and path.exists() and path.stat().st_mode & 0o077:
        err(G, "secrets_file", f"{path} is readable or writable by group or others (mode {path.stat().st_mode & 0o777:o})", f"chmod 600 {path}")
    if secrets is None:
        try:
            secrets = load_secrets(data.get("secrets_file") if "secrets_file" not in bad else None)
        except SecretsError as exc:
            err(G, "secrets_file", str(exc), "fix the file: a JSON object of secret name to value")
            secrets = {}
    where = "the environment" if path is None else f"{path}{'' if path.exists() else ' (absent)'}"
    for name in (n for n in SECRETS if needed(n, data)):
        value = secrets.get(name)
        if value is None:
            fix = f"add {name} to the secrets file or set {env_name(name)}"
            if name in NEEDED_WHEN:
                fix += f", or set {NEEDED_WHEN[name]}: False"
            (err if secrets_required else warn)(G, name, f"secret missing (looked in {where} and ${env_name(name)})", fix)
        elif type(value) is not str:
            # str() would make 1234.5 of a JSON number, True of true: not what was meant
            err(G, name, f"the secret is {JSON_TYPES.get(type(value), type(value).__name__)} in {where}, not a JSON string (value not shown)",
                f"write {name} as a JSON string, in double quotes")
        elif not value:
            err(G, name, f"the secret is blank in {where}", f"choose a {name} of {SECRET[name].expect}")
        elif value != value.strip() and name in TRIMMED:
            err(G, name, f"the secret has leading or trailing whitespace ({len(value)} characters; value not shown): "
                "RabbitMQ's CLI trims what it reads, so the stored password would differ and every run change it again",
                f"remove the whitespace around {name}")
        elif value != value.strip() and name != tls.SECRET:
            # it reads back as it is (tests/unit/test_syntax.py), but is often a paste mistake
            warn(G, name, f"the secret has leading or trailing whitespace ({len(value)} characters; value not shown)",
                 f"make sure the whitespace is meant, or remove it around {name}")
        elif name == "vrrp_auth_pass" and len(value) > 8:
            err(G, name, f"{len(value)} characters: keepalived silently uses only the first 8", "use a VRRP password of at most 8 characters")
        elif (reason := SECRET[name].kind.why(value)) is not None:
            # only the PEM's own reasons never show the value; the others' are written here
            what = reason if name == "haproxy_tls_pem" else "holds a control character" if CONTROL.search(value) else f"is not {SECRET[name].expect}"
            err(G, name, f"the secret {what} ({len(value)} characters; value not shown)", f"choose a {name} of {SECRET[name].expect}")
        elif name == tls.SECRET:
            _check_certificate(value, data, err, warn)

    return Report(out)


def _check_pyinfra_key(where: str, key: str, value, err) -> None:
    """A key pyinfra reads: an ssh_* key its SSH connector knows, an ssh_hostname it can use."""
    if key.startswith("ssh_") and key not in SSH_KEYS:
        err(where, key, "unknown ssh_ key: pyinfra's SSH connector ignores it", f"remove it{_close(key, SSH_KEYS)} (pyinfra's keys: {', '.join(sorted(SSH_KEYS))})")
    elif key == "ssh_hostname" and (reason := SSH_TARGET.why(value)) is not None:
        err(where, key, reason, f"set ssh_hostname to {SSH_TARGET.expect}, or remove it (the controller's name is used)")


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def _check_other_groups(hosts: list, others: dict, err, warn) -> None:
    """Groups besides controllers: deploy.py runs on every host of the inventory, and only the
    controllers group's data is read. A controller listed again with other host data: pyinfra
    merges the two, so preflight and the deploy could read different values."""
    controllers = {name: hd for name, hd in hosts if isinstance(name, str)}
    fix = f"list every controller in `{GROUP}` only, with its data there (one inventory per site)"
    for group, (members, group_data) in others.items():
        strangers = [n for n, _ in members if n not in controllers]
        if strangers:
            err(group, "hosts", f"{', '.join(map(show, strangers))} are not in `{GROUP}`: deploy.py would run on them too", f"remove them; {fix}")
        if group_data:
            err(group, "group data", f"{', '.join(map(show, group_data))} of group {show(group)} are ignored: only `{GROUP}` data is read",
                f"move them to the `{GROUP}` group data and remove the group")
        differ = False
        for name, hd in members:
            for key in sorted(set(hd) | set(controllers.get(name, hd))):
                mine, theirs = controllers.get(name, hd).get(key), hd.get(key)
                if name in controllers and mine != theirs:
                    differ = True
                    err(name, key, f"{show(mine)} in `{GROUP}`, {show(theirs)} in group {show(group)}: pyinfra merges the two",
                        f"list {name} once, in `{GROUP}`")
        if not (strangers or group_data or differ):
            warn(group, "group", f"a group besides `{GROUP}` has no effect here", "remove it")


def _check_sysctl_names(sysctl: dict, warn) -> None:
    """The site's sysctl names against this machine's kernel (/proc/sys): a name it lacks is
    a typo, or a setting of a module this machine does not load (right only if the
    controllers load it): a warning, with the closest name of its directory."""
    if not (PROC_SYS / "kernel").is_dir():
        return  # not Linux here: nothing to compare with
    for name in sysctl:
        if not isinstance(name, str) or name in DEFAULTS["sysctl"] or "/" in name or ".." in name:
            continue
        path = PROC_SYS.joinpath(*name.split("."))
        if path.exists():
            continue
        siblings = [f"{name.rpartition('.')[0]}.{p.name}" for p in path.parent.iterdir()] if path.parent.is_dir() else []
        match = difflib.get_close_matches(name, siblings, n=1, cutoff=0.8)
        hint = f" (did you mean {match[0]}?)" if match else ""
        warn(GROUP, f"sysctl.{name}", f"no such kernel setting on this machine ({path})",
             f"check the name{hint}; it is right only if the controllers' kernel has it")


def _check_certificate(pem: str, data: dict, err, warn, now: datetime | None = None) -> None:
    """The certificate checks of the controllers (config/tls.py), here with this machine's
    openssl, before any host is touched; a warning when it expires within the warning days."""
    reason, until = tls.local_check(pem)
    if reason == "openssl not found":
        warn(GROUP, tls.SECRET, "openssl is not installed here: the certificate is checked on each controller only",
             "install openssl (apt-get install openssl)")
    elif reason:
        err(GROUP, tls.SECRET, f"the secret {reason} (value not shown)", tls.FIX)
    elif until is not None:
        now = now or datetime.now(timezone.utc)
        left = tls.days_left(until, now)
        if left < data["haproxy_tls_expiry_warn_days"]:
            warn(GROUP, tls.SECRET, f"the certificate expires in {left:.0f} days ({until:%Y-%m-%d %H:%M} UTC)",
                 f"renew it: {tls.FIX}")
        start, addresses = tls.local_names(pem)
        if start is not None and start > now:
            err(GROUP, tls.SECRET, f"the certificate is not valid before {start:%Y-%m-%d %H:%M} UTC (notBefore): "
                "every client refuses it until then", f"deploy it from then on, or {tls.FIX}")
        vips = [v for v in (data.get("vip"), data.get("external_vip")) if v]
        if vips and not set(vips) & set(addresses):
            warn(GROUP, tls.SECRET, f"the certificate names neither VIP ({', '.join(vips)}) among its IP addresses "
                 f"({', '.join(addresses) or 'none'}): a client that connects to a VIP's address refuses it",
                 "give it a subjectAltName IP entry for each VIP, unless every client uses a DNS name it holds")


SERVE_KEYS = ("keepalived_serve_listeners", "keepalived_serve_interval", "keepalived_serve_peer_timeout_ms")


def _check_serve(data: dict, bad: set, err, warn) -> None:
    """check_serving (keepalived_serve_*): its listeners are enabled API listeners of the
    catalogue, and one run (each peer probed in parallel: its database check, then each of
    those listeners' servers, one peer timeout each) ends within its interval (keepalived
    counts a run still going then as a failure)."""
    G = GROUP
    if set(SERVE_KEYS) & bad or "services" in bad:
        return
    names = data["keepalived_serve_listeners"]
    if not data["keepalived_serve_check"] and "keepalived_serve_check" not in bad:
        if names:
            warn(G, "keepalived_serve_listeners", "has no effect with keepalived_serve_check False",
                 "set keepalived_serve_check True, or remove keepalived_serve_listeners")
        return
    try:
        enabled = {s.name: s for s in merge_catalogue(service_overrides(data), legacy_enabled=data["haproxy_legacy_services"])}
    except CatalogueError:
        return  # _check_services says why
    for name in names:
        if name not in enabled:
            err(G, "keepalived_serve_listeners", f"{name!r} is no enabled listener",
                f"name enabled listeners of the catalogue ({', '.join(n for n in enabled if n != 'mariadb')}), or remove it")
        elif enabled[name].port_key == "mariadb_port":
            err(G, "keepalived_serve_listeners", f"{name!r} is the database listener, always checked",
                f"remove {name} from keepalived_serve_listeners")
    if len(set(names)) != len(names):
        err(G, "keepalived_serve_listeners", "names a listener twice", "name each listener once")
    run = (2 + len(set(names))) * data["keepalived_serve_peer_timeout_ms"] + 200
    if run >= data["keepalived_serve_interval"] * 1000:
        err(G, "keepalived_serve_peer_timeout_ms",
            f"one check_serving run may take {run} ms ({2 + len(set(names))} peer timeouts + 200 ms), not within "
            f"keepalived_serve_interval {data['keepalived_serve_interval']} s",
            "lower keepalived_serve_peer_timeout_ms, list fewer keepalived_serve_listeners, or raise keepalived_serve_interval")


def _check_accounts(data: dict, bad: set, err) -> None:
    """Accounts of different privileges never share a name: the deploy makes each right by
    name, so one would take the other's privileges, or be dropped as the other's wider copy."""
    G = GROUP
    taken = {SST_ACCOUNT: "mariabackup's account", DBCHECK["account"]: "the Galera check's account",
             "root": "MariaDB's root", "mysql": "MariaDB's system account", "mariadb.sys": "MariaDB's system account"}
    for key in ("mariadb_admin_user", "mariadb_check_user"):
        if key not in bad and data[key] in taken:
            err(G, key, f"{data[key]!r} is {taken[data[key]]}", f"give {key} another name")
        elif key not in bad:
            taken[data[key]] = f"also {key}"
    admin, user = data["rabbitmq_admin_user"], data["rabbitmq_user"]
    if not {"rabbitmq_admin_user", "rabbitmq_user"} & bad and admin in (user, "guest"):
        what = "the OpenStack services' account (rabbitmq_user)" if admin == user else "RabbitMQ's default account, which the deploy deletes"
        err(G, "rabbitmq_admin_user", f"{admin!r} is {what}", "give the management administrator its own name, e.g. \"admin\"")
    monitor = data["rabbitmq_monitor_user"]
    others = {user: "the OpenStack services' account (rabbitmq_user)", admin: "the management administrator (rabbitmq_admin_user)",
              "guest": "RabbitMQ's default account, which the deploy deletes"}
    if not {"rabbitmq_monitor_user", "rabbitmq_admin_user", "rabbitmq_user"} & bad and monitor in others:
        err(G, "rabbitmq_monitor_user", f"{monitor!r} is {others[monitor]}",
            "give the health report's account its own name, e.g. \"openstack-ha-monitor\"")


BACKUP_KEYS = tuple(k for k in DEFAULTS if k.startswith("backup_") and k != "backup_enabled")


def _check_backup(data: dict, site_keys, bad: set, names: list[str], err, warn) -> None:
    """Backups: taken on a controller that is not the database writer, copied somewhere else,
    kept outside the datadir; the two schedules distinct. Off: the keys a site set say so."""
    G = GROUP
    if not data["backup_enabled"] or "backup_enabled" in bad:
        for key in BACKUP_KEYS:
            if key in site_keys and key not in bad and "backup_enabled" not in bad:
                warn(G, key, "has no effect while backup_enabled is False", f"set backup_enabled True, or remove {key}")
        return
    if not names or bad & set(BACKUP_KEYS):
        return  # no controllers (said above), or a backup key the schema refused (said above)
    me, writer = backup.node(names, data), backup.writer(names)
    said = f"backup_node ({'None: the last controller, ' if data['backup_node'] is None else ''}{me})"
    others = [n for n in names if n != writer]
    if me not in names:
        err(G, "backup_node", f"{me} is not a controller of this site", f"set backup_node to one of {', '.join(others) or 'the controllers but the first'}, or None (the last)")
    elif me == writer:
        err(G, "backup_node", f"{said} is {writer}, the database writer: desyncing it for a backup stalls every write",
            f"set backup_node to another controller ({', '.join(others)})" if others else "add controllers: a backup is never taken on the writer")
    target = backup.copy_target(names, data)
    if target.name == me:
        err(G, "backup_copy_to", f"{target.name} is backup_node itself: a backup kept only on the node it protects dies with it",
            "set backup_copy_to to another controller or an SSH host")
    elif target.kind == "ssh" and "@" not in target.name and (hint := _close(target.name, names, 0.8)):
        warn(G, "backup_copy_to", f"{target.name} is not a controller: taken for an SSH host{hint}", "write the controller's name exactly, or user@host for an SSH host")
    for key, path in (("backup_dir", data["backup_dir"]), ("backup_copy_dir", data["backup_copy_dir"])):
        if path and (path + "/").startswith(backup.DATADIR + "/"):
            err(G, key, f"{path} is inside MariaDB's datadir {backup.DATADIR}", f"set {key} outside {backup.DATADIR}, e.g. {DEFAULTS['backup_dir']}")
    if data["backup_incremental_calendar"] == data["backup_full_calendar"]:
        err(G, "backup_incremental_calendar", f"{data['backup_full_calendar']!r} is also backup_full_calendar: every incremental would meet a full",
            "give the incrementals another time (e.g. \"*-*-* *:30:00\"), or None for fulls only")


GCACHE_FLOOR_MB = 128  # Galera's own default gcache.size


def gcache_mb(size: str) -> int:
    """"512M" -> 512, "1G" -> 1024 (the schema admits only these forms)."""
    return int(size[:-1]) * (1024 if size.endswith("G") else 1)


def _check_gcache(size: str, err) -> None:
    """gcache.size at least Galera's default: a smaller cache makes every rejoin after a short
    absence (a rolling upgrade's turn, a restart under load) a full state transfer."""
    if gcache_mb(size) < GCACHE_FLOOR_MB:
        err(GROUP, "galera_gcache_size", f"{size} is below Galera's default ({GCACHE_FLOOR_MB}M): a node away for a "
            "few minutes under load would rejoin by a full state transfer (SST), and a rolling upgrade fails on one",
            f"set galera_gcache_size to {GCACHE_FLOOR_MB}M or more (default {DEFAULTS['galera_gcache_size']})")


def _check_package_versions(pins: dict, firewall: bool, err, monitoring: bool = True) -> None:
    """Pins name packages the deploy installs (config/packages.py), and the packages of one
    source (mariadb-server, -client, -backup) the same version, or none of them."""
    for name in pins:
        if name not in INSTALLED:
            err(GROUP, f"package_versions.{name}", f"{name} is not a package the deploy installs{_close(name, INSTALLED)}",
                f"remove it from package_versions, or name one of {', '.join(INSTALLED)}")
        elif name not in installed(firewall, monitoring):
            key = "firewall" if name not in installed(firewall) else "monitoring_enabled"
            what = "the host firewall" if key == "firewall" else "monitoring"
            err(GROUP, f"package_versions.{name}", f"{name} is installed only with {what}, and {key} is False",
                f"remove it from package_versions, or set {key} True")
    for source in SAME_SOURCE:
        pinned = {name: pins[name] for name in source if name in pins}
        if pinned and (len(set(pinned.values())) > 1 or len(pinned) < len(source)):
            shown = ", ".join(f"{n} {pinned.get(n, '(not pinned)')}" for n in source)
            err(GROUP, "package_versions", f"{', '.join(source)} are built from one source and upgraded together: {shown}",
                f"pin all of {', '.join(source)} to one version")


EXTERNAL_KEYS = ("external_vip_interface", "external_network", "keepalived_external_router_id")


def _check_external_vip(data: dict, bad: set, vip, network, services: list, err, warn) -> None:
    """The external VIP: TLS on (required there), an address of its network that is neither the
    VIP nor (checked with the controllers) a node's, of the VIP's family (one VRRP family per
    segment), its own VRRP router id, and only TLS listeners public."""
    G = GROUP
    if not data.get("external_vip") or "external_vip" in bad:
        for key in EXTERNAL_KEYS:
            if data.get(key) is not None and "external_vip" not in bad:
                warn(G, key, "has no effect without external_vip", f"set external_vip, or remove {key}")
        return
    ext = ipaddress.ip_address(data["external_vip"])
    if not data["haproxy_tls"] and "haproxy_tls" not in bad:
        err(G, "external_vip", "TLS required on it, and haproxy_tls is False",
            "set haproxy_tls True (haproxy_tls_pem naming both VIPs), or external_vip None")
    if vip and ext == vip:
        err(G, "external_vip", f"{ext} is the internal VIP", "give the external VIP an address of its own (external_network)")
    elif vip and ext.version != vip.version:
        err(G, "external_vip", f"{ext} is IPv{ext.version}, the VIP IPv{vip.version}", "use an external VIP of the VIP's family")
    ext_key = "external_network" if data.get("external_network") else "internal_network"
    ext_net = ipaddress.ip_network(data[ext_key], strict=False) if data.get(ext_key) and ext_key not in bad else None
    if ext_net and (reason := _outside(ext, ext_net, ext_key)):
        fix = f"pick a free address in {ext_net}" + ("" if ext_key == "external_network" else ", or set external_network to its subnet")
        err(G, "external_vip", f"{ext} {reason}", fix)
    rid, internal = data["keepalived_external_router_id"], data["keepalived_virtual_router_id"]
    if "keepalived_external_router_id" in bad:
        pass  # the schema said why
    elif rid is None:
        err(G, "keepalived_external_router_id", "missing: the external VIP needs a VRRP instance of its own",
            f"set keepalived_external_router_id to an id in 1-255 no VRRP router on the segment uses, not {internal} (keepalived_virtual_router_id)")
    elif rid == internal:
        err(G, "keepalived_external_router_id", f"{rid} is also keepalived_virtual_router_id: the two VIPs need VRRP instances of distinct ids",
            f"set keepalived_external_router_id to another id in 1-255, e.g. {internal % 255 + 1}, no VRRP router on the segment uses")
    for svc in services:
        if svc.public and not svc.takes_tls(True):
            err(G, f"services.{svc.name}.public", f"{svc.name} is public but not served over TLS ({'tls False' if not svc.tls else 'mode ' + svc.mode}): the external VIP takes TLS only",
                f"set services.{svc.name}.public False")


def _outside(ip, network, key: str = "internal_network") -> str | None:
    """Why an address cannot be a controller's or the VIP in `network` (site key `key`), or None."""
    if ip.version != network.version or ip not in network:
        return f"is outside {key} {network}"
    if ip == network.network_address:
        return f"is the network address of {network}"
    if network.version == 4 and ip == network.broadcast_address:
        return f"is the broadcast address of {network}"
    return None


def _check_services(data: dict, err, warn) -> list:
    """The enabled listeners of the site; each `services` entry checked field by field."""
    G = GROUP
    known = {s.name for s in CATALOGUE}
    entries = data.get("services") or {}
    ok = True
    for name, fields in entries.items():
        if name not in known and "port" in fields and (hint := _close(name, known, 0.85)):
            warn(G, f"services.{name}", f"not in the catalogue: taken for a site service of its own{hint}", "rename it if it was meant to change a catalogue entry")
        for field, value in fields.items():
            if field in ("port", "backend_port") and name in PORT_KEYS:
                err(G, f"services.{name}.{field}", f"the {name} listener's port is {PORT_KEYS[name]}'s (one source for the daemon and its listener)",
                    f"set {PORT_KEYS[name]} instead")
                ok = False
            elif field in SERVICE:
                for k, message, expect in problems(f"services.{name}.{field}", SERVICE[field].kind, value):
                    err(G, k, message, f"set {k} to {expect} ({SERVICE[field].meaning})")
                    ok = False
    if not ok:
        return []
    try:
        return merge_catalogue(service_overrides(data), legacy_enabled=data["haproxy_legacy_services"])
    except CatalogueError as exc:
        err(G, "services", str(exc), "correct the services entry (fields: config/catalogue.py)")
        return []


MONITORING_KEYS = tuple(k for k in DEFAULTS if k.startswith("monitoring_") and k != "monitoring_enabled")


def _check_monitoring(data: dict, site_keys, bad: set, warn) -> None:
    """Monitoring: off, the keys a site set say they do nothing; on, an evaluation interval
    too long for the scrapes. Its ports are checked with the others (_check_ports)."""
    G = GROUP
    if "monitoring_enabled" in bad:
        return
    if not data["monitoring_enabled"]:
        for key in MONITORING_KEYS:
            if key in site_keys and key not in bad:
                warn(G, key, "has no effect while monitoring_enabled is False", f"set monitoring_enabled True, or remove {key}")
        return
    if data["monitoring_evaluation_interval"] > data["monitoring_scrape_interval"] * 4 and "monitoring_evaluation_interval" not in bad:
        warn(G, "monitoring_evaluation_interval", f"{data['monitoring_evaluation_interval']} s between evaluations of "
             f"{data['monitoring_scrape_interval']} s scrapes: an alert is seen late", "evaluate at most every 4 scrapes")


def _check_ports(data: dict, site_keys, services: list, err) -> None:
    """No two daemons on one port of a node's address; no VIP listener on a port a daemon
    holds on every address (sshd, epmd, Erlang distribution, Galera replication)."""
    G = GROUP
    owners = [(port, owner, None, wild) for port, owner, wild in FIXED_PORTS]
    owners.append((data["rabbitmq_port"] + DIST_PORT_OFFSET, "the Erlang distribution (rabbitmq_port + 20000)", None, True))
    # The site's own keys last: a clash names the key the site set, not the default it hit.
    keys = {**NODE_PORT_KEYS, **(MONITORING_PORT_KEYS if data["monitoring_enabled"] else {}),
            **({amqp_tls.PORT_KEY: "RabbitMQ AMQP over TLS"} if data[amqp_tls.SWITCH] is True else {})}
    for key, owner in sorted(keys.items(), key=lambda item: item[0] in site_keys):
        if key == "mariadb_check_port" and data["mariadb_check_method"] != "httpchk":
            continue
        owners.append((data[key], owner, key, False))
    taken: dict[int, str] = {}
    for port, owner, key, _ in owners:
        if port in taken and key:
            err(G, key, f"port {port} is also {taken[port]}'s on the node address", "pick a port no other daemon of the node uses (see config/preflight.py FIXED_PORTS)")
        taken.setdefault(port, owner)
    everywhere = {port: owner for port, owner, _, wild in owners if wild}
    for svc in services:
        for field, port in svc.vip_ports(data["haproxy_tls"]):
            if port in everywhere:
                err(G, f"services.{svc.name}.{field}", f"port {port} is {everywhere[port]}'s on every address, the VIP too", "give the listener another port")


def _close(key: str, known, cutoff: float = 0.6) -> str:
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=cutoff)
    return f" (did you mean {match[0]}?)" if match else ""


def print_report(report: Report, stream=sys.stderr) -> None:
    for p in report.warnings + report.errors:
        print(p, file=stream)


def main(argv: list[str]) -> int:
    from config.site import InventoryError, load_groups

    if len(argv) != 1:
        print("usage: python -m config.preflight INVENTORY", file=sys.stderr)
        return 2
    try:
        hosts, group_data, others = load_groups(argv[0])
    except InventoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report = check(hosts, group_data, others=others)
    print_report(report)
    if report.errors:
        print(f"preflight: {len(report.errors)} error(s); nothing was touched", file=sys.stderr)
        return 1
    print(f"preflight: ok ({len(hosts)} controllers, {len(report.warnings)} warning(s))", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
