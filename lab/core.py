"""The local lab: real Debian controller nodes on this machine.

Each node is a systemd-nspawn machine with systemd as init, booted from an overlayfs root (lower: a
debootstrap base image shared by all nodes; upper: the node's own disk, kept across stop/start and
`down`), inside its own network namespace whose only interface, `enp8s0f0`, is one end of a veth
pair plugged into a private bridge on the host. Nodes reach each other and the host's bridge
address (where an apt-cacher-ng serves the Debian mirror), nothing else: no forwarding, no NAT.

Everything the lab starts is recorded by PID under RUN_DIR and ended by PID by `down`; `down`
also finds and removes anything a failed or interrupted `up` left behind (it discovers namespaces,
links, mounts, cgroups and processes by their names, not only from its records).

Layout on the host:
  /var/tmp/halab/base/            base root filesystem (debootstrap), kept across `down`
  /var/tmp/halab/apt-cache/       apt-cacher-ng cache, kept across `down`
  /var/tmp/halab/nodes/NODE/      a node's disk (overlay upper + work), kept unless `down --purge`
  /var/tmp/halab/id_ed25519       the lab SSH key; secrets.json the lab's generated secrets
  /run/halab/                     runtime: PIDs, mount points, proxy config (removed by `down`)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import re
import secrets as _secrets
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

# --------------------------------------------------------------------------------------------
# Fixed names (other parts of the project rely on them)

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path("/var/tmp/halab")
RUN_DIR = Path("/run/halab")
BASE_DIR = STATE_DIR / "base"
BASE_TMP = STATE_DIR / "base.tmp"
APT_CACHE_DIR = STATE_DIR / "apt-cache"
NODES_DIR = STATE_DIR / "nodes"
SSH_KEY = str(STATE_DIR / "id_ed25519")
SECRETS_FILE = str(STATE_DIR / "secrets.json")
LOCK_FILE = STATE_DIR / "lock"

SUBNET_FILE = STATE_DIR / "subnet"     # the subnet of the lab that exists, if not the default


def _configured_subnet() -> str:
    if os.environ.get("LAB_SUBNET"):
        return os.environ["LAB_SUBNET"]
    with contextlib.suppress(OSError):
        return SUBNET_FILE.read_text().strip() or "10.77.0.0/24"
    return "10.77.0.0/24"


try:
    _net = ipaddress.ip_network(_configured_subnet(), strict=True)
    if _net.version != 4 or _net.prefixlen > 24:
        raise ValueError("not an IPv4 network of /24 or larger")
except ValueError as _e:
    # a configuration error, reported in one line even at import time
    raise SystemExit(f"lab: error: LAB_SUBNET={os.environ.get('LAB_SUBNET')!r}: {_e}") from None
SUBNET = str(_net)
PREFIXLEN = _net.prefixlen
HOST_ADDRESS = str(_net[1])
VIP = str(_net[100])
BRIDGE = "labbr0"
IFNAME = "enp8s0f0"
APT_PROXY_PORT = 3142
APT_PROXY = f"http://{HOST_ADDRESS}:{APT_PROXY_PORT}"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
SUITE = "bookworm"
BASE_PACKAGES = [
    "openssh-server", "python3", "iproute2", "systemd", "systemd-sysv", "dbus", "procps",
    "iputils-ping", "curl", "netcat-openbsd", "ca-certificates",
]
MAX_NODES = 9
NODE_RE = re.compile(r"^node(\d{2})$")
CGROUP_HIERARCHIES = ("unified", "systemd", "memory", "pids")
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# bounds (seconds)
DEBOOTSTRAP_TIMEOUT = 900
DEBOOTSTRAP_TRIES = 3
BOOT_TIMEOUT = 120
BOOT_SETTLE_TIMEOUT = 10
STOP_TIMEOUT = 45
CMD_TIMEOUT = 60


class LabError(Exception):
    """An error with a message meant for the operator (one line, no traceback)."""


# --------------------------------------------------------------------------------------------
# small helpers

_T0 = time.monotonic()


def _say(msg: str) -> None:
    print(f"[lab {time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def node_name(k: int) -> str:
    return f"node{k:02d}"


def node_index(name: str) -> int:
    m = NODE_RE.match(name or "")
    if not m or int(m.group(1)) < 1:
        raise LabError(f"invalid node name {name!r}: nodes are named node01, node02, ...")
    return int(m.group(1))


def address(name: str) -> str:
    """The node's address on the lab subnet (node k has host number 10+k)."""
    return str(_net[10 + node_index(name)])


def _veth(name: str) -> str:
    return f"veth-{name}"


def _run(cmd, *, check=True, timeout=CMD_TIMEOUT, capture=True, env=None, input=None):
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


def _ip(*args, check=True):
    return _run(["ip", *args], check=check)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
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


def _in_root(root: Path, rel: str) -> Path:
    """A path inside a node's root; refuse anything that would resolve outside it (symlinks)."""
    p = root / rel.lstrip("/")
    parent = p.parent.resolve()
    if not (parent == root.resolve() or str(parent).startswith(str(root.resolve()) + "/")):
        raise LabError(f"refusing to write {rel}: resolves outside {root}")
    if p.is_symlink():
        p.unlink()
    return p


def _write_in_root(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    _write(_in_root(root, rel), text, mode)


def _pid_alive(pid) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _cmdline(pid) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except (FileNotFoundError, ProcessLookupError):
        return []


def _read_pid(path: Path):
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _kill(pid, sig) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pids, timeout) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_pid_alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return not any(_pid_alive(p) for p in pids)


def _mounts() -> list[str]:
    """Mount points, from /proc/self/mountinfo (octal escapes decoded)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            out.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), mp))
    return out


def _mount_source(mountpoint: str):
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == mountpoint:
                return fields[fields.index("-") + 2]
    return None


def _umount_under(path: Path) -> None:
    """Unmount everything at or below `path`, deepest first."""
    prefix = str(path).rstrip("/")
    for _ in range(5):
        mps = [m for m in _mounts() if m == prefix or m.startswith(prefix + "/")]
        if not mps:
            return
        for mp in sorted(set(mps), key=lambda m: m.count("/"), reverse=True):
            r = _run(["umount", mp], check=False)
            if r.returncode != 0:
                _run(["umount", "-l", mp], check=False)
    left = [m for m in _mounts() if m == prefix or m.startswith(prefix + "/")]
    if left:
        raise LabError(f"could not unmount {', '.join(left)}")


def _rmtree(path: Path) -> None:
    """Remove a tree after making sure nothing is mounted inside it."""
    if not path.exists() and not path.is_symlink():
        return
    _umount_under(path)
    shutil.rmtree(path)


def _tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# locking: one lab operation at a time (across processes), re-entrant within a process

_tlock = threading.RLock()
_depth = 0
_lock_fd = None


@contextlib.contextmanager
def _locked():
    global _depth, _lock_fd
    _require_root()
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


# --------------------------------------------------------------------------------------------
# preflight

REQUIRED_COMMANDS = {
    "ip": "iproute2", "debootstrap": "debootstrap", "systemd-nspawn": "systemd-container",
    "apt-cacher-ng": "apt-cacher-ng", "ssh": "openssh-client", "ssh-keygen": "openssh-client",
    "nsenter": "util-linux", "mount": "mount", "umount": "mount", "wget": "wget",
    "nft": "nftables",
}


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab must run as root (namespaces, mounts, bridges): "
                       "run it as root, e.g. sudo make lab-up")


def preflight() -> None:
    """Check what `up` needs from this machine; raise LabError with the fix otherwise."""
    _require_root()
    missing = sorted({pkg for cmd, pkg in REQUIRED_COMMANDS.items() if not shutil.which(cmd)})
    if missing:
        raise LabError(f"missing package(s) {' '.join(missing)}: "
                       f"apt-get install -y {' '.join(missing)}")
    with open("/proc/filesystems") as f:
        if "overlay" not in f.read().split():
            _run(["modprobe", "overlay"], check=False)
            with open("/proc/filesystems") as f2:
                if "overlay" not in f2.read().split():
                    raise LabError("kernel feature missing: overlayfs (CONFIG_OVERLAY_FS)")
    for ns in ("net", "pid", "mnt", "uts", "ipc"):
        if not os.path.exists(f"/proc/self/ns/{ns}"):
            raise LabError(f"kernel feature missing: {ns} namespaces")
    if not (os.path.isdir("/sys/fs/cgroup/unified") or os.path.isdir("/sys/fs/cgroup/systemd")
            or os.path.exists("/sys/fs/cgroup/cgroup.controllers")):
        raise LabError("kernel feature missing: no cgroup hierarchy mounted under /sys/fs/cgroup")
    if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "0":
        raise LabError("IP forwarding is on (net.ipv4.ip_forward=1): the lab refuses to start "
                       "because its nodes must not reach beyond this machine")


def find_overlaps(subnet: str, addrs: list, routes: list) -> list[str]:
    """Pure check: which of the machine's addresses/routes (`ip -j addr` / `ip -j route show
    table all` output) overlap `subnet`, ignoring the lab's own bridge and default routes."""
    net = ipaddress.ip_network(subnet)
    found = []
    for link in addrs:
        dev = link.get("ifname")
        if dev == BRIDGE:
            continue
        for a in link.get("addr_info", []):
            if a.get("family") != "inet":
                continue
            iface = ipaddress.ip_interface(f"{a['local']}/{a.get('prefixlen', 32)}")
            if iface.network.overlaps(net):
                found.append(f"address {iface} on {dev}")
    for r in routes:
        dst, dev = r.get("dst"), r.get("dev")
        if not dst or dst == "default" or dev == BRIDGE:
            continue
        try:
            rnet = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if rnet.version == 4 and rnet.overlaps(net):
            found.append(f"route {dst} dev {dev or '?'} (table {r.get('table', 'main')})")
    return found


def check_subnet() -> None:
    addrs = json.loads(_ip("-j", "addr").stdout or "[]")
    routes = json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout or "[]")
    overlaps = find_overlaps(SUBNET, addrs, routes)
    if overlaps:
        raise LabError(f"lab subnet {SUBNET} overlaps this machine's networks "
                       f"({'; '.join(overlaps)}): set LAB_SUBNET to a free private /24")


# --------------------------------------------------------------------------------------------
# key and secrets

SECRET_KEYS = ("vrrp_auth_pass", "haproxy_stats_password", "mariadb_admin_password",
               "mariadb_sst_password", "rabbitmq_password", "rabbitmq_erlang_cookie")
_ALNUM = string.ascii_letters + string.digits


def _gen(alphabet: str, n: int) -> str:
    return "".join(_secrets.choice(alphabet) for _ in range(n))


def generate_secrets() -> dict:
    return {
        "vrrp_auth_pass": _gen(_ALNUM, 8),
        "haproxy_stats_password": _gen(_ALNUM, 24),
        "mariadb_admin_password": _gen(_ALNUM, 24),
        "mariadb_sst_password": _gen(_ALNUM, 24),
        "rabbitmq_password": _gen(_ALNUM, 24),
        "rabbitmq_erlang_cookie": _gen(string.ascii_uppercase, 32),
    }


def ensure_secrets() -> str:
    """Create the lab's secrets file once (mode 0600); add keys it lacks. Returns its path."""
    path = Path(SECRETS_FILE)
    current = {}
    if path.exists():
        try:
            current = json.loads(path.read_text())
        except ValueError:
            raise LabError(f"{path} is not valid JSON: remove it (python -m lab down --purge)")
    fresh = generate_secrets()
    merged = {**fresh, **{k: v for k, v in current.items() if v}}
    if merged != current or (path.stat().st_mode & 0o777) != 0o600:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        _write(path, json.dumps(merged, indent=2, sort_keys=True) + "\n", 0o600)
    return str(path)


def ensure_key() -> None:
    key = Path(SSH_KEY)
    if key.exists() and Path(SSH_KEY + ".pub").exists():
        return
    for p in (key, Path(SSH_KEY + ".pub")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "halab", "-f", SSH_KEY])
    os.chmod(SSH_KEY, 0o600)


# --------------------------------------------------------------------------------------------
# host network

def _link_exists(dev: str, netns: str | None = None) -> bool:
    args = ["-n", netns] if netns else []
    return _ip(*args, "link", "show", "dev", dev, check=False).returncode == 0


def _netns_list() -> list[str]:
    p = _ip("-j", "netns", "list", check=False)
    try:
        return [n["name"] for n in json.loads(p.stdout or "[]")]
    except ValueError:
        return []


def _sysctl_write(path: str, value: str) -> None:
    with contextlib.suppress(FileNotFoundError, PermissionError):
        Path(path).write_text(value)


def ensure_bridge() -> None:
    if not _link_exists(BRIDGE):
        r = _ip("link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0",
                "mcast_snooping", "0", check=False)
        if r.returncode != 0:
            raise LabError(f"cannot create bridge {BRIDGE} (kernel feature missing: bridge?): "
                           f"{r.stderr.strip()}")
    # The lab's packets must never be routed onwards, whatever the global setting becomes.
    _sysctl_write(f"/proc/sys/net/ipv4/conf/{BRIDGE}/forwarding", "0")
    _sysctl_write(f"/proc/sys/net/ipv6/conf/{BRIDGE}/disable_ipv6", "1")
    _ip("addr", "replace", f"{HOST_ADDRESS}/{PREFIXLEN}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")


def ensure_node_net(name: str) -> None:
    """The node's namespace and veth pair (the node end named enp8s0f0), plugged into the bridge.
    Addresses are set by the launcher at each boot (net_up) and dropped at power-off (net_down)."""
    veth = _veth(name)
    if name in _netns_list() and f"/run/netns/{name}" not in _mounts():
        _ip("netns", "del", name, check=False)      # a stale name (e.g. after a machine reboot)
    if name not in _netns_list():
        _ip("netns", "add", name)
    if _link_exists(veth) and not _link_exists(IFNAME, name):
        _ip("link", "del", veth)            # half-made pair: start again
    if not _link_exists(veth):
        r = _ip("link", "add", veth, "type", "veth", "peer", "name", IFNAME, "netns", name,
                check=False)
        if r.returncode != 0:
            raise LabError(f"cannot create veth pair for {name} (kernel feature missing: veth?): "
                           f"{r.stderr.strip()}")
    _sysctl_write(f"/proc/sys/net/ipv6/conf/{veth}/disable_ipv6", "1")
    _sysctl_write(f"/proc/sys/net/ipv4/conf/{veth}/forwarding", "0")
    _ip("link", "set", veth, "master", BRIDGE)
    _ip("-n", name, "link", "set", "lo", "up")


def net_up(name: str) -> None:
    """Power on the node's link: its address, default route (to the host only), host veth up."""
    _ip("-n", name, "addr", "replace", f"{address(name)}/{PREFIXLEN}", "dev", IFNAME)
    _ip("-n", name, "link", "set", IFNAME, "up")
    _ip("-n", name, "route", "replace", "default", "via", HOST_ADDRESS, "dev", IFNAME)
    _ip("link", "set", _veth(name), "up")


def net_down(name: str) -> None:
    """Power off the node's link: drop every address it holds (also a VIP) and its link
    (LAB.md item 9: the namespace outlives the container and would still answer ARP)."""
    if name not in _netns_list():
        return
    _ip("-n", name, "addr", "flush", "dev", IFNAME, check=False)
    _ip("-n", name, "link", "set", IFNAME, "down", check=False)
    _ip("link", "set", _veth(name), "down", check=False)


# --------------------------------------------------------------------------------------------
# apt-cacher-ng on the host

ACNG_DIR = RUN_DIR / "acng"
ACNG_PID = ACNG_DIR / "pid"


def _acng_config() -> str:
    return "\n".join([
        f"CacheDir: {APT_CACHE_DIR}",
        f"LogDir: {ACNG_DIR / 'log'}",
        "SupportDir: /usr/lib/apt-cacher-ng",
        f"Port: {APT_PROXY_PORT}",
        f"BindAddress: 127.0.0.1 {HOST_ADDRESS}",
        f"SocketPath: {ACNG_DIR / 'socket'}",
        f"PidFile: {ACNG_DIR / 'acng.pid'}",
        # only the Debian mirror, nothing else (ForceManaged refuses unknown hosts)
        "Remap-debrep: file:deb_mirror*.gz /debian deb.debian.org/debian ; file:backends_debian",
        "Remap-secdeb: security.debian.org security.debian.org/debian-security "
        "deb.debian.org/debian-security /debian-security ; deb.debian.org/debian-security",
        "ForceManaged: 1",
        "ExThreshold: 4",
        "ReportPage: acng-report.html",
        "NetworkTimeout: 30",
        "ForeGround: 1",
        "",
    ])


def _acng_running_pid():
    pid = _read_pid(ACNG_PID)
    if pid and _pid_alive(pid) and str(ACNG_DIR) in " ".join(_cmdline(pid)):
        return pid
    return None


def ensure_apt_proxy() -> None:
    if _acng_running_pid():
        if _tcp_open("127.0.0.1", APT_PROXY_PORT) and _tcp_open(HOST_ADDRESS, APT_PROXY_PORT):
            return
        _stop_apt_proxy()
    for host in ("127.0.0.1", HOST_ADDRESS):
        if _tcp_open(host, APT_PROXY_PORT, 0.5):
            raise LabError(f"address in use: {host}:{APT_PROXY_PORT} is held by another process "
                           f"(see: ss -ltnp 'sport = :{APT_PROXY_PORT}'); stop it first")
    conf = ACNG_DIR / "conf"
    (ACNG_DIR / "log").mkdir(parents=True, exist_ok=True)
    APT_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    _write(conf / "acng.conf", _acng_config())
    _write(conf / "backends_debian", f"{MIRROR}/\n")
    log = open(ACNG_DIR / "log" / "stdout.log", "ab")
    p = subprocess.Popen(["apt-cacher-ng", "-c", str(conf)], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd="/")
    log.close()
    _write(ACNG_PID, f"{p.pid}\n")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise LabError(f"apt-cacher-ng exited at start (exit {p.returncode}); "
                           f"see {ACNG_DIR / 'log'}")
        if _tcp_open("127.0.0.1", APT_PROXY_PORT) and _tcp_open(HOST_ADDRESS, APT_PROXY_PORT):
            return
        time.sleep(0.2)
    raise LabError(f"apt-cacher-ng did not listen on port {APT_PROXY_PORT} within 20 s")


def _stop_apt_proxy() -> None:
    pids = set()
    pid = _read_pid(ACNG_PID)
    if pid and str(ACNG_DIR) in " ".join(_cmdline(pid)):
        pids.add(pid)
    pids |= set(_find_procs(lambda argv: argv and argv[0].endswith("apt-cacher-ng")
                            and str(ACNG_DIR) in " ".join(argv)))
    for p in pids:
        _kill(p, signal.SIGTERM)
    if not _wait_gone(pids, 10):
        for p in pids:
            _kill(p, signal.SIGKILL)
        _wait_gone(pids, 5)


def _find_procs(pred) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            argv = _cmdline(d)
            if argv and pred(argv) and _pid_alive(int(d)):
                out.append(int(d))
    return out


# --------------------------------------------------------------------------------------------
# base image

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


def _run_bounded_streaming(cmd, timeout, env=None) -> int:
    """Run a long command with its output shown (progress), killing its whole process group if
    it exceeds `timeout`. Returns the exit status (-1 on timeout)."""
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr,
                         env=env, start_new_session=True)
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _say(f"{cmd[0]} exceeded {timeout}s: killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        return -1
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        raise


def _finish_base(root: Path) -> None:
    _write(root / "etc/apt/sources.list",
           f"deb {MIRROR} {SUITE} main\n"
           f"deb {MIRROR} {SUITE}-updates main\n"
           f"deb {SECURITY_MIRROR} {SUITE}-security main\n")
    _write(root / "etc/apt/apt.conf.d/90halab", APT_CONF)
    _write(root / "etc/dpkg/dpkg.cfg.d/90halab-unsafe-io", "force-unsafe-io\n")
    _write(root / "etc/ssh/sshd_config.d/90halab.conf",
           "PasswordAuthentication no\nPermitRootLogin prohibit-password\nUseDNS no\n")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    for f in ("etc/machine-id", "etc/resolv.conf", "etc/hostname", "etc/hosts",
              "usr/sbin/policy-rc.d"):
        with contextlib.suppress(FileNotFoundError):
            (root / f).unlink()
    _write(root / "etc/machine-id", "")
    _write(root / "etc/resolv.conf", "# lab nodes: names come from /etc/hosts only\n")
    _write(root / "etc/hostname", "localhost\n")
    _write(root / "etc/hosts", HOSTS_HEADER)
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
    if any(_provisioned(n) for n in _disk_nodes()):
        raise LabError(f"node disks exist but the base image {BASE_DIR} is missing or "
                       "incomplete: run `python -m lab down --purge` first")
    _rmtree(BASE_DIR)
    env = {**os.environ, "http_proxy": f"http://127.0.0.1:{APT_PROXY_PORT}",
           "DEBIAN_FRONTEND": "noninteractive"}
    env.pop("https_proxy", None)
    for attempt in range(1, DEBOOTSTRAP_TRIES + 1):
        _rmtree(BASE_TMP)
        _say(f"building the base image with debootstrap (attempt {attempt}/{DEBOOTSTRAP_TRIES}, "
             f"bounded to {DEBOOTSTRAP_TIMEOUT}s); its progress follows")
        rc = _run_bounded_streaming(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
             SUITE, str(BASE_TMP), MIRROR], DEBOOTSTRAP_TIMEOUT, env=env)
        _umount_under(BASE_TMP)
        if rc == 0:
            break
        _say(f"debootstrap failed (exit {rc})")
    else:
        _rmtree(BASE_TMP)
        raise LabError(f"debootstrap failed {DEBOOTSTRAP_TRIES} times; see its output above and "
                       f"{ACNG_DIR / 'log'}")
    _finish_base(BASE_TMP)
    _write(BASE_TMP / ".halab-base-ok", time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    os.rename(BASE_TMP, BASE_DIR)
    _say(f"base image ready in {BASE_DIR}")


# --------------------------------------------------------------------------------------------
# nodes: disks, mounts, provisioning

def _node_dir(name: str) -> Path:
    return NODES_DIR / name


def _run_dir(name: str) -> Path:
    return RUN_DIR / name


def _root(name: str) -> Path:
    return _run_dir(name) / "root"


def _provisioned(name: str) -> bool:
    return (_node_dir(name) / "provisioned").exists()


def _disk_nodes() -> list[str]:
    if not NODES_DIR.is_dir():
        return []
    return sorted(d.name for d in NODES_DIR.iterdir() if d.is_dir() and NODE_RE.match(d.name))


def node_names() -> list[str]:
    """The lab's nodes: every node that exists (has a disk), running or not."""
    return [n for n in _disk_nodes() if _provisioned(n)]


def _ensure_mount(name: str) -> Path:
    root = _root(name)
    if str(root) in _mounts():
        return root
    nd = _node_dir(name)
    for sub in ("upper", "work"):
        (nd / sub).mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    r = _run(["mount", "-t", "overlay", f"halab-{name}", "-o",
              f"lowerdir={BASE_DIR},upperdir={nd / 'upper'},workdir={nd / 'work'}", str(root)],
             check=False)
    if r.returncode != 0:
        raise LabError(f"cannot mount the overlay root of {name}: {r.stderr.strip()}")
    return root


def _hosts_block(names) -> str:
    lines = [HOSTS_BEGIN] + [f"{address(n)}\t{n}" for n in sorted(names)] + [HOSTS_END]
    return "\n".join(lines) + "\n"


def _write_hosts(name: str, names) -> None:
    """Write the lab's block into a node's /etc/hosts, keeping any other lines."""
    root = _root(name)
    p = _in_root(root, "etc/hosts")
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
    new = text + _hosts_block(names)
    if new != old:
        _write(p, new)


def _provision(name: str) -> None:
    """Per-node files, written into the node's overlay (its own disk) before it boots."""
    root = _ensure_mount(name)
    _write_in_root(root, "etc/hostname", f"{name}\n")
    mid = _in_root(root, "etc/machine-id")
    if not mid.exists() or not mid.read_text().strip():
        _write(mid, uuid.uuid4().hex + "\n", 0o444)
    if not list((root / "etc/ssh").glob("ssh_host_*_key")):
        _run(["ssh-keygen", "-A", "-f", str(root)])
    ssh_dir = _in_root(root, "root/.ssh")
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    _write_in_root(root, "root/.ssh/authorized_keys", Path(SSH_KEY + ".pub").read_text(), 0o600)
    (_node_dir(name) / "provisioned").touch()


# --------------------------------------------------------------------------------------------
# cgroups (LAB.md item 5: each node in its own cgroup, under the caller's, in each hierarchy)

def _cgroup_dirs(name: str) -> list[str]:
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


def _all_cgroup_dirs() -> list[Path]:
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


def _cgroup_pids(cg: Path) -> set[int]:
    pids = set()
    if not cg.is_dir():
        return pids
    for dirpath, _, files in os.walk(cg):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError):
                pids |= {int(x) for x in Path(dirpath, "cgroup.procs").read_text().split()}
    return pids


def _rm_cgroup(cg: Path) -> None:
    if not cg.is_dir():
        return
    for _ in range(50):
        for dirpath, dirnames, _ in sorted(os.walk(cg), key=lambda t: -t[0].count("/")):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
        if not cg.exists():
            return
        time.sleep(0.1)
    raise LabError(f"could not remove cgroup {cg} (processes left: {sorted(_cgroup_pids(cg))})")


# --------------------------------------------------------------------------------------------
# node processes

def _launcher_pid(name: str):
    pid = _read_pid(_run_dir(name) / "launcher.pid")
    if pid and _pid_alive(pid):
        argv = _cmdline(pid)
        if "lab.launcher" in argv and name in argv:
            return pid
    return None


def _nspawn_pid(name: str):
    pid = _read_pid(_run_dir(name) / "nspawn.pid")
    if pid and _pid_alive(pid) and any(a.endswith("systemd-nspawn") for a in _cmdline(pid)[:1]) \
            and f"--machine={name}" in _cmdline(pid):
        return pid
    return None


def _children(pid: int) -> list[int]:
    kids = []
    with contextlib.suppress(OSError):
        for t in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                kids += [int(x) for x in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
    return kids


def init_pid(name: str):
    """Host PID of the node's init (systemd, PID 1 inside the node), or None."""
    ns = _nspawn_pid(name)
    if not ns:
        return None
    todo = _children(ns)
    while todo:
        pid = todo.pop(0)
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("NSpid:"):
                    ids = line.split()[1:]
                    if len(ids) >= 2 and ids[-1] == "1":
                        return pid
        todo += _children(pid)
    return None


def _node_procs(name: str) -> set[int]:
    """Every process belonging to a node: launcher, nspawn, and all in its cgroups."""
    pids = {p for p in (_launcher_pid(name), _nspawn_pid(name)) if p}
    pids |= set(_find_procs(lambda a: "lab.launcher" in a and name in a))
    pids |= set(_find_procs(lambda a: a[0].endswith("systemd-nspawn") and f"--machine={name}" in a))
    for cg in _all_cgroup_dirs():
        if cg.name == f"lab-{name}":
            pids |= _cgroup_pids(cg)
    pids.discard(os.getpid())
    return pids


def nspawn_command(name: str) -> list[str]:
    return [
        "systemd-nspawn", "--quiet", f"--directory={_root(name)}", f"--machine={name}", "--boot",
        "--register=no", "--keep-unit", f"--network-namespace-path=/run/netns/{name}",
        "--console=read-only", "--capability=CAP_NET_ADMIN,CAP_IPC_LOCK",
        "--resolv-conf=off", "--timezone=off", "--link-journal=no",
    ]


def _ensure_nspawn_tmpfs() -> None:
    d = Path("/run/systemd/nspawn")
    if str(d) in _mounts():
        return
    d.mkdir(parents=True, exist_ok=True)
    _run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=16m", "halab-nspawn", str(d)])


def _launch(name: str) -> None:
    """Start the node's launcher (detached): it puts nspawn in the node's cgroups, brings the
    link up, boots the node, restarts it on reboot, drops the link at power-off."""
    rd = _run_dir(name)
    rd.mkdir(parents=True, exist_ok=True)
    cgroups = _cgroup_dirs(name)
    _write(rd / "cgroups.json", json.dumps(cgroups) + "\n")
    cfg = {"name": name, "cgroups": cgroups, "nspawn": nspawn_command(name),
           "run_dir": str(rd), "console": str(_node_dir(name) / "console.log")}
    env = {"PATH": os.environ.get("PATH", NODE_PATH), "PYTHONPATH": str(REPO_ROOT),
           "LANG": "C.UTF-8"}
    _write(rd / "launcher.json", json.dumps(cfg, indent=1) + "\n")
    p = subprocess.Popen([sys.executable, "-m", "lab.launcher", name, str(rd / "launcher.json")],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=open(rd / "launcher.log", "ab"), start_new_session=True,
                         cwd="/", env=env)
    _write(rd / "launcher.pid", f"{p.pid}\n")


def _console_tail(name: str, n=5) -> str:
    with contextlib.suppress(OSError):
        lines = (_node_dir(name) / "console.log").read_text(errors="replace").splitlines()
        return " | ".join(l.strip() for l in lines[-n:] if l.strip())
    return ""


def _ssh_argv(name: str, connect_timeout=5) -> list[str]:
    return ["ssh", "-i", SSH_KEY, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", f"ConnectTimeout={connect_timeout}", "-o", "ServerAliveInterval=5",
            f"root@{address(name)}"]


def _wait_ready(names, booted=None, timeout=BOOT_TIMEOUT) -> None:
    """Wait (bounded) until each node's sshd answers a real SSH login (raise if one does not),
    then, for the nodes just `booted`, until systemd has finished booting (reported only)."""
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            if not _launcher_pid(name):
                raise LabError(f"{name} failed to boot: {_console_tail(name) or 'no console output'}"
                               f" (see {_node_dir(name) / 'console.log'})")
            if not _tcp_open(address(name), 22, 0.5):
                continue
            r = subprocess.run(_ssh_argv(name, 3) + ["true"], capture_output=True, timeout=15,
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
            _say(f"{name}: systemd degraded, failed units: "
                 f"{' '.join(l.split()[0] for l in failed.splitlines() if l.split())}")
        elif state != "running":
            _say(f"{name}: reachable by SSH, systemd still {state or 'starting'} after "
                 f"{BOOT_SETTLE_TIMEOUT}s (see: python -m lab exec {name} -- systemctl list-jobs)")


def _require_node(name: str) -> None:
    node_index(name)
    if name not in node_names():
        existing = ", ".join(node_names()) or "none (run `make lab-up`)"
        raise LabError(f"unknown node {name!r}: existing nodes are {existing}")


def _infrastructure() -> None:
    preflight()
    check_subnet()
    for d in (STATE_DIR, NODES_DIR, RUN_DIR):
        d.mkdir(parents=True, exist_ok=True)
    os.chmod(STATE_DIR, 0o700)
    ensure_key()
    ensure_secrets()
    if SUBNET != "10.77.0.0/24" or SUBNET_FILE.exists():
        _write(SUBNET_FILE, SUBNET + "\n")
    ensure_bridge()
    _ensure_nspawn_tmpfs()
    ensure_apt_proxy()
    ensure_base()


def _bring_up(names) -> None:
    all_names = sorted(set(node_names()) | set(names))
    for name in names:
        ensure_node_net(name)
        _provision(name)
    for name in all_names:
        if str(_root(name)) in _mounts():
            _write_hosts(name, all_names)
    for name in names:
        if _launcher_pid(name) and _isolated(name):
            _say(f"healing {name} (its link was cut)")
            _ip("link", "set", _veth(name), "up")
    to_start = [n for n in names if not _launcher_pid(n)]
    for name in to_start:
        if _node_procs(name):      # e.g. its launcher was killed: nspawn would find it busy
            _say(f"{name}: ending the orphaned processes of its last boot")
            _hard_stop(name)
        _say(f"starting {name} ({address(name)})")
        _launch(name)
    _wait_ready(names, booted=to_start)


# --------------------------------------------------------------------------------------------
# public API

def up(nodes: int = 3) -> list[dict]:
    """Bring up nodes node01..nodeNN (idempotent: running nodes are left alone, stopped ones boot
    from their disks, missing ones are created). Nodes beyond N are left as they are."""
    if not isinstance(nodes, int) or not 1 <= nodes <= MAX_NODES:
        raise LabError(f"--nodes must be between 1 and {MAX_NODES}")
    with _locked():
        t0 = time.monotonic()
        _infrastructure()
        _bring_up([node_name(k) for k in range(1, nodes + 1)])
        _say(f"lab up: {nodes} node(s) ready in {time.monotonic() - t0:.1f}s; VIP {VIP}")
        return status()


def start(name: str) -> None:
    """Power a stopped or killed node on again; it boots from its own disk."""
    with _locked():
        _require_node(name)
        if _launcher_pid(name):
            return
        _infrastructure()
        _bring_up([name])


def stop(name: str, timeout: float = STOP_TIMEOUT) -> None:
    """Clean poweroff (SIGTERM to nspawn: the node's systemd shuts down), bounded; escalates to a
    power cut if the node does not stop in time."""
    with _locked():
        _require_node(name)
        lp = _launcher_pid(name)
        if lp:
            _kill(lp, signal.SIGTERM)
            if not _wait_gone([lp], timeout):
                _say(f"{name} did not power off within {timeout}s: cutting its power")
                _hard_stop(name)
        _hard_stop(name)  # whatever is left (nothing, normally)


def kill(name: str) -> None:
    """Power cut: SIGKILL to the node's init; its addresses are dropped at once."""
    with _locked():
        _require_node(name)
        pid = init_pid(name)
        if not pid:
            raise LabError(f"{name} is not running")
        _kill(pid, signal.SIGKILL)
        net_down(name)
        _wait_gone([pid], 10)
        _hard_stop(name)


def _hard_stop(name: str) -> None:
    procs = _node_procs(name)
    ip = init_pid(name)
    if ip:
        _kill(ip, signal.SIGKILL)
        _wait_gone([ip], 5)
    if procs:
        _wait_gone(procs, 5)
    for p in _node_procs(name):
        _kill(p, signal.SIGKILL)
    _wait_gone(_node_procs(name), 10)
    net_down(name)
    for f in ("launcher.pid", "nspawn.pid"):
        with contextlib.suppress(FileNotFoundError):
            (_run_dir(name) / f).unlink()


def isolate(name: str) -> None:
    """Cut the node's link (its host-side veth down): it can no longer reach anyone."""
    with _locked():
        _require_node(name)
        if not _launcher_pid(name):
            raise LabError(f"{name} is not running")
        _ip("link", "set", _veth(name), "down")


def heal(name: str) -> None:
    """Restore the node's link."""
    with _locked():
        _require_node(name)
        if not _launcher_pid(name):
            raise LabError(f"{name} is not running")
        _ip("link", "set", _veth(name), "up")


def _isolated(name: str) -> bool:
    try:
        return Path(f"/sys/class/net/{_veth(name)}/flags").exists() and \
            not int(Path(f"/sys/class/net/{_veth(name)}/flags").read_text(), 16) & 1
    except (OSError, ValueError):
        return False


def status() -> list[dict]:
    """Each node: name, address, state (running|stopped|absent), pid (host PID of its init)."""
    out = []
    names = sorted(set(node_names()) | {n for n in _disk_nodes()})
    if RUN_DIR.is_dir():
        names = sorted(set(names) | {d.name for d in RUN_DIR.iterdir() if NODE_RE.match(d.name)})
    for name in names:
        lp = _launcher_pid(name)
        state = "running" if lp else ("stopped" if _provisioned(name) else "absent")
        out.append({"name": name, "address": address(name), "state": state,
                    "pid": init_pid(name) if lp else None, "launcher_pid": lp,
                    "isolated": bool(lp) and _isolated(name)})
    return out


def exec_(name: str, cmd, timeout: float = CMD_TIMEOUT, via: str = "nsenter",
          input: str | None = None, capture: bool = True) -> subprocess.CompletedProcess:
    """Run `cmd` (a list) in the node, as root, and return the CompletedProcess (text mode).
    via="nsenter" (default) enters the node's namespaces (works while the node is isolated);
    via="ssh" goes through SSH with the lab key. Bounded by `timeout` (raises LabError)."""
    if isinstance(cmd, str):
        cmd = ["sh", "-c", cmd]
    if via == "ssh":
        argv = _ssh_argv(name) + [shlex.join(cmd)]
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


def _kill_tree(p: subprocess.Popen, own_group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if own_group:
            os.killpg(p.pid, signal.SIGKILL)
        else:
            p.kill()


def ssh(name: str, cmd, timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess:
    return exec_(name, cmd, timeout=timeout, via="ssh")


def remove(name: str) -> None:
    """Delete one node entirely (processes, link, namespace, mount, cgroups, disk)."""
    with _locked():
        node_index(name)
        if name not in _disk_nodes() and name not in _netns_list():
            raise LabError(f"unknown node {name!r}: existing nodes are "
                           f"{', '.join(node_names()) or 'none'}")
        if _launcher_pid(name):
            stop(name)
        _teardown_node(name)
        _rmtree(_node_dir(name))
        others = node_names()
        for n in others:
            if str(_root(n)) in _mounts():
                _write_hosts(n, others)


def _teardown_node(name: str) -> None:
    _hard_stop(name)
    _umount_under(_run_dir(name))
    if name in _netns_list():
        _ip("netns", "del", name, check=False)
    if _link_exists(_veth(name)):
        _ip("link", "del", _veth(name), check=False)
    for cg in _all_cgroup_dirs():
        if cg.name == f"lab-{name}":
            _rm_cgroup(cg)
    _rmtree(_run_dir(name))


def down(purge: bool = False) -> None:
    """Remove everything the lab made on this machine (processes by PID, mounts, namespaces,
    veths, bridge, cgroups, the apt proxy). Keeps the base image, apt cache and node disks;
    `purge` also removes the node disks and the lab's secrets."""
    _require_root()
    with _locked():
        t0 = time.monotonic()
        names = set(_disk_nodes()) | {n for n in _netns_list() if NODE_RE.match(n)}
        if RUN_DIR.is_dir():
            names |= {d.name for d in RUN_DIR.iterdir() if NODE_RE.match(d.name)}
        names |= {cg.name[4:] for cg in _all_cgroup_dirs()}
        names |= {l[5:] for l in _host_links() if l.startswith("veth-") and NODE_RE.match(l[5:])}
        # clean poweroff of all running nodes at once, then the rest by force
        launchers = {n: _launcher_pid(n) for n in names}
        for n, lp in launchers.items():
            if lp:
                _kill(lp, signal.SIGTERM)
        _wait_gone([p for p in launchers.values() if p], STOP_TIMEOUT)
        for n in sorted(names):
            _teardown_node(n)
        _stop_apt_proxy()
        for link in _host_links():
            if link.startswith("veth-node"):
                _ip("link", "del", link, check=False)
        if _link_exists(BRIDGE):
            _ip("link", "del", BRIDGE, check=False)
        if _mount_source("/run/systemd/nspawn") == "halab-nspawn":
            _umount_under(Path("/run/systemd/nspawn"))
        _umount_under(RUN_DIR)
        _rmtree(RUN_DIR)
        _rmtree(BASE_TMP)
        if BASE_DIR.exists() and not BASE_OK.exists():
            _rmtree(BASE_DIR)           # an interrupted base build
        if purge:
            _umount_under(NODES_DIR)
            _rmtree(NODES_DIR)
            for f in (SECRETS_FILE, SUBNET_FILE):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f)
        _say(f"lab down in {time.monotonic() - t0:.1f}s"
             + (" (node disks and secrets purged)" if purge else ""))


def _host_links() -> list[str]:
    return os.listdir("/sys/class/net")


def leftovers() -> list[str]:
    """What the lab would have left on this machine (empty after a clean `down`)."""
    found = []
    found += [f"netns {n}" for n in _netns_list() if NODE_RE.match(n)]
    found += [f"link {l}" for l in _host_links() if l == BRIDGE or l.startswith("veth-node")]
    found += [f"mount {m}" for m in _mounts()
              if m.startswith(str(RUN_DIR)) or m.startswith(str(STATE_DIR))
              or m.startswith("/run/netns/node")]
    if _mount_source("/run/systemd/nspawn") == "halab-nspawn":
        found.append("mount /run/systemd/nspawn")
    found += [f"cgroup {c}" for c in _all_cgroup_dirs()]
    found += [f"process {p} {' '.join(_cmdline(p))[:80]}" for p in _find_procs(
        lambda a: "lab.launcher" in a
        or (a[0].endswith("systemd-nspawn") and any(x.startswith("--machine=node") for x in a))
        or (a[0].endswith("apt-cacher-ng") and str(ACNG_DIR) in " ".join(a)))]
    return found
