"""The lab's life cycle, the public API behind `python -m lab`: up, start, stop, kill, isolate,
heal, status, remove, down (which also clears what an interrupted `up` left) and leftovers."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from lab import alert_receiver
from lab.aptproxy import ACNG_DIR, ensure_apt_proxy, stop_apt_proxy
from lab.cgroups import all_cgroup_dirs, rm_cgroup
from lab.images import (
    BASE_OK, disk_nodes, ensure_base, is_provisioned, node_dir, node_names, node_root, node_run_dir,
    provision, require_node, write_hosts,
)
from lab.host import (
    cmdline, find_procs, ip, locked, mount_points, mount_source, require_root, rmtree, signal_pid,
    terminate, umount_under, wait_gone, write,
)
from lab.keys import ensure_key, ensure_secrets
from lab.names import (
    ALERT_RECEIVER_DIR, ALERT_RECEIVER_PORT, BASE_DIR, BASE_TMP, BRIDGE, DEFAULT_SUBNET, HOST_ADDRESS, MAX_NODES,
    KEYSTONE_SECRETS_FILE, NODE_RE, NODES_DIR, RUN_DIR, SECRETS_FILE, STATE_DIR, STOP_TIMEOUT, SUBNET, SUBNET_FILE, VIP, LabError, address,
    node_index, node_name, say, veth_name,
)
from lab.machines import (
    ensure_nspawn_tmpfs, hard_stop, init_pid, launch, launcher_pid, node_procs, wait_ready,
)
from lab.network import (
    ensure_bridge, ensure_node_net, host_links, is_isolated, link_exists, net_down, netns_list,
)
from lab.preflight import check_subnet, preflight
from lab import stranger

def infrastructure() -> None:
    preflight()
    check_subnet()
    for d in (STATE_DIR, NODES_DIR, RUN_DIR):
        d.mkdir(parents=True, exist_ok=True)
    os.chmod(STATE_DIR, 0o700)
    ensure_key()
    ensure_secrets()
    if SUBNET != DEFAULT_SUBNET or SUBNET_FILE.exists():
        write(SUBNET_FILE, SUBNET + "\n")
    ensure_bridge()
    ensure_nspawn_tmpfs()
    ensure_apt_proxy()
    ensure_alert_receiver()
    ensure_base()


def ensure_alert_receiver() -> None:
    """The webhook receiver on the bridge address (lab/alert_receiver.py), kept if it runs."""
    try:
        alert_receiver.start(HOST_ADDRESS, ALERT_RECEIVER_PORT, ALERT_RECEIVER_DIR)
    except RuntimeError as exc:
        raise LabError(str(exc)) from None


def bring_up(names) -> None:
    all_names = sorted(set(node_names()) | set(names))
    for name in names:
        ensure_node_net(name)
        provision(name)
    for name in all_names:
        if str(node_root(name)) in mount_points():
            write_hosts(name, all_names)
    for name in names:
        if launcher_pid(name) and is_isolated(name):
            say(f"healing {name} (its link was cut)")
            ip("link", "set", veth_name(name), "up")
    to_start = [n for n in names if not launcher_pid(n)]
    for name in to_start:
        if node_procs(name):      # e.g. its launcher was killed: nspawn would find it busy
            say(f"{name}: ending the orphaned processes of its last boot")
            hard_stop(name)
        say(f"starting {name} ({address(name)})")
        launch(name)
    wait_ready(names, booted=to_start)


def _is_alert_receiver(argv: list[str]) -> bool:
    return alert_receiver.is_receiver(argv, ALERT_RECEIVER_DIR)


def stop_alert_receiver() -> None:
    """Stop the receiver by its PID file; then any process of it the file no longer names (an
    interrupted `down` removed /run/halab), found by its command line, as the apt proxy's."""
    alert_receiver.stop(ALERT_RECEIVER_DIR)
    terminate(find_procs(_is_alert_receiver), alert_receiver.STOP_SECONDS)


def nodes_to_bring_up(nodes: int, known: list[str]) -> list[str]:
    """node01..nodeNN and every other node the lab knows (`known`: those with a disk), in order.
    The lab's inventory lists every node with a disk: one left stopped would make the deploy
    refuse (a `make lab-down` of a 4-node lab, then `make lab-up`). Pure."""
    if not isinstance(nodes, int) or not 1 <= nodes <= MAX_NODES:
        raise LabError(f"--nodes must be between 1 and {MAX_NODES}")
    return sorted({node_name(k) for k in range(1, nodes + 1)} | set(known), key=node_index)


def up(nodes: int = 3) -> list[dict]:
    """Bring up nodes node01..nodeNN and every other node that has a disk (idempotent: running
    nodes are left alone, stopped ones boot from their disks, missing ones are created)."""
    names = nodes_to_bring_up(nodes, [])
    with locked():
        t0 = time.monotonic()
        infrastructure()
        names = nodes_to_bring_up(nodes, node_names())
        bring_up(names)
        say(f"lab up: {len(names)} node(s) ready in {time.monotonic() - t0:.1f}s; VIP {VIP}")
        return status()


def add(names: list[str]) -> list[dict]:
    """Create and boot exactly these nodes (the restore rehearsal's: lab.names.REHEARSAL_NODES),
    leaving the others as they are; `remove` deletes each again."""
    for name in names:
        node_index(name)
        if node_index(name) > MAX_NODES:
            raise LabError(f"{name}: the lab has at most {MAX_NODES} nodes")
    with locked():
        infrastructure()
        bring_up(sorted(set(names), key=node_index))
        return [r for r in status() if r["name"] in names]


def start(name: str) -> None:
    """Power a stopped or killed node on again; it boots from its own disk."""
    with locked():
        require_node(name)
        if launcher_pid(name):
            return
        infrastructure()
        bring_up([name])


def stop(name: str, timeout: float = STOP_TIMEOUT) -> None:
    """Clean poweroff (SIGTERM to nspawn: the node's systemd shuts down), bounded; escalates to a
    power cut if the node does not stop in time."""
    with locked():
        require_node(name)
        lp = launcher_pid(name)
        if lp:
            signal_pid(lp, signal.SIGTERM)
            if not wait_gone([lp], timeout):
                say(f"{name} did not power off within {timeout}s: cutting its power")
                hard_stop(name)
        hard_stop(name)  # whatever is left (nothing, normally)


def kill(name: str) -> None:
    """Power cut: SIGKILL to the node's init; its addresses are dropped at once."""
    with locked():
        require_node(name)
        pid = init_pid(name)
        if not pid:
            raise LabError(f"{name} is not running")
        signal_pid(pid, signal.SIGKILL)
        net_down(name)
        wait_gone([pid], 10)
        hard_stop(name)


def isolate(name: str) -> None:
    """Cut the node's link (its host-side veth down): it can no longer reach anyone."""
    with locked():
        require_node(name)
        if not launcher_pid(name):
            raise LabError(f"{name} is not running")
        ip("link", "set", veth_name(name), "down")


def heal(name: str) -> None:
    """Restore the node's link."""
    with locked():
        require_node(name)
        if not launcher_pid(name):
            raise LabError(f"{name} is not running")
        ip("link", "set", veth_name(name), "up")


def status() -> list[dict]:
    """Each node: name, address, state (running|stopped|absent), pid (host PID of its init)."""
    out = []
    names = sorted(set(node_names()) | {n for n in disk_nodes()})
    if RUN_DIR.is_dir():
        names = sorted(set(names) | {d.name for d in RUN_DIR.iterdir() if NODE_RE.match(d.name)})
    for name in names:
        lp = launcher_pid(name)
        state = "running" if lp else ("stopped" if is_provisioned(name) else "absent")
        out.append({"name": name, "address": address(name), "state": state,
                    "pid": init_pid(name) if lp else None, "launcher_pid": lp,
                    "isolated": bool(lp) and is_isolated(name)})
    return out


def remove(name: str) -> None:
    """Delete one node entirely (processes, link, namespace, mount, cgroups, disk)."""
    with locked():
        node_index(name)
        if name not in disk_nodes() and name not in netns_list():
            raise LabError(f"unknown node {name!r}: existing nodes are "
                           f"{', '.join(node_names()) or 'none'}")
        if launcher_pid(name):
            stop(name)
        teardown_node(name)
        rmtree(node_dir(name))
        others = node_names()
        for n in others:
            if str(node_root(n)) in mount_points():
                write_hosts(n, others)


def teardown_node(name: str) -> None:
    hard_stop(name)
    umount_under(node_run_dir(name))
    if name in netns_list():
        ip("netns", "del", name, check=False)
    if link_exists(veth_name(name)):
        ip("link", "del", veth_name(name), check=False)
    for cg in all_cgroup_dirs():
        if cg.name == f"lab-{name}":
            rm_cgroup(cg)
    rmtree(node_run_dir(name))


def down(purge: bool = False) -> None:
    """Remove everything the lab made on this machine (processes by PID, mounts, namespaces,
    veths, bridge, cgroups, the apt proxy, the alert receiver). Keeps the base image, apt cache
    and node disks; `purge` also removes the node disks and the lab's secrets."""
    require_root()
    with locked():
        t0 = time.monotonic()
        names = set(disk_nodes()) | {n for n in netns_list() if NODE_RE.match(n)}
        if RUN_DIR.is_dir():
            names |= {d.name for d in RUN_DIR.iterdir() if NODE_RE.match(d.name)}
        names |= {cg.name[4:] for cg in all_cgroup_dirs()}
        names |= {l[5:] for l in host_links() if l.startswith("veth-") and NODE_RE.match(l[5:])}
        # clean poweroff of all running nodes at once, then the rest by force
        launchers = {n: launcher_pid(n) for n in names}
        for n, lp in launchers.items():
            if lp:
                signal_pid(lp, signal.SIGTERM)
        wait_gone([p for p in launchers.values() if p], STOP_TIMEOUT)
        for n in sorted(names):
            teardown_node(n)
        stop_apt_proxy()
        stop_alert_receiver()
        stranger.remove()  # the firewall drill's outsider, if a test left it
        for link in host_links():
            if link.startswith("veth-node"):
                ip("link", "del", link, check=False)
        if link_exists(BRIDGE):
            ip("link", "del", BRIDGE, check=False)
        if mount_source("/run/systemd/nspawn") == "halab-nspawn":
            umount_under(Path("/run/systemd/nspawn"))
        umount_under(RUN_DIR)
        rmtree(RUN_DIR)
        rmtree(BASE_TMP)
        if BASE_DIR.exists() and not BASE_OK.exists():
            rmtree(BASE_DIR)           # an interrupted base build
        if purge:
            umount_under(NODES_DIR)
            rmtree(NODES_DIR)
            for f in (SECRETS_FILE, KEYSTONE_SECRETS_FILE, SUBNET_FILE):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f)
        say(f"lab down in {time.monotonic() - t0:.1f}s"
             + (" (node disks and secrets purged)" if purge else ""))


def leftovers() -> list[str]:
    """What the lab would have left on this machine (empty after a clean `down`)."""
    found = []
    found += [f"netns {n}" for n in netns_list() if NODE_RE.match(n) or n == stranger.NETNS]
    found += [f"link {l}" for l in host_links() if l in (BRIDGE, stranger.VETH) or l.startswith("veth-node")]
    found += [f"mount {m}" for m in mount_points()
              if m.startswith(str(RUN_DIR)) or m.startswith(str(STATE_DIR))
              or m.startswith("/run/netns/node")]
    if mount_source("/run/systemd/nspawn") == "halab-nspawn":
        found.append("mount /run/systemd/nspawn")
    found += [f"cgroup {c}" for c in all_cgroup_dirs()]
    found += [f"process {p} {' '.join(cmdline(p))[:80]}" for p in find_procs(
        lambda a: "lab.launcher" in a
        or (a[0].endswith("systemd-nspawn") and any(x.startswith("--machine=node") for x in a))
        or (a[0].endswith("apt-cacher-ng") and str(ACNG_DIR) in " ".join(a))
        or _is_alert_receiver(a))]
    return found
