"""Machines: each node's processes (launcher, systemd-nspawn, its init), booting it detached,
waiting until it answers SSH, running commands inside it (nsenter or SSH) and cutting its power."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from lab.cgroups import all_cgroup_dirs, cgroup_dirs, cgroup_pids
from lab.host import (
    cmdline, find_procs, mount_points, pid_alive, read_pid, run, signal_pid, tcp_open, wait_gone,
    write,
)
from lab.images import node_dir, node_root, node_run_dir
from lab.names import (
    BOOT_SETTLE_TIMEOUT, BOOT_TIMEOUT, CMD_TIMEOUT, NODE_PATH, REPO_ROOT, SSH_KEY, LabError,
    address, node_index, say,
)
from lab.network import net_down

def launcher_pid(name: str):
    pid = read_pid(node_run_dir(name) / "launcher.pid")
    if pid and pid_alive(pid):
        argv = cmdline(pid)
        if "lab.launcher" in argv and name in argv:
            return pid
    return None


def nspawn_pid(name: str):
    pid = read_pid(node_run_dir(name) / "nspawn.pid")
    if pid and pid_alive(pid) and any(a.endswith("systemd-nspawn") for a in cmdline(pid)[:1]) \
            and f"--machine={name}" in cmdline(pid):
        return pid
    return None


def child_pids(pid: int) -> list[int]:
    kids = []
    with contextlib.suppress(OSError):
        for t in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                kids += [int(x) for x in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
    return kids


def init_pid(name: str):
    """Host PID of the node's init (systemd, PID 1 inside the node), or None."""
    ns = nspawn_pid(name)
    if not ns:
        return None
    todo = child_pids(ns)
    while todo:
        pid = todo.pop(0)
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("NSpid:"):
                    ids = line.split()[1:]
                    if len(ids) >= 2 and ids[-1] == "1":
                        return pid
        todo += child_pids(pid)
    return None


def node_procs(name: str) -> set[int]:
    """Every process belonging to a node: launcher, nspawn, and all in its cgroups."""
    pids = {p for p in (launcher_pid(name), nspawn_pid(name)) if p}
    pids |= set(find_procs(lambda a: "lab.launcher" in a and name in a))
    pids |= set(find_procs(lambda a: a[0].endswith("systemd-nspawn") and f"--machine={name}" in a))
    for cg in all_cgroup_dirs():
        if cg.name == f"lab-{name}":
            pids |= cgroup_pids(cg)
    pids.discard(os.getpid())
    return pids


def nspawn_command(name: str) -> list[str]:
    return [
        "systemd-nspawn", "--quiet", f"--directory={node_root(name)}", f"--machine={name}", "--boot",
        "--register=no", "--keep-unit", f"--network-namespace-path=/run/netns/{name}",
        "--console=read-only", "--capability=CAP_NET_ADMIN,CAP_IPC_LOCK",
        "--resolv-conf=off", "--timezone=off", "--link-journal=no",
    ]


def ensure_nspawn_tmpfs() -> None:
    d = Path("/run/systemd/nspawn")
    if str(d) in mount_points():
        return
    d.mkdir(parents=True, exist_ok=True)
    run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=16m", "halab-nspawn", str(d)])


def launch(name: str) -> None:
    """Start the node's launcher (detached): it puts nspawn in the node's cgroups, brings the
    link up, boots the node, restarts it on reboot, drops the link at power-off."""
    rd = node_run_dir(name)
    rd.mkdir(parents=True, exist_ok=True)
    cgroups = cgroup_dirs(name)
    write(rd / "cgroups.json", json.dumps(cgroups) + "\n")
    cfg = {"name": name, "cgroups": cgroups, "nspawn": nspawn_command(name),
           "run_dir": str(rd), "console": str(node_dir(name) / "console.log")}
    env = {"PATH": os.environ.get("PATH", NODE_PATH), "PYTHONPATH": str(REPO_ROOT),
           "LANG": "C.UTF-8"}
    write(rd / "launcher.json", json.dumps(cfg, indent=1) + "\n")
    p = subprocess.Popen([sys.executable, "-m", "lab.launcher", name, str(rd / "launcher.json")],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=open(rd / "launcher.log", "ab"), start_new_session=True,
                         cwd="/", env=env)
    write(rd / "launcher.pid", f"{p.pid}\n")


def console_tail(name: str, n=5) -> str:
    with contextlib.suppress(OSError):
        lines = (node_dir(name) / "console.log").read_text(errors="replace").splitlines()
        return " | ".join(l.strip() for l in lines[-n:] if l.strip())
    return ""


def ssh_argv(name: str, connect_timeout=5) -> list[str]:
    return ["ssh", "-i", SSH_KEY, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", f"ConnectTimeout={connect_timeout}", "-o", "ServerAliveInterval=5",
            f"root@{address(name)}"]


def wait_ready(names, booted=None, timeout=BOOT_TIMEOUT) -> None:
    """Wait (bounded) until each node's sshd answers a real SSH login (raise if one does not),
    then, for the nodes just `booted`, until systemd has finished booting (reported only)."""
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            if not launcher_pid(name):
                raise LabError(f"{name} failed to boot: {console_tail(name) or 'no console output'}"
                               f" (see {node_dir(name) / 'console.log'})")
            if not tcp_open(address(name), 22, 0.5):
                continue
            r = subprocess.run(ssh_argv(name, 3) + ["true"], capture_output=True, timeout=15,
                               stdin=subprocess.DEVNULL)
            if r.returncode == 0:
                pending.remove(name)
        if pending:
            time.sleep(0.3)
    if pending:
        raise LabError(f"node(s) {', '.join(pending)} not reachable by SSH within {timeout}s")
    # SSH answering is what `up` promises; the end of boot is awaited (bounded) and reported,
    # but a deployed service that is slow to start (e.g. RabbitMQ waiting for its peers) or has
    # failed is the deploy's business, not a lab failure.
    boot_deadline = time.monotonic() + BOOT_SETTLE_TIMEOUT
    for name in (names if booted is None else booted):
        left = max(2.0, boot_deadline - time.monotonic())
        try:
            state = exec_(name, ["systemctl", "is-system-running", "--wait"],
                          timeout=left).stdout.strip()
        except LabError:
            state = "starting"
        if state == "degraded":
            failed = exec_(name, ["systemctl", "--failed", "--no-legend", "--plain"]).stdout
            say(f"{name}: systemd degraded, failed units: "
                 f"{' '.join(l.split()[0] for l in failed.splitlines() if l.split())}")
        elif state != "running":
            say(f"{name}: reachable by SSH, systemd still {state or 'starting'} after "
                 f"{BOOT_SETTLE_TIMEOUT}s (see: python -m lab exec {name} -- systemctl list-jobs)")


def hard_stop(name: str) -> None:
    procs = node_procs(name)
    ip = init_pid(name)
    if ip:
        signal_pid(ip, signal.SIGKILL)
        wait_gone([ip], 5)
    if procs:
        wait_gone(procs, 5)
    for p in node_procs(name):
        signal_pid(p, signal.SIGKILL)
    wait_gone(node_procs(name), 10)
    net_down(name)
    for f in ("launcher.pid", "nspawn.pid"):
        with contextlib.suppress(FileNotFoundError):
            (node_run_dir(name) / f).unlink()


def exec_(name: str, cmd, timeout: float = CMD_TIMEOUT, via: str = "nsenter",
          input: str | None = None, capture: bool = True) -> subprocess.CompletedProcess:
    """Run `cmd` (a list) in the node, as root, and return the CompletedProcess (text mode).
    via="nsenter" (default) enters the node's namespaces (works while the node is isolated);
    via="ssh" goes through SSH with the lab key. Bounded by `timeout` (raises LabError)."""
    if isinstance(cmd, str):
        cmd = ["sh", "-c", cmd]
    if via == "ssh":
        argv = ssh_argv(name) + [shlex.join(cmd)]
    else:
        pid = init_pid(name)
        if not pid:
            node_index(name)
            raise LabError(f"{name} is not running")
        argv = ["nsenter", "-t", str(pid), "--all", "-r", "-w", "--", "/usr/bin/env", "-i",
                f"PATH={NODE_PATH}", "HOME=/root", "LANG=C.UTF-8", "TERM=dumb", *cmd]
    if capture:      # programs: own process group (killed whole on timeout), no stdin
        kw = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "start_new_session": True,
              "stdin": subprocess.DEVNULL}
    else:            # people (the CLI): the terminal as it is
        kw = {}
    if input is not None:
        kw["stdin"] = subprocess.PIPE
    p = subprocess.Popen(argv, text=True, **kw)
    try:
        out, err = p.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(p, capture)
        p.communicate()
        raise LabError(f"{name}: command timed out after {timeout}s: {shlex.join(cmd)}") from None
    except BaseException:
        _kill_tree(p, capture)
        p.wait()
        raise
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


def sh(name: str, command: str, timeout: float = 900) -> str:
    """`command` run by bash in the node; its stdout. A non-zero exit raises LabError with the
    command's start and its output's end (the lab's set-up and the benches: a step that must work)."""
    run = exec_(name, ["bash", "-c", command], timeout=timeout)
    if run.returncode != 0:
        raise LabError(f"{name}: {command[:300]}: exit {run.returncode}: {(run.stdout + run.stderr)[-1500:]}")
    return run.stdout


def _kill_tree(p: subprocess.Popen, own_group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if own_group:
            os.killpg(p.pid, signal.SIGKILL)
        else:
            p.kill()


def ssh(name: str, cmd, timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess:
    return exec_(name, cmd, timeout=timeout, via="ssh")
