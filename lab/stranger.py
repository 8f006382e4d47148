"""A host on the lab bridge that is in no inventory (the firewall drill's outsider): its own
network namespace and veth pair on the bridge, with an address of the lab subnet, so it is in
the client network but no controller. Made by stranger(), removed when it ends (also on error)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
import sys

from lab.host import ip
from lab.names import IFNAME, PREFIXLEN, SUBNET
from lab.network import link_exists, netns_list, plug

NETNS = "halab-stranger"
VETH = "veth-stranger"
ADDRESS = str(ipaddress.ip_network(SUBNET, strict=False)[200])

# Run inside the namespace: every (address, port) tried at once, each for `timeout` seconds.
_PROBE = """
import json, socket, sys, concurrent.futures as cf
targets, timeout = json.loads(sys.argv[1]), float(sys.argv[2])
def one(t):
    s = socket.socket(); s.settimeout(timeout)
    try:
        s.connect((t[0], t[1])); return "open"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "timeout"
    finally:
        s.close()
with cf.ThreadPoolExecutor(64) as ex:
    print(json.dumps([[a, p, r] for (a, p), r in zip(targets, ex.map(one, targets))]))
"""


def remove() -> None:
    """The stranger's namespace and veth, if any (also what `lab down` calls)."""
    if NETNS in netns_list():
        ip("netns", "del", NETNS, check=False)
    if link_exists(VETH):
        ip("link", "del", VETH, check=False)


@contextlib.contextmanager
def stranger():
    """The outsider, plugged into the lab bridge; yields its address."""
    remove()
    try:
        plug(NETNS, VETH)
        ip("link", "set", VETH, "up")
        ip("-n", NETNS, "addr", "add", f"{ADDRESS}/{PREFIXLEN}", "dev", IFNAME)
        ip("-n", NETNS, "link", "set", IFNAME, "up")
        yield ADDRESS
    finally:
        remove()


def reach(targets: list[tuple[str, int]], timeout: float = 2.0) -> dict[tuple[str, int], str]:
    """From inside the stranger: {(address, port): "open" | "refused" | "timeout"}."""
    r = subprocess.run(["ip", "netns", "exec", NETNS, sys.executable, "-c", _PROBE,
                        json.dumps([list(t) for t in targets]), str(timeout)],
                       capture_output=True, text=True, timeout=timeout * 4 + 30)
    if r.returncode != 0:
        raise RuntimeError(f"probe from {NETNS} failed: {r.stderr.strip()[-500:]}")
    return {(a, p): res for a, p, res in json.loads(r.stdout)}
