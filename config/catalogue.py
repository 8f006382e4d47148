"""The OpenStack service catalogue: every HAProxy listener, as data.

One entry per listener of the reference article, with its port and options exactly as
there. A site disables, overrides or adds entries through its `services` data:

    "services": {
        "glance_registry": {"enabled": False},          # drop one listener
        "horizon": {"port": 8080},                      # override a field
        "octavia_api": {"port": 9876},                  # a site service: port is enough
    }

Server lines are never typed: build_listeners() makes them from the inventory's controllers.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

# The X-Forwarded-Proto rules of the article, named once.
DEL_XFP_IF_SSL = "del-header X-Forwarded-Proto if { ssl_fc }"
DEL_XFP = "del-header X-Forwarded-Proto"
SET_XFP_IF_SSL = "set-header X-Forwarded-Proto https if { ssl_fc }"
# A listener with an https_port, on its plain port: to https on that port, whatever port the
# client's Host header names (`redirect scheme` keeps it: "Host: vip:80" became https://vip:80/).
def to_https(https_port: int) -> str:
    port = "" if https_port == 443 else f":{https_port}"
    return ("redirect location https://%[req.hdr(host),regsub(:[0-9]+$,)]" + port
            + "%[capture.req.uri] code 301 if !{ ssl_fc }")
# With haproxy_retry_on: a POST or PATCH is sent again only after a failed connection (it never
# reached the application); the idempotent methods also after an empty response.
NO_L7_RETRY = "disable-l7-retry if { method POST PATCH }"


@dataclass(frozen=True)
class Service:
    """One HAProxy `listen` section on the VIP."""

    name: str
    port: int | None = None  # None: the site key named by port_key holds it
    # The site key that holds this listener's port (and the daemon's on the controllers):
    # one source per datum, so the catalogue carries no port of its own for it.
    port_key: str | None = None
    backend_port: int | None = None  # port on the controllers; defaults to `port`
    mode: str = "http"
    balance: str | None = None
    http_request: tuple[str, ...] = ()  # `http-request ...` rules, in order
    options: tuple[str, ...] = ()  # `option ...` lines
    timeouts: tuple[tuple[str, str], ...] = ()  # listener-level `timeout` lines
    fall: int | None = None  # overrides haproxy_check_fall for this listener
    # One writer: the first controller takes all traffic, the others are `backup`.
    active_backup: bool = False
    # False puts the listener under the second `defaults` section, the one without
    # `option forwardfor` (the article's mariadb section).
    forwardfor: bool = True
    legacy: bool = False  # gone from current OpenStack releases; kept because the article has it
    # With haproxy_tls: the listener takes TLS on the VIP (`ssl crt`, mode http only), its
    # servers unchanged (TLS ends at HAProxy, as in kolla-ansible and openstack-ansible).
    tls: bool = True
    # With haproxy_tls: TLS on this port, and `port` only redirects http to https (horizon 443).
    https_port: int | None = None
    # Served on the external VIP too (site key external_vip), always with TLS. False for a
    # site's own service until the site says so: nothing is public by accident.
    public: bool = False
    # An operators' listener: HAProxy and the firewall let only admin_networks and the
    # controllers reach it (not every client network).
    admin: bool = False
    enabled: bool = True
    description: str = ""

    def takes_tls(self, haproxy_tls: bool) -> bool:
        """Whether the listener takes TLS on the VIP: the site's haproxy_tls, its `tls`, mode http."""
        return bool(haproxy_tls and self.tls and self.mode == "http")

    def vip_ports(self, haproxy_tls: bool) -> list[tuple[str, int]]:
        """The (field, port) pairs the listener binds on the VIP: its port, and its https_port
        when it takes TLS (takes_tls)."""
        tls = self.takes_tls(haproxy_tls) and self.https_port
        return [("port", self.port)] + ([("https_port", self.https_port)] if tls else [])


CATALOGUE: tuple[Service, ...] = (
    Service("rabbitmq_management", port_key="rabbitmq_management_port", tls=False, admin=True,
            description="the management API keeps http: an operator's tool, not an OpenStack API"),
    Service("keystone_internal", 5000, http_request=(DEL_XFP_IF_SSL,), public=True),
    Service(
        "keystone_admin", 35357, http_request=(DEL_XFP_IF_SSL,), legacy=True,
        description="Keystone v3 serves everything on 5000; the admin port is legacy",
    ),
    Service(
        "glance_registry", 9191, legacy=True,
        description="glance-registry was removed upstream (Queens deprecated, gone in Stein)",
    ),
    Service("glance_api", 9292, public=True),
    Service("nova_api", 8774, http_request=(DEL_XFP_IF_SSL,), public=True),
    Service("nova_metadata", 8775, http_request=(DEL_XFP_IF_SSL,),
            description="only the instances reach it, through neutron's metadata proxy: never public"),
    Service("placement_api", 8780, http_request=(DEL_XFP,), public=True),
    Service("nova_novncproxy", 6080, http_request=(DEL_XFP_IF_SSL, SET_XFP_IF_SSL), public=True),
    Service("neutron_server", 9696, public=True),
    Service("horizon", 80, balance="source", fall=2, http_request=(DEL_XFP_IF_SSL,), https_port=443, public=True),
    Service("cinder_api", 8776, http_request=(DEL_XFP_IF_SSL,), public=True),
    Service("heat_api", 8004, http_request=(DEL_XFP_IF_SSL,), public=True),
    Service("heat_api_cfn", 8000, http_request=(DEL_XFP_IF_SSL,), public=True),
    # Options of the database listener that depend on the health check are filled in by
    # config.site from the mariadb_check_* data.
    Service(
        "mariadb", port_key="mariadb_port", mode="tcp", active_backup=True, forwardfor=False,
        options=("tcplog", "tcpka"),
        timeouts=(("client", "3600s"), ("server", "3600s")),
    ),
)

FIELDS = {f.name for f in dataclasses.fields(Service)} - {"name", "port_key"}
# Listener ports a site key holds: {service name: site key} (config.site fills them in).
PORT_KEYS = {s.name: s.port_key for s in CATALOGUE if s.port_key}


class CatalogueError(ValueError):
    """A `services` entry of the site data that cannot be applied; the message says why."""


def _coerce(name: str, key: str, value):
    """Lists in data become tuples (the dataclass is frozen and hashable)."""
    if key == "timeouts" and isinstance(value, dict):
        return tuple(value.items())
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


def merge_catalogue(overrides: dict, legacy_enabled: bool = True) -> list[Service]:
    """The catalogue with a site's `services` data applied; only enabled services.

    Raises CatalogueError naming the service and key for an unknown field, or a new
    service without a port.
    """
    if not isinstance(overrides or {}, dict):
        raise CatalogueError(f"services: expected a dict of {{name: {{field: value}}}}, got {overrides!r}")
    by_name = {s.name: s for s in CATALOGUE}
    order = [s.name for s in CATALOGUE]
    for name, changes in (overrides or {}).items():
        if not isinstance(changes, dict):
            raise CatalogueError(f"services.{name}: expected a dict of fields, got {changes!r}")
        unknown = sorted(set(changes) - FIELDS)
        if unknown:
            raise CatalogueError(
                f"services.{name}: unknown field {unknown[0]!r}; known fields: {', '.join(sorted(FIELDS))}"
            )
        values = {k: _coerce(name, k, v) for k, v in changes.items()}
        if name in by_name:
            by_name[name] = dataclasses.replace(by_name[name], **values)
        else:
            if "port" not in values:
                match = difflib.get_close_matches(name, order, n=1)
                hint = f" (did you mean {match[0]}?)" if match else ""
                raise CatalogueError(
                    f"services.{name}: not in the catalogue{hint}; as a site service of its own it "
                    f"needs a 'port' (e.g. {{'port': 9876}})"
                )
            by_name[name] = Service(name=name, **values)
            order.append(name)
    services = [by_name[n] for n in order]
    return [s for s in services if s.enabled and (legacy_enabled or not s.legacy)]
