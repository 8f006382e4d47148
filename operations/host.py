"""Host basics: hostname, /etc/hosts for every controller, the HA sysctls."""

import re

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import Hostname
from pyinfra.operations import files, server

from operations.common import announce, install_files, site


@deploy("Host basics")
def configure():
    """Hostname as in the inventory (RabbitMQ's node name is rabbit@<hostname>), every
    controller in /etc/hosts, and the sysctls (net.ipv4.ip_nonlocal_bind lets HAProxy bind
    the VIP on nodes that do not hold it)."""
    if host.get_fact(Hostname) != host.name:
        server.hostname(name="Set the hostname", hostname=host.name)
    for c in site().controllers:
        files.line(
            name=f"/etc/hosts: {c.name}",
            path="/etc/hosts",
            line=rf"^{re.escape(c.address)}\s+{c.name}(\s.*)?$",
            replace=f"{c.address} {c.name}",
            ensure_newline=True,
        )
    (sysctl_file,) = install_files("host")
    announce(sysctl_file, "apply sysctl settings")
    server.shell(
        name="Apply the sysctl settings",
        # Inside containers only net.* is writable; the file is applied key by key so one
        # refused key does not hide the others, and net.* must succeed.
        commands=[
            "rc=0; while IFS='=' read -r k v; do k=$(echo $k); case \"$k\" in ''|'#'*) continue;; esac; "
            "sysctl -q -w \"$k=$(echo $v)\" || case \"$k\" in net.*) rc=1;; esac; "
            "done < /etc/sysctl.d/60-openstack-ha.conf; exit $rc"
        ],
        _if=sysctl_file.did_change,
    )
