"""The site model as the lab sees it: the project's constants, read from the Site that
config/site.py builds from inventories/lab.py (the model the deploy renders every file from).

The drills, the lab tests and the benches take node addresses, the VIP, ports, accounts, paths
on the controllers and secret names from here, never from a copy: a change of a default in
config/defaults.py, of the catalogue or of the lab's subnet reaches them all. The lab's own
choices (its subnet, bridge, interface name, state directories) stay in lab/names.py; the
inventory derives the site's internal network, VIP, interface and addresses from them.

The inventory lists the nodes that exist, so the site is read when asked for, not at import
(no lab: inventories/lab.py raises), and read again when the set of nodes changes.
"""

from __future__ import annotations

import os
from functools import lru_cache

from lab.images import node_names
from lab.names import REPO_ROOT

INVENTORY = REPO_ROOT / "inventories" / "lab.py"


@lru_cache(maxsize=8)
def _site(nodes: tuple[str, ...], only: str, extra: str):
    from config.site import build_site, load_inventory

    hosts, group = load_inventory(INVENTORY)
    return build_site(hosts, group)


def site():
    """The lab's Site for the nodes that exist now (and HA_LAB_NODES / HA_LAB_DATA, as a deploy
    run from this environment would see them)."""
    return _site(tuple(node_names()), os.environ.get("HA_LAB_NODES", ""),
                 os.environ.get("HA_LAB_DATA", ""))


def data(key: str):
    """One value of the site data (a default of config/defaults.py unless the inventory sets it)."""
    return site().data[key]


def vip() -> str:
    return site().data["vip"]


def node_address(name: str) -> str:
    """A controller's address, as the deploy knows it."""
    return site().controller(name).address


def service(name: str):
    """A listener of the catalogue (config/catalogue.py) with the site's overrides applied."""
    for s in site().services:
        if s.name == name:
            return s
    raise KeyError(f"no listener {name!r} in the lab's site")


def listen_port(name: str) -> int:
    """The port HAProxy listens on, on the VIP, for listener `name`."""
    return service(name).port


def external_vip() -> str | None:
    """The external VIP (the public endpoints), None when the site has none."""
    return site().data["external_vip"]


def _url(address: str, port: int, binds) -> str:
    """The URL of the listener on address:port: https when its bind there takes TLS."""
    for listener in site().listeners:
        for bind in binds(listener):
            words = bind.split()
            if words and words[0] == f"{address}:{port}":
                return f"{'https' if 'ssl' in words else 'http'}://{address}:{port}/"
    return f"http://{address}:{port}/"


def vip_url(port: int) -> str:
    """The URL of the VIP's listener on `port`: https when it takes TLS there (haproxy_tls)."""
    return _url(vip(), port, lambda listener: (listener.bind, listener.redirect_bind or ""))  # "": no redirect


def external_vip_url(port: int) -> str:
    """The URL of the external VIP's listener on `port` (a public listener's; TLS but for
    horizon's redirect port)."""
    return _url(external_vip(), port, lambda listener: listener.external_binds)


def public_listeners() -> list:
    """The listeners the external VIP serves (catalogue field `public`, site overrides applied)."""
    return [listener for listener in site().listeners if listener.external_binds]


def backend_port(name: str) -> int:
    """The port listener `name` forwards to on each controller."""
    s = service(name)
    return s.backend_port or s.port


def secret_names() -> tuple[str, ...]:
    from config.secrets import SECRETS

    return tuple(SECRETS)


def _known(name: str) -> str:
    if name not in secret_names():
        raise KeyError(f"{name!r} is not a secret of config/secrets.py")
    return name


def secrets() -> dict[str, str]:
    """The lab's secrets {name: value}: the site's secrets file, as the deploy reads it (the
    HA_SECRET_* overrides of one run left out)."""
    from config.secrets import load_secrets

    return load_secrets(data("secrets_file"), environ={})


def secret(name: str) -> str:
    """The lab's value of secret `name` (KeyError for a name config/secrets.py does not know)."""
    return secrets()[_known(name)]


def secret_env(name: str) -> str:
    """The environment variable that overrides secret `name` for one run (HA_SECRET_...)."""
    from config.secrets import env_name

    return env_name(_known(name))
