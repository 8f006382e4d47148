"""Host basics: hostname, /etc/hosts for every controller, the HA sysctls."""

import re
import shlex

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import FileContents
from pyinfra.facts.server import Hostname

from config.files import SYSCTL_CONF
from operations.common import announce, shell, site
from operations.before import planned_fact
from operations.steps import install_files

APPLY_SYSCTL = (
    # Inside containers only net.* is writable: apply key by key, so one refused key does
    # not hide the others, and fail only when a net.* key is refused.
    "rc=0; while IFS='=' read -r k v; do k=$(echo $k); case \"$k\" in ''|'#'*) continue;; esac; "
    "sysctl -q -w \"$k=$(echo $v)\" || case \"$k\" in net.*) rc=1;; esac; "
    f"done < {SYSCTL_CONF}; exit $rc"
)


def loopback_name(line: str, name: str) -> bool:
    """Whether an /etc/hosts line maps `name` to Debian's 127.0.1.1. Pure."""
    words = line.split("#", 1)[0].split()
    return words[:1] == ["127.0.1.1"] and any(w.split(".")[0] == name for w in words[1:])


@deploy("Host basics")
def configure():
    """Hostname as in the inventory (RabbitMQ's node name is rabbit@<hostname>), every
    controller in /etc/hosts, and the sysctls (net.ipv4.ip_nonlocal_bind lets HAProxy bind
    the VIP on nodes that do not hold it)."""
    name = shlex.quote(host.name)  # a validated hostname label; quoted all the same
    shell("Set the hostname", [f"hostnamectl set-hostname {name} || hostname {name}", f"echo {name} > /etc/hostname"],
          when=planned_fact(Hostname) != host.name)
    lines = planned_fact(FileContents, path="/etc/hosts") or []
    missing = [
        c for c in site().controllers
        if not any(re.match(rf"^{re.escape(c.address)}\s+{c.name}(\s|$)", line) for line in lines)
    ]
    shell("/etc/hosts: every controller", [f"echo {shlex.quote(f'{c.address} {c.name}')} >> /etc/hosts" for c in missing], when=bool(missing))
    # Debian's installer maps the hostname to 127.0.1.1; that line comes first, and RabbitMQ's
    # CLI would look for rabbit@<name> there, where nothing listens (epmd and the Erlang
    # distribution are bound to the node address): it gets the node address instead.
    me = site().controller(host.name)
    loopback = [line for line in lines if loopback_name(line, host.name)]
    shell("/etc/hosts: this controller's name on its address, not on 127.0.1.1",
          [f"sed -i -E 's/^127\\.0\\.1\\.1([[:space:]])/{me.address}\\1/' /etc/hosts"], when=bool(loopback))
    (sysctl_file,) = install_files("host")
    announce(sysctl_file, "apply sysctl settings")
    shell("Apply the sysctl settings", [APPLY_SYSCTL], when=sysctl_file.will_change)
