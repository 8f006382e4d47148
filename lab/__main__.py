"""python -m lab up|add|down|status|stop|kill|start|isolate|heal|exec|ssh|remove"""

import argparse
import json
import subprocess
import sys

from lab import lifecycle
from lab.aptproxy import proxy_pid
from lab.images import node_names, require_node
from lab.machines import exec_, ssh_argv
from lab.names import APT_PROXY, BRIDGE, EXTERNAL_VIP, SUBNET, VIP, LabError, address, node_index


def _table(rows) -> str:
    out = [f"{'NODE':8} {'STATE':8} {'ADDRESS':15} {'PID':>8}  LINK"]
    for r in rows:
        link = "-" if r["state"] != "running" else ("cut" if r["isolated"] else "up")
        out.append(f"{r['name']:8} {r['state']:8} {r['address']:15} {r['pid'] or '-':>8}  {link}")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab", description=(
        "The local lab: real Debian controller nodes (systemd-nspawn + network namespaces) "
        f"on a private bridge {BRIDGE} ({SUBNET}, VIP {VIP}, external VIP {EXTERNAL_VIP})."))
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    p = sub.add_parser("up", help="create/boot nodes node01..nodeNN and every node with a disk (idempotent)")
    p.add_argument("--nodes", "-n", type=int, default=3, help="number of nodes at least (default 3)")
    p = sub.add_parser("add", help="create/boot exactly these nodes (the restore rehearsal's: node08 node09)")
    p.add_argument("names", nargs="+", metavar="NODE")
    p = sub.add_parser("down", help="remove everything the lab made (keeps image, cache, disks)")
    p.add_argument("--purge", action="store_true", help="also delete node disks and secrets")
    p = sub.add_parser("status", help="each node's state, address and init PID")
    p.add_argument("--json", action="store_true")
    for cmd, hlp in (("stop", "clean poweroff"), ("kill", "power cut (SIGKILL to init, "
                     "addresses dropped)"), ("start", "power on again, from its disk"),
                     ("isolate", "cut its link"), ("heal", "restore its link"),
                     ("remove", "delete the node and its disk")):
        sub.add_parser(cmd, help=hlp).add_argument("node")
    for cmd, hlp in (("exec", "run a command in a node (nsenter)"),
                     ("ssh", "run a command in a node over SSH (interactive without one)")):
        p = sub.add_parser(cmd, help=hlp)
        p.add_argument("node")
        p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ...")
    a = ap.parse_args(argv)

    try:
        if a.cmd == "up":
            lifecycle.up(a.nodes)
            print(_table(lifecycle.status()))
        elif a.cmd == "add":
            print(_table(lifecycle.add(a.names)))
        elif a.cmd == "down":
            lifecycle.down(purge=a.purge)
        elif a.cmd == "status":
            rows = lifecycle.status()
            if a.json:
                print(json.dumps(rows, indent=2))
            elif not rows:
                print("no lab on this machine (make lab-up)")
            else:
                print(_table(rows))
                print(f"VIP {VIP}, external VIP {EXTERNAL_VIP}; apt proxy "
                      f"{'running' if proxy_pid() else 'stopped'} on "
                      f"{APT_PROXY}")
        elif a.cmd in ("exec", "ssh"):
            cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
            node_index(a.node)
            if a.node not in node_names():
                require_node(a.node)
            if a.cmd == "ssh" and not cmd:
                return subprocess.call(ssh_argv(a.node)[:-1] + ["-t", f"root@{address(a.node)}"])
            if not cmd:
                ap.error("exec needs a command: python -m lab exec NODE -- CMD ...")
            r = exec_(a.node, cmd, via="ssh" if a.cmd == "ssh" else "nsenter",
                           timeout=3600, capture=False)
            return r.returncode
        else:
            getattr(lifecycle, a.cmd)(a.node)
            if a.cmd in ("stop", "kill", "start", "isolate", "heal"):
                print(_table([r for r in lifecycle.status() if r["name"] == a.node]))
    except LabError as e:
        print(f"lab: error: {e}", file=sys.stderr)
        return 1
    except PermissionError as e:
        print(f"lab: error: {e.strerror}: {e.filename} (the lab runs as root)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lab: interrupted (run `python -m lab down` to clean up)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
