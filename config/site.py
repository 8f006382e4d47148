"""The site model: an inventory's controllers and data, with defaults applied.

build_site() turns the inventory shape (a list of (name, host data) and the group data) into
a Site that every template and operation reads. It assumes preflight passed; run
config.preflight.check() first.
"""

from __future__ import annotations

import ipaddress
import re
import runpy
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from config import amqp_tls
from config.catalogue import NO_L7_RETRY, PORT_KEYS, SET_XFP_IF_SSL, Service, merge_catalogue, to_https
from config.defaults import DEFAULTS

# Nested site data merged key by key with its defaults (config.schema checks each item).
MERGED = ("haproxy_timeouts", "sysctl")


GROUP = "controllers"


@dataclass(frozen=True)
class Controller:
    name: str
    address: str
    vrrp_priority: int
    tls_node_pem: str | None = None  # galera_tls / rabbitmq_tls: its PEM file on this machine (host key)


@dataclass(frozen=True)
class Listener:
    """One rendered HAProxy `listen` section."""

    name: str
    bind: str  # on the VIP; with TLS `... ssl crt PEM`
    mode: str
    balance: str | None
    forwardfor: bool
    options: tuple[str, ...]
    timeouts: tuple[tuple[str, str], ...]
    http_request: tuple[str, ...]
    servers: tuple[str, ...]
    redirect_bind: str | None = None  # the plain port that only redirects to https (TLS only)
    # A public listener with an external VIP: the same binds on that address (always TLS).
    external_binds: tuple[str, ...] = ()
    # An admin listener: the only sources HAProxy accepts (admin_networks, the controllers).
    allow_from: tuple[str, ...] = ()
    http_after_response: tuple[str, ...] = ()  # `http-after-response ...` rules (HSTS on an HTTPS listener: also on HAProxy's own answers, a 503 included)


def hsts(max_age: int) -> str:
    """The HSTS rule of an HTTPS listener: on answers over TLS only (a plain port only redirects)."""
    return f'set-header Strict-Transport-Security "max-age={max_age}" if {{ ssl_fc }}'


@dataclass
class Site:
    controllers: list[Controller]
    data: dict
    services: list[Service] = field(default_factory=list)

    def __getitem__(self, key):
        return self.data[key]

    def controller(self, name: str) -> Controller:
        for c in self.controllers:
            if c.name == name:
                return c
        raise KeyError(f"{name} is not a controller of this site")

    def peers(self, name: str) -> list[Controller]:
        return [c for c in self.controllers if c.name != name]

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.data["internal_network"], strict=False).prefixlen

    @property
    def external_prefixlen(self) -> int:
        """The external VIP's prefix length: external_network's, else internal_network's."""
        net = self.data["external_network"] or self.data["internal_network"]
        return ipaddress.ip_network(net, strict=False).prefixlen

    @property
    def external_vip_interface(self) -> str:
        return self.data["external_vip_interface"] or self.data["vip_interface"]

    @property
    def listeners(self) -> list[Listener]:
        return [self._listener(s) for s in self.services]

    @property
    def writer(self) -> str:
        """The controller that takes the database writes while it serves: the active server of
        the database listener (active_backup), the others its `backup` servers. The first of
        the inventory."""
        return self.controllers[0].name

    @property
    def db_listener(self) -> str:
        """The database listener: the (first) one whose servers are active/backup, one writer."""
        for svc in self.services:
            if svc.active_backup:
                return svc.name
        raise KeyError("no listener of this site is active_backup (the database listener: catalogue's mariadb)")

    def _listener(self, svc: Service) -> Listener:
        d = self.data
        options = list(svc.options)
        check = f"check inter {d['haproxy_check_inter']} rise {d['haproxy_check_rise']} fall {svc.fall or d['haproxy_check_fall']}"
        timeouts = svc.timeouts
        if svc.name == "mariadb":
            check = f"check inter {d['mariadb_check_inter']} rise {d['haproxy_check_rise']} fall {d['mariadb_check_fall']}"
            if d["mariadb_check_timeout"] != d["haproxy_timeouts"].get("check"):
                timeouts += (("check", d["mariadb_check_timeout"]),)
            if d["mariadb_connect_timeout"] != d["haproxy_timeouts"].get("connect"):
                timeouts += (("connect", d["mariadb_connect_timeout"]),)
            if d["mariadb_check_method"] == "mysql-check":
                options.append(f"mysql-check user {d['mariadb_check_user']} post-41")
            else:
                options.append("httpchk")
                check += f" port {d['mariadb_check_port']}"
        port = svc.backend_port or svc.port
        servers = []
        for c in self.controllers:
            line = f"server {c.name} {c.address}:{port} {check}"
            if svc.active_backup:
                # One writer (docs/design.md, "Why the database has one writer"): tcp mode has no
                # cookies, so sessions stay where they were opened. When the first server
                # comes back, close the sessions still open on a backup; when a server is
                # marked down (no longer Synced), close its own: every client reconnects to
                # the one server that takes new sessions, never two at once.
                line += " on-marked-up shutdown-backup-sessions" if c.name == self.writer else " backup"
                line += " on-marked-down shutdown-sessions"
            if d["haproxy_error_limit"]:
                line += f" observe layer4 error-limit {d['haproxy_error_limit']} on-error mark-down"
            servers.append(line)
        bind, redirect_bind, http_request = self._front(svc)
        if svc.mode == "http" and svc.forwardfor and d["haproxy_retry_on"]:
            # first (after a redirect): the article's rules stay as they are, at the end
            at = 1 if svc.https_port and self._tls(svc) else 0
            http_request = http_request[:at] + (NO_L7_RETRY,) + http_request[at:]
        return Listener(
            name=svc.name,
            bind=bind,
            mode=svc.mode,
            balance=svc.balance,
            forwardfor=svc.forwardfor,
            options=tuple(options),
            timeouts=timeouts,
            http_request=http_request,
            servers=tuple(servers),
            redirect_bind=redirect_bind,
            external_binds=self._external_binds(svc),
            allow_from=self.admin_sources() if svc.admin else (),
            http_after_response=(hsts(d["haproxy_hsts_max_age"]),) if self._tls(svc) and d["haproxy_hsts_max_age"] else (),
        )

    def _front(self, svc: Service) -> tuple[str, str | None, tuple[str, ...]]:
        """A listener's bind on the VIP, its redirect-only bind and its http-request rules.
        With haproxy_tls an HTTP listener takes TLS (`ssl crt`) and tells its servers so
        (X-Forwarded-Proto https, after the article's rules); one with an https_port takes TLS
        there and redirects its plain port to https. Without TLS: the catalogue's, unchanged."""
        d = self.data
        bind, redirect_bind = self._binds(svc, d["vip"])
        if not self._tls(svc):
            return bind, redirect_bind, svc.http_request
        rules = svc.http_request + ((SET_XFP_IF_SSL,) if svc.http_request[-1:] != (SET_XFP_IF_SSL,) else ())
        if svc.https_port:
            return bind, redirect_bind, (to_https(svc.https_port), *rules)
        return bind, redirect_bind, rules

    def admin_sources(self) -> tuple[str, ...]:
        """Who may reach the operators' listeners: the controllers' addresses and the VIP (the
        holder's own connections to it come from it), then admin_networks."""
        return (*(c.address for c in self.controllers), self.data["vip"], *(self.data["admin_networks"] or ()))

    def _tls(self, svc: Service) -> bool:
        """Whether the listener takes TLS (haproxy_tls, its `tls` field, mode http)."""
        return svc.takes_tls(self.data["haproxy_tls"])

    def _binds(self, svc: Service, address: str) -> tuple[str, str | None]:
        """The listener's bind on `address` and its redirect-only bind there (TLS only)."""
        if not self._tls(svc):
            return f"{address}:{svc.port}", None
        tls = f"ssl crt {self.data['haproxy_tls_pem_path']}"
        if svc.https_port:
            return f"{address}:{svc.https_port} {tls}", f"{address}:{svc.port}"
        return f"{address}:{svc.port} {tls}", None

    def _external_binds(self, svc: Service) -> tuple[str, ...]:
        """A public listener's binds on the external VIP: those of the VIP, on that address.
        Preflight lets only TLS listeners be public there (TLS required on the external VIP),
        so the listener's http-request rules (the https redirect) serve both addresses."""
        ext = self.data["external_vip"]
        if not (ext and svc.public and self._tls(svc)):
            return ()
        return tuple(b for b in self._binds(svc, ext) if b)

    # Strings the OpenStack services put in their own configs (secrets as placeholders).
    def client_strings(self, secrets: dict[str, str]) -> dict[str, str]:
        d = self.data
        pw = secrets.get("rabbitmq_password", "")
        # the plain listener's URL, or the TLS one's once it is closed (rabbitmq_amqp_plain False)
        port = amqp_tls.url_port(d)
        hosts = ",".join(f"{d['rabbitmq_user']}:{pw}@{c.name}:{port}" for c in self.controllers)
        return {
            "memcached_servers": ",".join(f"{c.name}:{d['memcached_port']}" for c in self.controllers),
            "transport_url": f"rabbit://{hosts}/{d['rabbitmq_vhost']}",
            "database_connection": (
                f"mysql+pymysql://<service>:<password>@{d['vip']}:{d['mariadb_port']}/<database>"
            ),
            # oslo.db's [database] option: each session's reads wait until this node has applied
            # every write the cluster committed before them (Galera's causality check). Without
            # it, the soak read stale data through the VIP when a paused writer came back
            # (docs/soak.md); openstack-k8s-operators sets the same.
            "mysql_wsrep_sync_wait": str(d["services_wsrep_sync_wait"]),
            # oslo.messaging's [oslo_messaging_rabbit] option (its default 60 s): the brokers'
            # heartbeat timeout (rabbitmq_heartbeat), so a service leaves a silent broker as soon
            # as the broker's peers would drop the service's connection
            "heartbeat_timeout_threshold": str(d["rabbitmq_heartbeat"]),
            **amqp_tls.client_strings(d, [c.name for c in self.controllers], pw),
        }


def merged_data(group_data: dict) -> dict:
    """The defaults with a site's data applied; the nested dicts of schema.MERGED
    (haproxy_timeouts, sysctl) key by key, so a site changes a value and keeps the others."""
    data = {k: (v.copy() if isinstance(v, dict) else v) for k, v in DEFAULTS.items()}
    for key, value in group_data.items():
        if key in MERGED and isinstance(value, dict):
            data[key] = {**DEFAULTS[key], **value}
        else:
            data[key] = value
    return data


def service_overrides(data: dict) -> dict:
    """The site's `services` data, plus the listener ports a site key holds (catalogue
    PORT_KEYS: mariadb_port, rabbitmq_management_port), their only source."""
    services = data.get("services") or {}
    if not isinstance(services, dict):
        return services
    out = {name: {"port": data[key]} for name, key in PORT_KEYS.items()}
    for name, fields in services.items():
        out[name] = {**fields, **out[name]} if name in out and isinstance(fields, dict) else fields
    return out


def build_site(hosts: list[tuple[str, dict]], group_data: dict) -> Site:
    data = merged_data(group_data)
    controllers = [
        Controller(name=name, address=hd["address"], vrrp_priority=int(hd["vrrp_priority"]),
                   tls_node_pem=hd.get("tls_node_pem"))
        for name, hd in hosts
    ]
    services = merge_catalogue(service_overrides(data), legacy_enabled=data["haproxy_legacy_services"])
    return Site(controllers=controllers, data=data, services=services)


class InventoryError(ValueError):
    """An inventory file that cannot be read; the message names the file and the cause."""


def inventory_shape(inventory, file_groups=None) -> tuple[list[tuple[str, dict]], dict]:
    """The (hosts, group data) of a loaded pyinfra inventory: the same shape load_inventory reads.

    pyinfra merges hosts of the same name into one; the inventory file pyinfra was given
    still lists each, so preflight sees and refuses the duplicate. `file_groups`:
    that file as read_inventory_file() read it already (the file is code: read once a run)."""
    hosts = [(h.name, dict(inventory.get_host_data(h.name))) for h in inventory.get_group(GROUP)]
    groups = read_inventory_file(sys.argv) if file_groups is None else file_groups
    names = [name for name, _ in groups[0]] if groups else []
    if names and sorted(set(names)) == sorted(n for n, _ in hosts) and len(names) > len(hosts):
        data = dict(hosts)
        hosts = [(n, data[n]) for n in names]
    return hosts, dict(inventory.get_group_data(GROUP))


def inventory_others(inventory, file_groups=None) -> dict[str, tuple[list[tuple[str, dict]], dict]]:
    """The groups of a loaded pyinfra inventory besides `controllers`, as load_groups reads
    them: from the inventory file on the pyinfra command line (each group's own host data),
    else from pyinfra's groups (host data merged). Connector groups (@fake...) are not ours.
    `file_groups`: as inventory_shape's."""
    groups = read_inventory_file(sys.argv) if file_groups is None else file_groups
    if groups:
        return groups[2]
    names = set(inventory.groups) | {g for g, d in inventory.group_data.items() if d}
    return {
        g: ([(h.name, dict(inventory.get_host_data(h.name))) for h in inventory.groups.get(g, [])],
            dict(inventory.get_group_data(g)))
        for g in sorted(names) if g != GROUP and not g.startswith("@") and g != "all"
    }


def read_inventory_file(argv: list[str]) -> tuple:
    """load_groups() of the inventory file on a pyinfra command line; () for another program,
    or an inventory that cannot be read (pyinfra's own groups stand then)."""
    path = inventory_path(argv)
    try:
        return load_groups(path) if path else ()
    except InventoryError:
        return ()


def inventory_path(argv: list[str]) -> str | None:
    """The inventory file on a pyinfra command line (its first existing .py argument), else None."""
    if not argv or not re.search(r"(^|/)pyinfra(/__main__\.py)?$", argv[0]):
        return None
    return next((a for a in argv[1:] if a.endswith(".py") and Path(a).is_file()), None)


def _where(path, exc: BaseException) -> str:
    """file:line of the innermost frame of the inventory file itself, else the file."""
    line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == Path(path).resolve():
            line = frame.lineno
    return f"{path}:{line}" if line else str(path)


def load_inventory(path: str | Path) -> tuple[list[tuple[str, dict]], dict]:
    """Read an inventory file offline (no SSH): its `controllers` (hosts, group data).

    Anything wrong (the file raises, does not parse, or `controllers` has another shape)
    is an InventoryError of one line: file[:line], what is wrong, the shape expected."""
    return load_groups(path)[:2]


def is_inventory_group(name: str, value) -> bool:
    """pyinfra_cli.inventory's rule for a module-level variable of an inventory file that pyinfra
    takes as a group (3.x): a public name, a list of hosts or a tuple (hosts, data), each host a
    string or a (name, data) tuple. Written here, not imported: importing pyinfra_cli patches the
    whole process for gevent (pyinfra_cli/__init__.py: monkey.patch_all()), which turned the lab
    tools' threads (the soak's workloads, the benches' clients) into greenlets and once hung
    the soak; tests/unit/test_site.py holds it to pyinfra's own."""
    if name.startswith("_") or not isinstance(value, (list, tuple)):
        return False
    hosts = value[0] if isinstance(value, tuple) and value else value
    try:  # as pyinfra's: whatever the tuple's first item iterates over (a string: its characters)
        return all(isinstance(item, (str, tuple)) for item in hosts)
    except TypeError:
        return False


def load_groups(path: str | Path) -> tuple[list[tuple[str, dict]], dict, dict]:
    """load_inventory's (hosts, group data), and every other group pyinfra reads from the
    file (pyinfra_cli.inventory's own rule: a public list, or tuple of (hosts, data)) as
    {group: (hosts, group data)}: preflight refuses them (deploy.py would run on their hosts,
    and nothing reads their data)."""
    try:
        namespace = runpy.run_path(str(path))
    except (Exception, SystemExit) as exc:  # an inventory is code: whatever it raises is one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InventoryError(f"{_where(path, exc)}: cannot be read as an inventory ({type(exc).__name__}: {first})") from None
    if GROUP not in namespace:
        raise InventoryError(f"{path}: defines no `{GROUP}` group; see inventories/prod.py for the shape")
    hosts, group_data = _group_shape(path, GROUP, namespace[GROUP])
    others = {}
    for name, value in namespace.items():
        if name != GROUP and is_inventory_group(name, value):
            try:
                others[name] = _group_shape(path, name, value)
            except InventoryError:
                others[name] = ([], {})  # pyinfra reads it some way: refused as a group all the same
    return hosts, group_data, others


def _group_shape(path, name: str, group) -> tuple[list[tuple[str, dict]], dict]:
    shape = "expected controllers = ([(name, {host data}), ...], {group data}), see inventories/prod.py"
    if isinstance(group, tuple) and len(group) == 2 and isinstance(group[1], dict):
        hosts, group_data = group
    else:
        hosts, group_data = group, {}
    if not isinstance(hosts, (list, tuple)):
        raise InventoryError(f"{path}: `{name}` is {type(hosts).__name__}, not a list of hosts; {shape}")
    out = []
    for i, h in enumerate(hosts):
        if isinstance(h, str):
            h = (h, {})
        if not isinstance(h, (list, tuple)) or len(h) != 2 or not isinstance(h[0], str):
            raise InventoryError(f"{path}: `{name}` host #{i + 1} is {h!r:.60}, not (name, {{host data}}); {shape}")
        if not isinstance(h[1], dict):
            raise InventoryError(f"{path}: {h[0]}: the host data is {type(h[1]).__name__}, not a dict; {shape}")
        out.append((h[0], dict(h[1])))
    return out, dict(group_data)
