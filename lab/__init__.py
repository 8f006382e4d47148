"""The local lab: real controller nodes on this machine (python -m lab --help).

Rooms: names (places, subnet, addresses), host (commands, files, processes, the lock),
preflight, keys (SSH key, secrets), network (bridge, namespaces, veths), aptproxy, images (base
image, node disks), cgroups, machines (boot, exec, power), lifecycle (the API below); the site
model as the lab sees it: sitemodel; drills and benches: drills (waits, faults, clients, health).
"""

from lab.keys import ensure_secrets  # noqa: F401
from lab.lifecycle import (  # noqa: F401
    add, down, heal, isolate, kill, leftovers, remove, start, status, stop, up,
)
from lab.images import node_names  # noqa: F401
from lab.machines import exec_, init_pid, ssh  # noqa: F401
from lab.names import (  # noqa: F401
    BRIDGE, EXTERNAL_VIP, HOST_ADDRESS, IFNAME, SECRETS_FILE, SSH_KEY, SUBNET, VIP, LabError, address,
)
