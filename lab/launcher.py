"""A node's launcher: one detached process per running node (started by `lab up`/`lab start`).

It puts systemd-nspawn into the node's own cgroups, brings the node's link up, boots the node, and
boots it again when the node reboots (nspawn exits 133). When the node powers off or dies, it drops
the node's addresses and link (a dead machine answers nobody, LAB.md item 9) and exits. SIGTERM asks
for a clean poweroff (forwarded to nspawn, which shuts the node's systemd down).

Usage (internal): python -m lab.launcher NODE /run/halab/NODE/launcher.json
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lab.names import NODE_PATH
from lab.network import net_down, net_up

REBOOT_STATUS = 133


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def main() -> int:
    name, cfg = sys.argv[1], json.loads(Path(sys.argv[2]).read_text())
    run_dir = Path(cfg["run_dir"])
    state = {"stopping": False, "child": None}

    def on_term(signum, _frame):
        state["stopping"] = True
        child = state["child"]
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_term)

    for d in cfg["cgroups"]:
        os.makedirs(d, exist_ok=True)

    def enter_cgroups():
        for d in cfg["cgroups"]:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    env = {"PATH": NODE_PATH, "LANG": "C.UTF-8",
           "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}
    boots = 0
    rc = None
    try:
        while not state["stopping"]:
            net_up(name)
            with open(cfg["console"], "ab" if boots else "wb") as console:
                child = subprocess.Popen(cfg["nspawn"], stdin=subprocess.DEVNULL, stdout=console,
                                         stderr=subprocess.STDOUT, env=env, cwd="/",
                                         preexec_fn=enter_cgroups)
            state["child"] = child
            if state["stopping"]:
                child.send_signal(signal.SIGTERM)
            (run_dir / "nspawn.pid").write_text(f"{child.pid}\n")
            log(f"{name}: boot {boots + 1}, nspawn pid {child.pid}")
            rc = child.wait()
            net_down(name)
            log(f"{name}: nspawn exited with status {rc}")
            if rc == REBOOT_STATUS and not state["stopping"]:
                boots += 1
                continue
            break
    except Exception as e:  # noqa: BLE001 - logged, the node is down either way
        log(f"{name}: launcher error: {e}")
        try:
            net_down(name)
        except Exception:  # noqa: BLE001
            pass
        rc = 1
    finally:
        for f in ("nspawn.pid", "launcher.pid"):
            p = run_dir / f
            try:
                if f == "nspawn.pid" or p.read_text().strip() == str(os.getpid()):
                    p.unlink()
            except OSError:
                pass
    return 0 if rc in (0, None) else 1


if __name__ == "__main__":
    sys.exit(main())
