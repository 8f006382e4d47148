"""Backends for the lab: stand-ins for the OpenStack APIs behind HAProxy (LAB ONLY).

The project deploys the HA layer, not OpenStack, so on the lab HAProxy's API listeners have no
servers to balance to. lab/responder.py answers on each enabled API port of the site's
catalogue with the node's name; mariadb and rabbitmq_management are real services and are
left out. Installed by a pyinfra deploy of its own, never by deploy.py:

    pyinfra -y inventories/lab.py lab/backends_deploy.py        (idempotent)

From Python (tests, drills): install(), ports(), stop_port(node, port), start_port(node, port).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lab.machines import exec_
from lab.names import REPO_ROOT, LabError

UNIT = "lab-responder"
SCRIPT = "/usr/local/sbin/lab-responder"
CONFIG = "/etc/lab-responder.json"
DOWN_DIR = "/run/lab-responder/down"  # as in lab/responder.py
OWNED_DIR = "/etc/lab-responder.owned"  # as in lab/responder.py: ports a real lab backend serves
REAL_SERVICES = ("mariadb", "rabbitmq_management")  # deployed for real: no stand-in
DEPLOY_FILE = "lab/backends_deploy.py"


def api_ports(site) -> dict[str, int]:
    """{listener name: port on the controllers} for every enabled API listener of a Site."""
    return {s.name: s.backend_port or s.port for s in site.services if s.name not in REAL_SERVICES}


def ports() -> dict[str, int]:
    """The lab inventory's API ports (offline: reads inventories/lab.py, no SSH)."""
    from config.site import build_site, load_inventory

    hosts, group = load_inventory(REPO_ROOT / "inventories" / "lab.py")
    return api_ports(build_site(hosts, group))


def install(timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the backends deploy on every lab node; returns the CompletedProcess (output merged)."""
    pyinfra = str(Path(sys.executable).parent / "pyinfra")
    return subprocess.run(
        [pyinfra, "-y", "inventories/lab.py", DEPLOY_FILE],
        cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=timeout, env=dict(os.environ),
    )


def stop_port(node: str, port: int) -> None:
    """The API on `port` of `node` stops (its listening socket closes within a second)."""
    r = exec_(node, ["sh", "-c", f"mkdir -p {DOWN_DIR} && touch {DOWN_DIR}/{int(port)}"], timeout=30)
    if r.returncode != 0:
        raise LabError(f"{node}: could not stop port {port}: {r.stderr.strip()}")


def start_port(node: str, port: int) -> None:
    r = exec_(node, ["rm", "-f", f"{DOWN_DIR}/{int(port)}"], timeout=30)
    if r.returncode != 0:
        raise LabError(f"{node}: could not start port {port}: {r.stderr.strip()}")
