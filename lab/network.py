"""The lab's network on the host: the bridge, a namespace and veth pair per node (the node end
named like the production interface), each node's link up at boot and down at power-off."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from lab.host import ip, mount_points
from lab.names import BRIDGE, HOST_ADDRESS, IFNAME, PREFIXLEN, LabError, address, veth_name

def link_exists(dev: str, netns: str | None = None) -> bool:
    args = ["-n", netns] if netns else []
    return ip(*args, "link", "show", "dev", dev, check=False).returncode == 0


def netns_list() -> list[str]:
    p = ip("-j", "netns", "list", check=False)
    try:
        return [n["name"] for n in json.loads(p.stdout or "[]")]
    except ValueError:
        return []


def sysctl_write(path: str, value: str) -> None:
    with contextlib.suppress(FileNotFoundError, PermissionError):
        Path(path).write_text(value)


def ensure_bridge() -> None:
    if not link_exists(BRIDGE):
        r = ip("link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0",
                "mcast_snooping", "0", check=False)
        if r.returncode != 0:
            raise LabError(f"cannot create bridge {BRIDGE} (kernel feature missing: bridge?): "
                           f"{r.stderr.strip()}")
    # The lab's packets must never be routed onwards, whatever the global setting becomes.
    sysctl_write(f"/proc/sys/net/ipv4/conf/{BRIDGE}/forwarding", "0")
    sysctl_write(f"/proc/sys/net/ipv6/conf/{BRIDGE}/disable_ipv6", "1")
    ip("addr", "replace", f"{HOST_ADDRESS}/{PREFIXLEN}", "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")


def ensure_node_net(name: str) -> None:
    """The node's namespace and veth pair (the node end named IFNAME), plugged into the bridge.
    Addresses are set by the launcher at each boot (net_up) and dropped at power-off (net_down)."""
    plug(name, veth_name(name))


def plug(netns: str, veth: str) -> None:
    """Namespace `netns` (made again if stale) with a veth pair into the bridge: `veth` on the
    host, IFNAME inside; loopback up (a node's, or the stranger's: lab/stranger.py)."""
    if netns in netns_list() and f"/run/netns/{netns}" not in mount_points():
        ip("netns", "del", netns, check=False)      # a stale name (e.g. after a machine reboot)
    if netns not in netns_list():
        ip("netns", "add", netns)
    if link_exists(veth) and not link_exists(IFNAME, netns):
        ip("link", "del", veth)            # half-made pair: start again
    if not link_exists(veth):
        r = ip("link", "add", veth, "type", "veth", "peer", "name", IFNAME, "netns", netns,
               check=False)
        if r.returncode != 0:
            raise LabError(f"cannot create veth pair for {netns} (kernel feature missing: veth?): "
                           f"{r.stderr.strip()}")
    sysctl_write(f"/proc/sys/net/ipv6/conf/{veth}/disable_ipv6", "1")
    sysctl_write(f"/proc/sys/net/ipv4/conf/{veth}/forwarding", "0")
    ip("link", "set", veth, "master", BRIDGE)
    ip("-n", netns, "link", "set", "lo", "up")


def net_up(name: str) -> None:
    """Power on the node's link: its address, default route (to the host only), host veth up."""
    ip("-n", name, "addr", "replace", f"{address(name)}/{PREFIXLEN}", "dev", IFNAME)
    ip("-n", name, "link", "set", IFNAME, "up")
    ip("-n", name, "route", "replace", "default", "via", HOST_ADDRESS, "dev", IFNAME)
    ip("link", "set", veth_name(name), "up")


def net_down(name: str) -> None:
    """Power off the node's link: drop every address it holds (also a VIP) and its link
    (LAB.md item 9: the namespace outlives the container and would still answer ARP)."""
    if name not in netns_list():
        return
    ip("-n", name, "addr", "flush", "dev", IFNAME, check=False)
    ip("-n", name, "link", "set", IFNAME, "down", check=False)
    ip("link", "set", veth_name(name), "down", check=False)


def is_isolated(name: str) -> bool:
    try:
        return Path(f"/sys/class/net/{veth_name(name)}/flags").exists() and \
            not int(Path(f"/sys/class/net/{veth_name(name)}/flags").read_text(), 16) & 1
    except (OSError, ValueError):
        return False


def host_links() -> list[str]:
    return os.listdir("/sys/class/net")
