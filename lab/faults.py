"""Faults and the VIP: who holds it (read from every running node, never assumed), placing it,
power cuts, packet filters inside a node, services stopped, nodes powered on again."""

from __future__ import annotations

import re
import subprocess
import time

from lab import lifecycle
from lab.images import node_names
from lab.machines import exec_, init_pid
from lab.names import IFNAME, LabError, address
from lab.sitemodel import vip
from lab.waits import DrillError, intervene, log, wait_for



def nodes() -> list[str]:
    return node_names()


def running() -> list[str]:
    return [n["name"] for n in lifecycle.status() if n["state"] == "running"]


def holds_vip(node: str, address: str | None = None) -> bool:
    """Whether `node` has the VIP (or `address`, e.g. the external VIP) on its interface."""
    r = exec_(node, ["ip", "-4", "-o", "addr", "show", "dev", IFNAME], timeout=10)
    return r.returncode == 0 and f" {address or vip()}/" in r.stdout


def holders(address: str | None = None) -> list[str]:
    """The running nodes that have the VIP (or `address`) on their interface (0, 1 or, split
    brain, more)."""
    out = []
    for n in running():
        try:
            if holds_vip(n, address):
                out.append(n)
        except LabError:
            pass
    return out


def holder() -> str | None:
    h = holders()
    return h[0] if len(h) == 1 else None


def wait_holder(timeout: float = 30, other_than: tuple[str, ...] = ()) -> tuple[str, float]:
    """Exactly one node holds the VIP, none of `other_than`: (that node, seconds waited)."""
    def probe():
        h = holders()
        return h[0] if len(h) == 1 and h[0] not in other_than else None
    what = "exactly one VIP holder" + (f" other than {', '.join(other_than)}" if other_than else "")
    return wait_for(what, probe, timeout)


def power_cut(*names: str) -> None:
    """Power cut of one or more nodes at once: their links go first, then their processes.

    lab.kill alone SIGKILLs the node's init and then takes its link down and flushes its
    addresses; the node's processes die a few milliseconds after init, and keepalived lives
    long enough to see its VIP flushed and resign with a priority-0 advertisement - a clean
    handover (measured: the VIP moved in 0.4 s) that a real power cut never gives. With the
    link down first nothing leaves the node any more, as when a machine loses power: the
    others notice only when the advertisements stop (3 x advert_int + skew)."""
    for n in names:
        lifecycle.isolate(n)
    for n in names:
        lifecycle.kill(n)


FILTER_TABLE = "lab_drill"


def drop_packets(node: str, match: str) -> None:
    """A packet filter inside `node`'s network namespace (the host's nft, nsenter --net):
    packets matching the nft expression `match` are dropped and counted, both those coming in
    and those going out, e.g. "ip daddr 224.0.0.18" (multicast VRRP advertisements): the node
    and the others no longer hear each other. allow_packets() removes it."""
    pid = init_pid(node)
    if not pid:
        raise DrillError(f"{node} is not running")
    chains = "".join(f"  chain {hook} {{\n    type filter hook {hook} priority -10; policy accept;\n"
                     f"    {match} counter drop\n  }}\n" for hook in ("input", "output"))
    rules = f"table inet {FILTER_TABLE} {{\n{chains}}}\n"
    r = subprocess.run(["nsenter", "-t", str(pid), "-n", "--", "nft", "-f", "-"], input=rules, text=True,
                       timeout=30, capture_output=True)
    if r.returncode != 0:
        raise DrillError(f"{node}: nft refused the filter: {r.stderr.strip()[:500]}")
    log(f"{node}: dropping {match}, in and out")


def cut_off(node: str, peers: list[str], vrrp: bool = True) -> None:
    """A partition inside `node`'s network namespace: its unicast traffic to and from `peers`
    (their node addresses) dropped both ways, as a one-sided firewall mistake or a half-broken
    link; with `vrrp` its multicast VRRP adverts still pass (the others keep hearing a MASTER),
    without it they are dropped too (cut off both ways). Clients (this host) still reach it.
    allow_packets() removes it."""
    pid = init_pid(node)
    if not pid:
        raise DrillError(f"{node} is not running")
    addrs = ", ".join(address(p) for p in peers)
    out = f"ip daddr {{ {addrs} }} counter drop" + ("" if vrrp else "\n    ip daddr 224.0.0.18 counter drop")
    into = f"ip saddr {{ {addrs} }}" + (" ip daddr != 224.0.0.18" if vrrp else "") + " counter drop"
    chains = "".join(f"  chain {hook} {{\n    type filter hook {hook} priority -10; policy accept;\n    {rule}\n  }}\n"
                     for hook, rule in (("input", into), ("output", out)))
    r = subprocess.run(["nsenter", "-t", str(pid), "-n", "--", "nft", "-f", "-"],
                       input=f"table inet {FILTER_TABLE} {{\n{chains}}}\n", text=True, timeout=30, capture_output=True)
    if r.returncode != 0:
        raise DrillError(f"{node}: nft refused the filter: {r.stderr.strip()[:500]}")
    log(f"{node}: cut off from {', '.join(peers)} ({'VRRP multicast still passing' if vrrp else 'both ways, VRRP too'})")


def dropped(node: str) -> int:
    """Packets the drill's filter on `node` dropped so far (0 without a filter)."""
    pid = init_pid(node)
    r = subprocess.run(["nsenter", "-t", str(pid), "-n", "--", "nft", "list", "table", "inet", FILTER_TABLE],
                       text=True, capture_output=True, timeout=30)
    return sum(int(m) for m in re.findall(r"counter packets (\d+)", r.stdout))


def allow_packets(node: str) -> None:
    """Remove the drill's packet filter from `node` (nothing to do without one)."""
    pid = init_pid(node)
    if pid:
        subprocess.run(["nsenter", "-t", str(pid), "-n", "--", "nft", "delete", "table", "inet", FILTER_TABLE],
                       capture_output=True, timeout=30)


def systemctl(node: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return exec_(node, ["systemctl", *args], timeout=timeout)


def place_vip(target: str, timeout: float = 60) -> None:
    """Move the VIP to `target` the way an operator would: keepalived stopped on every other
    node (target, the only candidate left, takes it), then started again (every node is BACKUP
    with nopreempt: the VIP stays on target)."""
    if holder() == target:
        return
    others = [n for n in running() if n != target]
    for n in others:
        systemctl(n, "stop", "keepalived")
    try:
        wait_for(f"{target} to hold the VIP", lambda: holders() == [target], timeout)
    finally:
        for n in others:
            systemctl(n, "start", "keepalived")
    # the others are back as BACKUP: still one holder
    wait_for(f"{target} to keep the VIP", lambda: holders() == [target], 10)
    log(f"VIP placed on {target}")


def power_on(name: str) -> None:
    """lab.start, tried a second time if the node's first boot dies at once. Seen once in ~40
    starts right after a power cut: the launcher was gone before the node booted
    ("failed to boot", console showing only the previous life); the next start booted."""
    try:
        lifecycle.start(name)
    except LabError as exc:
        intervene(f"{name} did not boot ({str(exc)[:160]}): started again")
        time.sleep(2)
        lifecycle.start(name)
