"""Cgroups (LAB.md item 5): each node in its own cgroup `lab-nodeXX` under the caller's, in the
unified, name=systemd, memory and pids hierarchies; found again by name for tear-down."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path

from lab.names import CGROUP_HIERARCHIES, RUN_DIR, LabError

def cgroup_dirs(name: str) -> list[str]:
    cur = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if ctrls == "":
                cur["unified"] = path
            for c in ctrls.split(","):
                cur[c.replace("name=", "")] = path
    dirs = []
    for h in CGROUP_HIERARCHIES:
        mnt = Path("/sys/fs/cgroup") / h
        if h in cur and (mnt / "cgroup.procs").exists():
            base = cur[h]
            # never nest a node inside another node's cgroup (a command run from inside a node)
            base = re.sub(r"/lab-node\d{2}(/.*)?$", "", base)
            dirs.append(str(mnt / base.lstrip("/") / f"lab-{name}"))
    return dirs


def all_cgroup_dirs() -> list[Path]:
    """Every lab-nodeXX cgroup on the machine (recorded or not), deepest-first removable."""
    found = set()
    for h in CGROUP_HIERARCHIES:
        mnt = Path("/sys/fs/cgroup") / h
        if not mnt.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(mnt):
            depth = dirpath[len(str(mnt)):].count("/")
            for d in list(dirnames):
                if re.match(r"^lab-node\d{2}$", d):
                    found.add(Path(dirpath) / d)
                    dirnames.remove(d)
            if depth >= 3:
                dirnames[:] = []
    for rec in RUN_DIR.glob("node*/cgroups.json") if RUN_DIR.exists() else []:
        with contextlib.suppress(ValueError, OSError):
            found |= {Path(d) for d in json.loads(rec.read_text())}
    return sorted(d for d in found if d.is_dir())


def cgroup_pids(cg: Path) -> set[int]:
    pids = set()
    if not cg.is_dir():
        return pids
    for dirpath, _, files in os.walk(cg):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError):
                pids |= {int(x) for x in Path(dirpath, "cgroup.procs").read_text().split()}
    return pids


def rm_cgroup(cg: Path) -> None:
    if not cg.is_dir():
        return
    for _ in range(50):
        for dirpath, dirnames, _ in sorted(os.walk(cg), key=lambda t: -t[0].count("/")):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
        if not cg.exists():
            return
        time.sleep(0.1)
    raise LabError(f"could not remove cgroup {cg} (processes left: {sorted(cgroup_pids(cg))})")
