"""Images: the base root filesystem (debootstrap, once, through the apt proxy) and each node's
overlay disk on top of it, provisioned with its name, machine-id, host keys, the lab key and
the /etc/hosts block of every node."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from lab.aptproxy import ACNG_DIR
from lab.host import in_root, mount_points, rmtree, run, umount_under, write, write_in_root
from lab.names import (
    APT_PROXY, APT_PROXY_PORT, BASE_DIR, BASE_PACKAGES, BASE_TMP, DEBOOTSTRAP_TIMEOUT,
    DEBOOTSTRAP_TRIES, MIRROR, NODE_RE, NODES_DIR, RUN_DIR, SECURITY_MIRROR, SSH_KEY, SUITE,
    LabError, address, node_index, say,
)

BASE_OK = BASE_DIR / ".halab-base-ok"

HOSTS_HEADER = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""
HOSTS_BEGIN = "# BEGIN halab nodes (managed by python -m lab)"
HOSTS_END = "# END halab nodes"

APT_CONF = f"""// lab nodes: apt goes through the host's apt-cacher-ng; every download bounded (LAB.md 13)
Acquire::http::Proxy "{APT_PROXY}";
Acquire::http::Pipeline-Depth "0";
Acquire::http::Timeout "30";
Acquire::Retries "3";
Acquire::Languages "none";
"""


def run_bounded(cmd, timeout, env=None) -> int:
    """Run a long command with its output shown (progress), killing its whole process group if
    it exceeds `timeout`. Returns the exit status (-1 on timeout)."""
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr,
                         env=env, start_new_session=True)
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        say(f"{cmd[0]} exceeded {timeout}s: killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        return -1
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        raise


def finish_base(root: Path) -> None:
    write(root / "etc/apt/sources.list",
           f"deb {MIRROR} {SUITE} main\n"
           f"deb {MIRROR} {SUITE}-updates main\n"
           f"deb {SECURITY_MIRROR} {SUITE}-security main\n")
    write(root / "etc/apt/apt.conf.d/90halab", APT_CONF)
    write(root / "etc/dpkg/dpkg.cfg.d/90halab-unsafe-io", "force-unsafe-io\n")
    write(root / "etc/ssh/sshd_config.d/90halab.conf",
           "PasswordAuthentication no\nPermitRootLogin prohibit-password\nUseDNS no\n")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    for f in ("etc/machine-id", "etc/resolv.conf", "etc/hostname", "etc/hosts",
              "usr/sbin/policy-rc.d"):
        with contextlib.suppress(FileNotFoundError):
            (root / f).unlink()
    write(root / "etc/machine-id", "")
    write(root / "etc/resolv.conf", "# lab nodes: names come from /etc/hosts only\n")
    write(root / "etc/hostname", "localhost\n")
    write(root / "etc/hosts", HOSTS_HEADER)
    # no unattended apt runs racing the deploy for the dpkg lock
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        link = root / "etc/systemd/system" / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to("/dev/null")
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    for cache in ("pkgcache.bin", "srcpkgcache.bin"):
        with contextlib.suppress(FileNotFoundError):
            (root / "var/cache/apt" / cache).unlink()


def ensure_base() -> None:
    if BASE_OK.exists():
        return
    if any(is_provisioned(n) for n in disk_nodes()):
        raise LabError(f"node disks exist but the base image {BASE_DIR} is missing or "
                       "incomplete: run `python -m lab down --purge` first")
    rmtree(BASE_DIR)
    env = {**os.environ, "http_proxy": f"http://127.0.0.1:{APT_PROXY_PORT}",
           "DEBIAN_FRONTEND": "noninteractive"}
    env.pop("https_proxy", None)
    for attempt in range(1, DEBOOTSTRAP_TRIES + 1):
        rmtree(BASE_TMP)
        say(f"building the base image with debootstrap (attempt {attempt}/{DEBOOTSTRAP_TRIES}, "
             f"bounded to {DEBOOTSTRAP_TIMEOUT}s); its progress follows")
        rc = run_bounded(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
             SUITE, str(BASE_TMP), MIRROR], DEBOOTSTRAP_TIMEOUT, env=env)
        umount_under(BASE_TMP)
        if rc == 0:
            break
        say(f"debootstrap failed (exit {rc})")
    else:
        rmtree(BASE_TMP)
        raise LabError(f"debootstrap failed {DEBOOTSTRAP_TRIES} times; see its output above and "
                       f"{ACNG_DIR / 'log'}")
    finish_base(BASE_TMP)
    write(BASE_TMP / ".halab-base-ok", time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    os.rename(BASE_TMP, BASE_DIR)
    say(f"base image ready in {BASE_DIR}")


def node_dir(name: str) -> Path:
    return NODES_DIR / name


def node_run_dir(name: str) -> Path:
    return RUN_DIR / name


def node_root(name: str) -> Path:
    return node_run_dir(name) / "root"


def is_provisioned(name: str) -> bool:
    return (node_dir(name) / "provisioned").exists()


def disk_nodes() -> list[str]:
    if not NODES_DIR.is_dir():
        return []
    return sorted(d.name for d in NODES_DIR.iterdir() if d.is_dir() and NODE_RE.match(d.name))


def node_names() -> list[str]:
    """The lab's nodes: every node that exists (has a disk), running or not."""
    return [n for n in disk_nodes() if is_provisioned(n)]


def ensure_mount(name: str) -> Path:
    root = node_root(name)
    if str(root) in mount_points():
        return root
    nd = node_dir(name)
    for sub in ("upper", "work"):
        (nd / sub).mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    r = run(["mount", "-t", "overlay", f"halab-{name}", "-o",
              f"lowerdir={BASE_DIR},upperdir={nd / 'upper'},workdir={nd / 'work'}", str(root)],
             check=False)
    if r.returncode != 0:
        raise LabError(f"cannot mount the overlay root of {name}: {r.stderr.strip()}")
    return root


def hosts_block(names) -> str:
    lines = [HOSTS_BEGIN] + [f"{address(n)}\t{n}" for n in sorted(names)] + [HOSTS_END]
    return "\n".join(lines) + "\n"


def write_hosts(name: str, names) -> None:
    """Write the lab's block into a node's /etc/hosts, keeping any other lines."""
    root = node_root(name)
    p = in_root(root, "etc/hosts")
    old = p.read_text() if p.exists() else HOSTS_HEADER
    kept, skip = [], False
    for line in old.splitlines(keepends=True):
        if line.startswith(HOSTS_BEGIN):
            skip = True
            continue
        if skip:
            if line.startswith(HOSTS_END):
                skip = False
            continue
        kept.append(line)
    text = "".join(kept)
    if text and not text.endswith("\n"):
        text += "\n"
    new = text + hosts_block(names)
    if new != old:
        write(p, new)


def authorized_keys(path: Path) -> str:
    """A node's authorized_keys with the lab's key (the current one, its comment "halab"), every
    other line kept: the deploy authorizes the backup node's key on its copy controller there,
    and a node started again (every `lab up`) must not lose it."""
    ours = Path(SSH_KEY + ".pub").read_text().strip()
    kept = [line for line in (path.read_text().splitlines() if path.exists() else [])
            if line.strip() and line.split()[-1] != ours.split()[-1]]
    return "\n".join([ours, *kept]) + "\n"


def provision(name: str) -> None:
    """Per-node files, written into the node's overlay (its own disk) before it boots."""
    root = ensure_mount(name)
    write_in_root(root, "etc/hostname", f"{name}\n")
    mid = in_root(root, "etc/machine-id")
    if not mid.exists() or not mid.read_text().strip():
        write(mid, uuid.uuid4().hex + "\n", 0o444)
    if not list((root / "etc/ssh").glob("ssh_host_*_key")):
        run(["ssh-keygen", "-A", "-f", str(root)])
    ssh_dir = in_root(root, "root/.ssh")
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    write_in_root(root, "root/.ssh/authorized_keys", authorized_keys(in_root(root, "root/.ssh/authorized_keys")), 0o600)
    (node_dir(name) / "provisioned").touch()


def require_node(name: str) -> None:
    node_index(name)
    if name not in node_names():
        existing = ", ".join(node_names()) or "none (run `make lab-up`)"
        raise LabError(f"unknown node {name!r}: existing nodes are {existing}")
