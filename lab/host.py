"""Host helpers of the lab: bounded commands, atomic writes, processes, mounts, ports, and
the lock that lets one lab operation run at a time (across processes)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import shlex
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from lab.names import CMD_TIMEOUT, LOCK_FILE, STATE_DIR, LabError

def run(cmd, *, check=True, timeout=CMD_TIMEOUT, capture=True, env=None, input=None):
    try:
        p = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout, env=env,
                           input=input)
    except subprocess.TimeoutExpired:
        raise LabError(f"command timed out after {timeout}s: {shlex.join(cmd)}") from None
    except FileNotFoundError:
        raise LabError(f"command not found: {cmd[0]}") from None
    if check and p.returncode != 0:
        err = (p.stderr or p.stdout or "").strip().splitlines()
        raise LabError(f"{shlex.join(cmd)} failed (exit {p.returncode}): "
                       f"{err[-1] if err else 'no output'}")
    return p


def ip(*args, check=True):
    return run(["ip", *args], check=check)


def write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a file atomically (unchanged content and mode: left alone)."""
    with contextlib.suppress(OSError):
        if not path.is_symlink() and path.read_text() == text \
                and (path.stat().st_mode & 0o7777) == mode:
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.halab-tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def in_root(root: Path, rel: str) -> Path:
    """A path inside a node's root; refuse anything that would resolve outside it (symlinks)."""
    p = root / rel.lstrip("/")
    parent = p.parent.resolve()
    if not (parent == root.resolve() or str(parent).startswith(str(root.resolve()) + "/")):
        raise LabError(f"refusing to write {rel}: resolves outside {root}")
    if p.is_symlink():
        p.unlink()
    return p


def write_in_root(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    write(in_root(root, rel), text, mode)


def pid_alive(pid) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def cmdline(pid) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except (FileNotFoundError, ProcessLookupError):
        return []


def read_pid(path: Path):
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def signal_pid(pid, sig) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def terminate(pids, grace: float) -> None:
    """SIGTERM to each PID, then SIGKILL to those still alive after `grace` seconds (bounded)."""
    for p in pids:
        signal_pid(p, signal.SIGTERM)
    if not wait_gone(pids, grace):
        for p in pids:
            signal_pid(p, signal.SIGKILL)
        wait_gone(pids, 5)


def wait_gone(pids, timeout) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(pid_alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return not any(pid_alive(p) for p in pids)


def mount_points() -> list[str]:
    """Mount points, from /proc/self/mountinfo (octal escapes decoded)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            out.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), mp))
    return out


def mount_source(mountpoint: str):
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == mountpoint:
                return fields[fields.index("-") + 2]
    return None


def umount_under(path: Path) -> None:
    """Unmount everything at or below `path`, deepest first."""
    prefix = str(path).rstrip("/")
    for _ in range(5):
        mps = [m for m in mount_points() if m == prefix or m.startswith(prefix + "/")]
        if not mps:
            return
        for mp in sorted(set(mps), key=lambda m: m.count("/"), reverse=True):
            r = run(["umount", mp], check=False)
            if r.returncode != 0:
                run(["umount", "-l", mp], check=False)
    left = [m for m in mount_points() if m == prefix or m.startswith(prefix + "/")]
    if left:
        raise LabError(f"could not unmount {', '.join(left)}")


def rmtree(path: Path) -> None:
    """Remove a tree after making sure nothing is mounted inside it."""
    if not path.exists() and not path.is_symlink():
        return
    umount_under(path)
    shutil.rmtree(path)


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False

_tlock = threading.RLock()
_depth = 0
_lock_fd = None


@contextlib.contextmanager
def locked():
    global _depth, _lock_fd
    require_root()
    with _tlock:
        if _depth == 0:
            STATE_DIR.mkdir(parents=True, exist_ok=True)
            _lock_fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
            deadline = time.monotonic() + 600
            while True:
                try:
                    fcntl.flock(_lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        os.close(_lock_fd)
                        raise LabError(f"another lab command holds {LOCK_FILE} for 10 min")
                    time.sleep(0.2)
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
            if _depth == 0:
                fcntl.flock(_lock_fd, fcntl.LOCK_UN)
                os.close(_lock_fd)
                _lock_fd = None


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab must run as root (namespaces, mounts, bridges): "
                       "run it as root, e.g. sudo make lab-up")


def find_procs(pred) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            argv = cmdline(d)
            if argv and pred(argv) and pid_alive(int(d)):
                out.append(int(d))
    return out
