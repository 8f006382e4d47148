"""The local lab: real controller nodes on this machine (python -m lab --help)."""

from lab.core import (  # noqa: F401
    BRIDGE, HOST_ADDRESS, IFNAME, SECRETS_FILE, SSH_KEY, SUBNET, VIP, LabError, address, down,
    ensure_secrets, exec_, heal, init_pid, isolate, kill, leftovers, node_names, remove, ssh,
    start, status, stop, up,
)
