"""memcached on every controller, bound to the node's internal address."""

from pyinfra.api import deploy

from config.packages import PACKAGES
from operations.common import announce, one_at_a_time, site, turn
from operations.steps import clear_pending, install_files, mark_pending, packages, service


@deploy("memcached")
def configure():
    """Natively active/active: OpenStack lists every node in memcached_servers. A changed
    config restarts memcached one node at a time."""
    packages(name="memcached: packages", names=list(PACKAGES["memcached"]))
    changed = mark_pending("memcached", "memcached")
    install_files("memcached")
    announce(changed, "restart memcached")
    service(name="memcached: running", unit="memcached")
    for name, mine in one_at_a_time([c.name for c in site().controllers]):
        turn(name=f"memcached: restart {name}", commands=["systemctl restart memcached", clear_pending("memcached")],
             run=mine and changed)
