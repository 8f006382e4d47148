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

from config.catalogue import CatalogueError, merge_catalogue
from config.defaults import DEFAULTS, HOST_KEYS, PYINFRA_KEY_PREFIXES
from config.secrets import SECRETS, SecretsError, env_name, load_secrets
from config.site import GROUP, merged_data, service_overrides

CHOICES = {
    "mariadb_check_method": ("mysql-check", "httpchk"),
    "galera_sst_method": ("mariabackup", "rsync"),
    "rabbitmq_queue_type": ("quorum", "mirrored"),
    "rabbitmq_partition_handling": ("pause_minority", "autoheal", "ignore"),
    "mariadb_innodb_flush_log_at_trx_commit": (0, 1, 2),
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

    def err(where, key, message, fix):
        out.append(Problem("error", where, key, message, fix))

    def warn(where, key, message, fix):
        out.append(Problem("warning", where, key, message, fix))

    G = GROUP
    # Unknown keys: a typo must not pass silently.
    for key in group_data:
        if key not in DEFAULTS and not _is_ours(key):
            hint = _close(key, DEFAULTS)
            err(G, key, "unknown key in the site data", f"remove it{hint} (known keys: config/defaults.py)")
    for name, hd in hosts:
        for key in hd:
            if key not in HOST_KEYS and key not in DEFAULTS and not _is_ours(key):
                err(name, key, "unknown key in the host data", f"remove it{_close(key, HOST_KEYS)}")
            elif key in DEFAULTS:
                err(name, key, "a site-wide key set on one host", f"move {key} to the controllers group data")
        for key in HOST_KEYS:
            if key not in hd:
                err(name, key, "missing", f"set {key} in the host data ({HOST_KEYS[key]})")

    data = merged_data(group_data)

    # Network and VIP.
    network = None
    for key in ("internal_network", "vip"):
        if not data.get(key):
            err(G, key, "missing", f"set {key} in the controllers group data (see inventories/prod.py)")
    if data.get("internal_network"):
        try:
            network = ipaddress.ip_network(data["internal_network"], strict=False)
        except ValueError:
            err(G, "internal_network", f"{data['internal_network']!r} is not a network", "write it as address/prefix, e.g. 100.2.30.0/24")
    vip = None
    if data.get("vip"):
        try:
            vip = ipaddress.ip_address(data["vip"])
        except ValueError:
            err(G, "vip", f"{data['vip']!r} is not an IP address", "write the VIP as a plain address, e.g. 100.2.30.40")
    if vip and network and vip not in network:
        err(G, "vip", f"{vip} is outside the controllers' subnet {network}", f"pick a free address in {network}")

    # Controllers: names, addresses, priorities.
    names = Counter(name for name, _ in hosts)
    for name, n in names.items():
        if n > 1:
            err(name, "name", f"{n} controllers share this name", "give each controller its own hostname")
    seen_addr: dict[str, str] = {}
    for name, hd in hosts:
        addr = hd.get("address")
        if not addr:
            continue
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            err(name, "address", f"{addr!r} is not an IP address", "write the node's internal address")
            continue
        if addr in seen_addr:
            err(name, "address", f"{addr} is also the address of {seen_addr[addr]}", "give each controller its own address")
        seen_addr[addr] = name
        if vip and ip == vip:
            err(name, "address", f"{addr} is the VIP", "the VIP must be an address no node has; change vip or the node address")
        if network and ip not in network:
            err(name, "address", f"{addr} is outside internal_network {network}", "fix the address or internal_network")
    prios: dict[int, str] = {}
    for name, hd in hosts:
        prio = hd.get("vrrp_priority")
        if prio is None:
            continue
        if not isinstance(prio, int) or not 1 <= prio <= 254:
            err(name, "vrrp_priority", f"{prio!r} is not an integer in 1-254", "set a distinct priority in 1-254")
        elif prio in prios:
            err(name, "vrrp_priority", f"{prio} is also the priority of {prios[prio]}", "give each controller a distinct priority")
        else:
            prios[prio] = name

    # keepalived.
    vrid = data["keepalived_virtual_router_id"]
    if not isinstance(vrid, int) or not 1 <= vrid <= 255:
        err(G, "keepalived_virtual_router_id", f"{vrid!r} is outside 1-255", "pick an id in 1-255 that no other VRRP router on the segment uses")
    elif vrid == 51:
        warn(G, "keepalived_virtual_router_id", "51 is keepalived's and kolla's default, the usual collision on a shared segment", "pick an id no other VRRP router on the segment uses")
    if not data.get("vip_interface"):
        err(G, "vip_interface", "missing", "name the interface that carries the internal network, e.g. enp8s0f0")

    # Cluster size: Galera and RabbitMQ run on every controller.
    n = len(hosts)
    if n < 3:
        err(G, "controllers", f"{n} Galera/RabbitMQ member(s): one failure loses quorum", "list at least 3 controllers")
    elif n % 2 == 0:
        warn(G, "controllers", f"{n} Galera/RabbitMQ members: an even split leaves no majority", "use an odd number of controllers")

    # Listeners.
    try:
        services = merge_catalogue(service_overrides(data), legacy_enabled=data["haproxy_legacy_services"])
    except CatalogueError as exc:
        err(G, "services", str(exc), "correct the services entry (fields: config/catalogue.py)")
        services = []
    by_port: dict[int, str] = {}
    for svc in services:
        if not isinstance(svc.port, int) or not 1 <= svc.port <= 65535:
            err(G, f"services.{svc.name}.port", f"{svc.port!r} is not a TCP port", "use a port in 1-65535")
        elif svc.port in by_port:
            err(G, f"services.{svc.name}.port", f"port {svc.port} is also the port of {by_port[svc.port]}", "give one of them another port, or disable one")
        else:
            by_port[svc.port] = svc.name

    # Database health check: method and port must agree.
    method, cport, dbport = data["mariadb_check_method"], data["mariadb_check_port"], data["mariadb_port"]
    if method == "mysql-check" and cport != dbport:
        err(G, "mariadb_check_port", f"mysql-check talks MySQL on the database port {dbport}, not {cport}", f"set mariadb_check_port to {dbport}, or use mariadb_check_method httpchk")
    if method == "httpchk" and cport == dbport:
        err(G, "mariadb_check_port", f"an HTTP check cannot run on the database port {dbport}", "give the HTTP check its own port, e.g. 9200")

    for key, allowed in CHOICES.items():
        if data.get(key) not in allowed:
            err(G, key, f"{data.get(key)!r} is not one of {', '.join(map(str, allowed))}", f"set {key} to one of them")

    # Secrets.
    if secrets is None:
        try:
            secrets = load_secrets(data.get("secrets_file"))
        except SecretsError as exc:
            err(G, "secrets_file", str(exc), "fix the file: a JSON object of secret name to value")
            secrets = {}
    where = data.get("secrets_file") or "the environment"
    for name in SECRETS:
        if not secrets.get(name):
            (err if secrets_required else warn)(G, name, f"secret missing (looked in {where} and ${env_name(name)})", f"add {name} to the secrets file or set {env_name(name)}")
    vrrp = secrets.get("vrrp_auth_pass")
    if vrrp and len(vrrp) > 8:
        err(G, "vrrp_auth_pass", f"{len(vrrp)} characters: keepalived silently uses only the first 8", "use a VRRP password of at most 8 characters")

    return Report(out)


def _close(key: str, known) -> str:
    import difflib

    match = difflib.get_close_matches(key, list(known), n=1)
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
