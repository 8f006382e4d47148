"""memcached on every controller, bound to the node's internal address."""

from pyinfra.api import deploy
from pyinfra.operations import systemd

from operations.common import announce, any_changed, install_files, packages


@deploy("memcached")
def configure():
    """Natively active/active: OpenStack lists every node in memcached_servers."""
    packages(name="memcached: packages", names=["memcached"])
    ops = install_files("memcached")
    for op in ops:
        announce(op, "restart memcached")
    systemd.service(
        name="memcached: running", service="memcached", running=True, enabled=True,
        restarted=any(op.will_change for op in ops), _serial=True,
    )
