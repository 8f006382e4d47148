"""What `up` checks before it touches anything: root, the host packages, kernel features, no
IP forwarding, and a lab subnet that overlaps none of the machine's networks."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
from pathlib import Path

from lab.host import ip, require_root, run
from lab.names import BRIDGE, SUBNET, LabError

REQUIRED_COMMANDS = {
    "ip": "iproute2", "debootstrap": "debootstrap", "systemd-nspawn": "systemd-container",
    "apt-cacher-ng": "apt-cacher-ng", "ssh": "openssh-client", "ssh-keygen": "openssh-client",
    "nsenter": "util-linux", "mount": "mount", "umount": "mount", "wget": "wget",
    "nft": "nftables",
}


def preflight() -> None:
    """Check what `up` needs from this machine; raise LabError with the fix otherwise."""
    require_root()
    missing = sorted({pkg for cmd, pkg in REQUIRED_COMMANDS.items() if not shutil.which(cmd)})
    if missing:
        raise LabError(f"missing package(s) {' '.join(missing)}: "
                       f"apt-get install -y {' '.join(missing)}")
    with open("/proc/filesystems") as f:
        if "overlay" not in f.read().split():
            run(["modprobe", "overlay"], check=False)
            with open("/proc/filesystems") as f2:
                if "overlay" not in f2.read().split():
                    raise LabError("kernel feature missing: overlayfs (CONFIG_OVERLAY_FS)")
    for ns in ("net", "pid", "mnt", "uts", "ipc"):
        if not os.path.exists(f"/proc/self/ns/{ns}"):
            raise LabError(f"kernel feature missing: {ns} namespaces")
    if not (os.path.isdir("/sys/fs/cgroup/unified") or os.path.isdir("/sys/fs/cgroup/systemd")
            or os.path.exists("/sys/fs/cgroup/cgroup.controllers")):
        raise LabError("kernel feature missing: no cgroup hierarchy mounted under /sys/fs/cgroup")
    if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "0":
        raise LabError("IP forwarding is on (net.ipv4.ip_forward=1): the lab refuses to start "
                       "because its nodes must not reach beyond this machine")


def find_overlaps(subnet: str, addrs: list, routes: list) -> list[str]:
    """Pure check: which of the machine's addresses/routes (`ip -j addr` / `ip -j route show
    table all` output) overlap `subnet`, ignoring the lab's own bridge and default routes."""
    net = ipaddress.ip_network(subnet)
    found = []
    for link in addrs:
        dev = link.get("ifname")
        if dev == BRIDGE:
            continue
        for a in link.get("addr_info", []):
            if a.get("family") != "inet":
                continue
            iface = ipaddress.ip_interface(f"{a['local']}/{a.get('prefixlen', 32)}")
            if iface.network.overlaps(net):
                found.append(f"address {iface} on {dev}")
    for r in routes:
        dst, dev = r.get("dst"), r.get("dev")
        if not dst or dst == "default" or dev == BRIDGE:
            continue
        try:
            rnet = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if rnet.version == 4 and rnet.overlaps(net):
            found.append(f"route {dst} dev {dev or '?'} (table {r.get('table', 'main')})")
    return found


def check_subnet() -> None:
    addrs = json.loads(ip("-j", "addr").stdout or "[]")
    routes = json.loads(ip("-j", "-4", "route", "show", "table", "all").stdout or "[]")
    overlaps = find_overlaps(SUBNET, addrs, routes)
    if overlaps:
        raise LabError(f"lab subnet {SUBNET} overlaps this machine's networks "
                       f"({'; '.join(overlaps)}): set LAB_SUBNET to a free private /24")
