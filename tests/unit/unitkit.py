"""Shared helpers of the fast tier (imported by the tests as `unitkit`; the fixtures are
re-exported by conftest.py): offline render, a haproxy.cfg parser, variant
inventories, and the real haproxy / keepalived config checks.

Nothing here connects to any host: inventories/prod.py is only loaded, rendered and
preflighted. keepalived's config test runs in a throwaway network namespace that is always
deleted, also when a test fails.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from config.files import HAPROXY_STATS_USERS  # noqa: E402
from config.render import render  # noqa: E402
from config.secrets import SECRETS, env_name  # noqa: E402
from config.site import load_inventory  # noqa: E402

PROD = REPO / "inventories" / "prod.py"
STATS_USERS_NAME = Path(HAPROXY_STATS_USERS).name  # rendered beside haproxy.cfg
PY = sys.executable

# The 24 files every controller gets (config/files.py FILES), relative to the host's root;
# the last three are the Galera-aware database check (mariadb_check_method "httpchk", the default),
# openstack-ha.pem the VIP's certificate (haproxy_tls, the default).
NODE_FILES = {
    "etc/sysctl.d/60-openstack-ha.conf",
    "etc/memcached.conf",
    "etc/mysql/mariadb.conf.d/99-openstack-galera-sst.cnf",
    "etc/mysql/mariadb.conf.d/99-openstack-galera.cnf",
    "etc/rabbitmq/rabbitmq-env.conf",
    "etc/rabbitmq/rabbitmq.conf",
    "etc/rabbitmq/enabled_plugins",
    "var/lib/rabbitmq/.erlang.cookie",
    "etc/openstack-ha/rabbitmq-monitor.curlrc",
    "etc/systemd/system/epmd.socket.d/openstack-ha.conf",
    "etc/systemd/system/rabbitmq-server.service.d/openstack-ha.conf",
    "etc/openstack-ha/firewall.nft",
    "etc/systemd/system/openstack-ha-firewall.service",
    "etc/haproxy/openstack-ha.pem",
    "etc/haproxy/openstack-ha-stats.cfg",
    "etc/haproxy/haproxy.cfg",
    "etc/systemd/system/haproxy.service.d/openstack-ha.conf",
    "etc/keepalived/check_alive.sh",
    "etc/keepalived/check_serving",
    "etc/keepalived/openstack-ha-auth.conf",
    "etc/keepalived/keepalived.conf",
    "etc/sysusers.d/openstack-ha-clustercheck.conf",
    "usr/local/sbin/galera-clustercheck",
    "etc/systemd/system/galera-clustercheck.service",
}
# The files a site with the article's `mysql-check` gets: no check service.
DBCHECK_FILES = {
    "etc/sysusers.d/openstack-ha-clustercheck.conf",
    "usr/local/sbin/galera-clustercheck",
    "etc/systemd/system/galera-clustercheck.service",
}

PEM_NAMES = ("100.2.30.40",)  # prod.py's VIP: the certificate names it (preflight warns otherwise)


def make_pem(days: int = 400, key_of: str = "", ips: tuple[str, ...] = PEM_NAMES) -> str:
    """A throwaway self-signed certificate (P-256, `days` long, naming `ips`) and its key, as
    one PEM bundle (openssl here); with `key_of`, that bundle's key instead (a key that does
    not match)."""
    with tempfile.TemporaryDirectory(prefix="ha-test-pem-") as d:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                        "-days", str(days), "-subj", "/CN=vip.test",
                        *(["-addext", "subjectAltName=" + ",".join(f"IP:{ip}" for ip in ips)] if ips else []), "-keyout", f"{d}/key.pem", "-out", f"{d}/crt.pem"],
                       check=True, capture_output=True, timeout=60)
        crt, key = Path(d, "crt.pem").read_text(), Path(d, "key.pem").read_text()
    return crt + (key_of[key_of.index("-----BEGIN PRIVATE KEY-----"):] if key_of else key)


def expired_pem() -> str:
    """A self-signed certificate that expired on 2026-11-02 and its key (openssl cannot make
    one: cryptography, pyinfra's SSH library's own dependency)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vip.test")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime(2024, 11, 1, tzinfo=dt.timezone.utc))
            .not_valid_after(dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode()
            + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode())


def key_lines(pem: str) -> list[str]:
    """The body lines of a PEM bundle's private key: what no output may ever show."""
    body = pem[pem.index("PRIVATE KEY-----") + len("PRIVATE KEY-----"):pem.rindex("-----END")]
    return [line for line in body.split("\n") if len(line) > 8]


# Fake secret values: distinctive, valid where they go (VRRP at most 8 characters; the
# certificate a real one, made here: preflight checks it with openssl).
FAKE_SECRETS = {
    "vrrp_auth_pass": "Vr8pAss1",
    "haproxy_stats_password": "fake-stats-Zq81x",
    "mariadb_admin_password": "fake-admin-Kp27w",
    "mariadb_sst_password": "fake-sst-Hj55m",
    "rabbitmq_password": "fake-rabbit-Tt90c",
    "rabbitmq_admin_password": "fake-rabbitadmin-Qw41d",
    "rabbitmq_monitor_password": "fake-rabbitmon-Lm63v",
    "rabbitmq_erlang_cookie": "FAKECOOKIEWXYZ0123456789",
    "haproxy_tls_pem": make_pem(),
}
assert set(FAKE_SECRETS) == set(SECRETS)


@pytest.fixture(autouse=True)
def hermetic_secrets(monkeypatch, tmp_path_factory):
    """No test sees a developer's real secrets: no HA_SECRET_* and a secrets file that
    does not exist (HA_SECRETS_FILE wins over the inventory's secrets_file)."""
    for name in SECRETS:
        monkeypatch.delenv(env_name(name), raising=False)
    monkeypatch.setenv("HA_SECRETS_FILE", str(tmp_path_factory.getbasetemp() / "no-such-secrets.json"))


def secrets_env(values: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for subprocesses: the given secrets as HA_SECRET_*, no others."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HA_SECRET")}
    env["HA_SECRETS_FILE"] = "/nonexistent/secrets.json"
    for name, value in (values or {}).items():
        env[env_name(name)] = value
    return env


# --- inventories ---------------------------------------------------------------------


def prod_data() -> tuple[list[tuple[str, dict]], dict]:
    """A deep copy of prod.py's (hosts, group_data), to modify for a variant."""
    hosts, group = load_inventory(PROD)
    return copy.deepcopy(hosts), copy.deepcopy(group)


LAB = REPO / "inventories" / "lab.py"


def lab_data(nodes=("node01", "node02", "node03")) -> tuple[list[tuple[str, dict]], dict]:
    """inventories/lab.py's (hosts, group_data) for the given nodes, offline: the lab need not
    exist (its node list is patched) and no secrets file is read or written."""
    import lab

    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(lab, "node_names", lambda: list(nodes))
        mp.setattr(lab, "ensure_secrets", lambda: None)
        for var in ("HA_LAB_NODES", "HA_LAB_DATA"):
            mp.delenv(var, raising=False)
        return load_inventory(LAB)
    finally:
        mp.undo()


def write_inventory(directory: Path, hosts, group, name: str = "site.py") -> Path:
    """Write an inventory file of prod.py's shape: `controllers = (hosts, group_data)`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"controllers = (\n    {hosts!r},\n    {group!r},\n)\n")
    return path


def variant(tmp_path: Path, hosts_change=None, **group_changes) -> Path:
    """An inventory file: prod.py's data with group keys changed (and hosts replaced)."""
    hosts, group = prod_data()
    group.update(group_changes)
    if hosts_change is not None:
        hosts = hosts_change(hosts)
    return write_inventory(tmp_path / "inventory", hosts, group)


def lab_file(path: str, name: str = "node01") -> str:
    """What controller `name` of the lab's inventory gets at `path` (config/files.py), rendered
    offline with placeholder secrets: the scripts the deploy installs, to run here. The lab's
    site, never prod.py's: a script run here must hold no address of real controllers."""
    from config.files import managed_files
    from config.secrets import PLACEHOLDERS
    from config.site import build_site

    hosts, group = lab_data()
    return next(f.content for f in managed_files(build_site(hosts, group), name, PLACEHOLDERS) if f.path == path)


def render_inventory(inventory: Path, out: Path) -> dict[str, list[Path]]:
    written = render(inventory, out)
    assert written, "render wrote nothing"
    return written


@pytest.fixture(scope="session")
def prod_render(tmp_path_factory) -> Path:
    """prod.py rendered once, offline, with placeholders (the `make render` output)."""
    out = tmp_path_factory.mktemp("prod-render")
    mp = pytest.MonkeyPatch()
    try:
        for name in SECRETS:
            mp.delenv(env_name(name), raising=False)
        mp.setenv("HA_SECRETS_FILE", str(out / "no-such-secrets.json"))
        render_inventory(PROD, out)
    finally:
        mp.undo()
    return out


# --- haproxy.cfg -----------------------------------------------------------------------

SECTION_KEYWORDS = ("global", "defaults", "frontend", "backend", "listen", "peers", "resolvers", "userlist")


@dataclass
class Section:
    kind: str  # global, defaults, listen, ...
    name: str  # "" for global/defaults
    lines: list[str] = field(default_factory=list)  # stripped, comments removed
    index: int = 0  # position in the file

    def values(self, keyword: str) -> list[str]:
        """The rest of every line starting with `keyword ` (e.g. "server", "option")."""
        prefix = keyword + " "
        return [line[len(prefix):] for line in self.lines if line.startswith(prefix)]

    def has(self, line: str) -> bool:
        return line in self.lines


def parse_haproxy(text: str) -> list[Section]:
    sections: list[Section] = []
    for raw in text.splitlines():
        stripped = raw.split("#", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not stripped.strip():
            continue
        if not raw[0].isspace():
            words = stripped.split()
            assert words[0] in SECTION_KEYWORDS, f"unexpected top-level line {raw!r}"
            sections.append(Section(words[0], words[1] if len(words) > 1 else "", index=len(sections)))
        else:
            assert sections, f"indented line before any section: {raw!r}"
            sections[-1].lines.append(" ".join(stripped.split()))
    return sections


def listens(sections: list[Section]) -> dict[str, Section]:
    out = {}
    for s in sections:
        if s.kind == "listen":
            assert s.name not in out, f"listen {s.name} twice"
            out[s.name] = s
    return out


def governing_defaults(sections: list[Section], section: Section) -> Section:
    """The `defaults` section in force for a section: the last one before it."""
    before = [s for s in sections if s.kind == "defaults" and s.index < section.index]
    assert before, f"no defaults before {section.kind} {section.name}"
    return before[-1]


# --- the real binaries -----------------------------------------------------------------


_PEM: list[Path] = []


def throwaway_pem() -> Path:
    """A throwaway self-signed certificate and its key in one PEM file (openssl), made once;
    its directory is removed when the test process exits."""
    if not _PEM:
        directory = Path(tempfile.mkdtemp(prefix="ha-test-pem-"))
        atexit.register(shutil.rmtree, directory, True)
        key, crt = directory / "key.pem", directory / "crt.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=vip.test",
                        "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True, timeout=60)
        pem = directory / "site.pem"
        pem.write_text(crt.read_text() + key.read_text())
        _PEM.append(pem)
    return _PEM[0]


def haproxy_check(cfg: Path, users: Path | None = None) -> subprocess.CompletedProcess:
    """haproxy -c on a rendered config and the stats account's file (HAPROXY_STATS_USERS,
    `users`, by default the one rendered beside it), loaded after it as the unit does; the
    certificate it names (a path on the controllers) replaced by a throwaway self-signed one:
    haproxy -c loads it."""
    if users is None and (cfg.parent / STATS_USERS_NAME).exists():
        users = cfg.parent / STATS_USERS_NAME
    text = cfg.read_text()
    if " ssl crt " in text:
        checked = throwaway_pem().parent / f"checked-{os.getpid()}-{abs(hash(str(cfg)))}.cfg"  # not beside a render
        checked.write_text(re.sub(r" ssl crt \S+", f" ssl crt {throwaway_pem()}", text))
        cfg = checked
    return subprocess.run(["haproxy", "-c", "-f", str(cfg), *(["-f", str(users)] if users else [])],
                          capture_output=True, text=True, timeout=30)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15, check=check)


@dataclass
class KeepalivedResult:
    returncode: int
    log: str
    output: str


_ns_counter = 0
# Whether the running test carries the `netns` marker (set by conftest.py before its fixtures);
# None outside pytest.
NETNS_MARKED: bool | None = None


@contextlib.contextmanager
def netns(interface: str = "enp8s0f0", *more: str):
    """A throwaway network namespace holding a veth named `interface` (and one per name of
    `more`), up, always deleted. Commands run in it with netns_sh(); `ip netns exec` gives each
    a private mount namespace."""
    global _ns_counter
    if NETNS_MARKED is False:
        raise AssertionError("this test creates a network namespace: mark it @pytest.mark.netns "
                             "(tests/unit/conftest.py), so that -m 'not netns' leaves it out")
    _ns_counter += 1
    ns = f"kat-{os.getpid()}-{_ns_counter}"
    _ip("netns", "add", ns)
    try:
        for i, name in enumerate((interface, *more)):
            _ip("link", "add", name, "netns", ns, "type", "veth", "peer", "name", f"kat-peer{i or ''}", "netns", ns)
            _ip("netns", "exec", ns, "ip", "link", "set", name, "up")
        yield ns
    finally:
        _ip("netns", "del", ns, check=False)


def netns_sh(ns: str, script: str, timeout: int = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", script], capture_output=True, text=True, timeout=timeout)


def keepalived_check(keepalived_dir: Path, interface: str = "enp8s0f0", *more: str) -> KeepalivedResult:
    """`keepalived --config-test` on a rendered /etc/keepalived dir, in a throwaway network
    namespace holding a veth named `interface` (and `more`), with the dir bind-mounted over
    /etc/keepalived inside the namespace's private mount namespace. The namespace is
    always deleted."""
    logdir = Path(tempfile.mkdtemp(prefix="kat-"))  # never inside the rendered tree
    log = logdir / "config-test.log"
    Path("/etc/keepalived").mkdir(parents=True, exist_ok=True)
    try:
        with netns(interface, *more) as ns:
            proc = netns_sh(ns, f"mount --bind '{keepalived_dir}' /etc/keepalived && "
                                f"keepalived --config-test='{log}' -f /etc/keepalived/keepalived.conf")
        text = log.read_text() if log.exists() else ""
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    return KeepalivedResult(proc.returncode, text, proc.stdout + proc.stderr)


def host_etc_keepalived_snapshot() -> dict[str, bytes]:
    d = Path("/etc/keepalived")
    if not d.exists():
        return {}
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def netns_list() -> set[str]:
    out = _ip("netns", "list", check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --- fake peers on 127.0.0.1 (the rendered scripts' probes, run here) ------------------------


def free_port() -> int:
    """A port of 127.0.0.1 that nobody listens on: a connection to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_once(answer: bytes, connections: int = 4) -> int:
    """A fake peer on 127.0.0.1: each of up to `connections` connections has its request read
    (up to 100 bytes, 1 s) and gets `answer`, then is closed. Returns its port (a daemon
    thread serves it)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(connections)

    def run():
        for _ in range(connections):
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(1)
                try:
                    conn.recv(100)
                except OSError:
                    pass
                conn.sendall(answer)
    threading.Thread(target=run, daemon=True).start()
    return srv.getsockname()[1]


# --- stand-ins for a node's tools (a fact's command run here, by dash) ------------------------


def stand_ins(bin_dir: Path, tools: dict[str, str], **env: str) -> dict[str, str]:
    """Each of `tools` ({name: sh body}) as an executable script in `bin_dir`; returns an
    environment whose PATH finds them first, with `env` added."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, body in tools.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", **env}
