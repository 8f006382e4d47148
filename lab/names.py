"""Names, places and addresses of the lab: its state directories, its subnet (LAB_SUBNET), the
bridge, the node names and their addresses, the bounds of its waits, and LabError.

The lab's own choices live here; the project's constants (ports, accounts, paths on the
controllers) are the site model's (lab/sitemodel.py). inventories/lab.py derives the lab site's
internal network, VIP, external VIP, interface and node addresses from SUBNET, VIP, EXTERNAL_VIP,
IFNAME and address().

Layout on the host:
  /var/tmp/halab/base/            base root filesystem (debootstrap), kept across `down`
  /var/tmp/halab/apt-cache/       apt-cacher-ng cache, kept across `down`
  /var/tmp/halab/nodes/NODE/      a node's disk (overlay upper + work), kept unless `down --purge`
  /var/tmp/halab/id_ed25519       the lab SSH key; secrets.json the lab's generated secrets
  /run/halab/                     runtime: PIDs, mount points, proxy config (removed by `down`)
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path("/var/tmp/halab")
RUN_DIR = Path("/run/halab")
BASE_DIR = STATE_DIR / "base"
BASE_TMP = STATE_DIR / "base.tmp"
APT_CACHE_DIR = STATE_DIR / "apt-cache"
NODES_DIR = STATE_DIR / "nodes"
SSH_KEY = str(STATE_DIR / "id_ed25519")
SECRETS_FILE = str(STATE_DIR / "secrets.json")
# The lab keystone's own secrets (lab/keystone.py): not the deploy's, so not in SECRETS_FILE
KEYSTONE_SECRETS_FILE = str(STATE_DIR / "keystone-secrets.json")
# The lab's own certificate authority: it signs the VIP's certificate (secret haproxy_tls_pem);
# the drills' HTTPS clients trust it, and nothing else does.
CA_FILE = STATE_DIR / "ca.pem"
CA_KEY = STATE_DIR / "ca.key"
LOCK_FILE = STATE_DIR / "lock"

SUBNET_FILE = STATE_DIR / "subnet"     # the subnet of the lab that exists, if not the default
DEFAULT_SUBNET = "10.77.0.0/24"        # the lab's own choice; LAB_SUBNET at `up` moves it


def configured_subnet() -> str:
    """LAB_SUBNET, else the subnet the existing lab was made with, else DEFAULT_SUBNET."""
    if os.environ.get("LAB_SUBNET"):
        return os.environ["LAB_SUBNET"]
    with contextlib.suppress(OSError):
        return SUBNET_FILE.read_text().strip() or DEFAULT_SUBNET
    return DEFAULT_SUBNET


try:
    _net = ipaddress.ip_network(configured_subnet(), strict=True)
    if _net.version != 4 or _net.prefixlen > 24:
        raise ValueError("not an IPv4 network of /24 or larger")
except ValueError as _e:
    # a configuration error, reported in one line even at import time
    raise SystemExit(f"lab: error: LAB_SUBNET={os.environ.get('LAB_SUBNET')!r}: {_e}") from None
SUBNET = str(_net)
PREFIXLEN = _net.prefixlen
HOST_ADDRESS = str(_net[1])
VIP = str(_net[100])
# The external VIP (the public endpoints), on the same bridge: the lab has one network; the
# address next to the VIP stands for the public network's.
EXTERNAL_VIP = str(_net[101])
BRIDGE = "labbr0"
IFNAME = "enp8s0f0"     # as on the production controllers (test_10 checks prod.py agrees)
APT_PROXY_PORT = 3142
APT_PROXY = f"http://{HOST_ADDRESS}:{APT_PROXY_PORT}"
# The webhook receiver that records what the lab's Alertmanagers send (lab/alert_receiver.py),
# on the bridge address like the apt proxy; the lab inventory's monitoring_webhooks.
ALERT_RECEIVER_PORT = 9097
ALERT_RECEIVER_URL = f"http://{HOST_ADDRESS}:{ALERT_RECEIVER_PORT}/alerts"
ALERT_RECEIVER_DIR = RUN_DIR / "alert-receiver"   # pid, alerts.jsonl (the records), stderr.log
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
SUITE = "bookworm"
BASE_PACKAGES = [
    "openssh-server", "python3", "iproute2", "systemd", "systemd-sysv", "dbus", "procps",
    "iputils-ping", "curl", "netcat-openbsd", "ca-certificates",
]
MAX_NODES = 9
# The restore rehearsal's nodes (make restore-rehearsal; tests/lab/test_46_rehearsal.py): fresh
# nodes with names and addresses of their own, never controllers. inventories/lab.py leaves them
# out of the controllers and names them in backup_rehearsal_hosts; `python -m lab add` starts
# them, `python -m lab remove` deletes them.
REHEARSAL_NODES = ("node08", "node09")
NODE_RE = re.compile(r"^node(\d{2})$")
CGROUP_HIERARCHIES = ("unified", "systemd", "memory", "pids")
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# bounds (seconds)
DEBOOTSTRAP_TIMEOUT = 900
DEBOOTSTRAP_TRIES = 3
BOOT_TIMEOUT = 120
BOOT_SETTLE_TIMEOUT = 10
STOP_TIMEOUT = 45
CMD_TIMEOUT = 60


class LabError(Exception):
    """An error with a message meant for the operator (one line, no traceback)."""


# --------------------------------------------------------------------------------------------
# small helpers

_T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[lab {time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def node_name(k: int) -> str:
    return f"node{k:02d}"


def node_index(name: str) -> int:
    m = NODE_RE.match(name or "")
    if not m or int(m.group(1)) < 1:
        raise LabError(f"invalid node name {name!r}: nodes are named node01, node02, ...")
    return int(m.group(1))


def address(name: str) -> str:
    """The node's address on the lab subnet (node k has host number 10+k)."""
    return str(_net[10 + node_index(name)])


def veth_name(name: str) -> str:
    return f"veth-{name}"
