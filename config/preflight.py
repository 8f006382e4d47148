"""Preflight: refuse a wrong site before any host is touched.

check() returns every problem at once, each one line naming the host (or the controllers
group, for site-wide data), the key and the fix. Errors stop render and deploy; warnings are
printed and do not.

    python -m config.preflight inventories/prod.py
"""

from __future__ import annotations

import ipaddress
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

from config import tls
from config.catalogue import CATALOGUE, PORT_KEYS, CatalogueError, merge_catalogue
from config.defaults import DEFAULTS, DIST_PORT_OFFSET, FIXED_PORTS, HOST_KEYS, PYINFRA_KEY_PREFIXES
from config.files import DBCHECK, SST_ACCOUNT
from config.schema import CONTROL, HOST, HOST_NAME, SECRET, SERVICE, SITE, problems
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


@dataclass(frozen=True)
class Problem:
    level: str  # "error" or "warning"
    where: str  # a host name, or the controllers group for site-wide data
    key: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.level}: {self.where}: {self.key}: {self.message}; fix: {self.fix}"


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


def check(
    hosts: list[tuple[str, dict]], group_data: dict, secrets: dict | None = None, secrets_required: bool = True
) -> Report:
    """Every problem of a site. `secrets` are the values found (None: load them).

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
    # Unknown keys: a typo must not pass silently. Known keys: the schema's type and range.
    for key, value in group_data.items():
        if key in SITE:
            for k, message, expect in problems(key, SITE[key].kind, value):
                err(G, k, message, f"set {k} to {expect} ({SITE[key].meaning})")
        elif not _is_ours(key):
            hint = _close(key, DEFAULTS)
            err(G, key, "unknown key in the site data", f"remove it{hint} (known keys: config/defaults.py)")
    for name, hd in hosts:
        if (reason := HOST_NAME.why(name)) is not None:
            err(name, "name", reason, f"name the controller by its hostname: {HOST_NAME.expect} (RabbitMQ's node is rabbit@<name>)")
        for key, value in hd.items():
            if key in HOST:
                for k, message, expect in problems(key, HOST[key].kind, value):
                    err(name, k, message, f"set {k} to {expect}")
            elif key not in DEFAULTS and not _is_ours(key):
                err(name, key, "unknown key in the host data", f"remove it{_close(key, HOST_KEYS)}")
            elif key in DEFAULTS:
                err(name, key, "a site-wide key set on one host", f"move {key} to the controllers group data")
        for key in HOST_KEYS:
            if key not in hd:
                err(name, key, "missing", f"set {key} in the host data ({HOST_KEYS[key]})")

    data = merged_data({k: v for k, v in group_data.items() if k not in bad})

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
    for name, hd in hosts:
        target = hd.get("ssh_hostname")
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

    # Listeners: each entry's fields by the schema, then the catalogue merged.
    services = _check_services(data, err, warn) if "services" not in bad else []
    _check_external_vip(data, bad, vip, network, services, err, warn)
    by_port: dict[int, str] = {}
    for svc in services:
        for field, port in vip_ports(svc, data):
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
        if not value:
            fix = f"add {name} to the secrets file or set {env_name(name)}"
            if name in NEEDED_WHEN:
                fix += f", or set {NEEDED_WHEN[name]}: False"
            (err if secrets_required else warn)(G, name, f"secret missing (looked in {where} and ${env_name(name)})", fix)
        elif name == "vrrp_auth_pass" and len(value) > 8:
            err(G, name, f"{len(value)} characters: keepalived silently uses only the first 8", "use a VRRP password of at most 8 characters")
        elif (reason := SECRET[name].kind.why(value)) is not None:
            # only the PEM's own reasons never show the value; the others' are written here
            what = reason if name == "haproxy_tls_pem" else "holds a control character" if CONTROL.search(value) else f"is not {SECRET[name].expect}"
            err(G, name, f"the secret {what} ({len(value)} characters; value not shown)", f"choose a {name} of {SECRET[name].expect}")
        elif name == tls.SECRET:
            _check_certificate(value, data, err, warn)

    return Report(out)


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
        left = tls.days_left(until, now or datetime.now(timezone.utc))
        if left < data["haproxy_tls_expiry_warn_days"]:
            warn(GROUP, tls.SECRET, f"the certificate expires in {left:.0f} days ({until:%Y-%m-%d %H:%M} UTC)",
                 f"renew it: {tls.FIX}")


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


def vip_ports(svc, data: dict) -> list[tuple[str, int]]:
    """The (field, port) pairs a listener binds on the VIP: its port, and its https_port with TLS."""
    tls = svc.takes_tls(data["haproxy_tls"]) and svc.https_port
    return [("port", svc.port)] + ([("https_port", svc.https_port)] if tls else [])


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


def _check_ports(data: dict, site_keys, services: list, err) -> None:
    """No two daemons on one port of a node's address; no VIP listener on a port a daemon
    holds on every address (sshd, epmd, Erlang distribution, Galera replication)."""
    G = GROUP
    owners = [(port, owner, None, wild) for port, owner, wild in FIXED_PORTS]
    owners.append((data["rabbitmq_port"] + DIST_PORT_OFFSET, "the Erlang distribution (rabbitmq_port + 20000)", None, True))
    # The site's own keys last: a clash names the key the site set, not the default it hit.
    for key, owner in sorted(NODE_PORT_KEYS.items(), key=lambda item: item[0] in site_keys):
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
        for field, port in vip_ports(svc, data):
            if port in everywhere:
                err(G, f"services.{svc.name}.{field}", f"port {port} is {everywhere[port]}'s on every address, the VIP too", "give the listener another port")


def _close(key: str, known, cutoff: float = 0.6) -> str:
    import difflib

    match = difflib.get_close_matches(key, list(known), n=1, cutoff=cutoff)
    return f" (did you mean {match[0]}?)" if match else ""


def print_report(report: Report, stream=sys.stderr) -> None:
    for p in report.warnings + report.errors:
        print(p, file=stream)


def main(argv: list[str]) -> int:
    from config.site import InventoryError, load_inventory

    if len(argv) != 1:
        print("usage: python -m config.preflight INVENTORY", file=sys.stderr)
        return 2
    try:
        hosts, group_data = load_inventory(argv[0])
    except InventoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report = check(hosts, group_data)
    print_report(report)
    if report.errors:
        print(f"preflight: {len(report.errors)} error(s); nothing was touched", file=sys.stderr)
        return 1
    print(f"preflight: ok ({len(hosts)} controllers, {len(report.warnings)} warning(s))", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
