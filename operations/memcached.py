"""memcached on every controller, bound to the node's internal address."""

from pyinfra.api import deploy

from operations.common import announce, any_will_change, install_files, one_at_a_time, packages, service, shell, site


@deploy("memcached")
def configure():
    """Natively active/active: OpenStack lists every node in memcached_servers. A changed
    config restarts memcached one node at a time."""
    packages(name="memcached: packages", names=["memcached"])
    ops = install_files("memcached")
    announce(ops, "restart memcached")
    changed = any_will_change(ops)
    service(name="memcached: running", unit="memcached")
    for name, mine in one_at_a_time([c.name for c in site().controllers]):
        shell(f"memcached: restart {name}", ["systemctl restart memcached"], when=mine and changed)
