"""Debian's keystone as a lab backend behind the VIP (LAB ONLY; issue 21 item 1).

The project deploys the HA layer, not OpenStack; on the lab the API listeners are answered by
stand-ins (lab/responder.py). This puts a real OpenStack service behind one of them, configured
as operators run it on this layer: bookworm's `keystone` package (22.0.x, uwsgi under the
package's systemd unit keystone.service) on every lab node, on the node's address at the
catalogue's keystone backend port, its database through the VIP (oslo.db), the deploy's
memcached servers for its cache (oslo.cache), notifications to RabbitMQ with the transport_url
the deploy prints (oslo.messaging). Installed by a pyinfra deploy of its own, never by deploy.py:

    pyinfra -y inventories/lab.py lab/keystone_deploy.py      (idempotent; or: make keystone)
    python -m lab.keystone install | check | release

What the package does, read from its 22.0.2-0+deb12u6 maintainer scripts (the reason for each
choice below):
- debconf keystone/configure_db (default false): true would let dbconfig-common make a database
  of its own; keystone/create-admin-tenant (false): true runs fernet_setup and bootstrap on each
  node at install; keystone/register-endpoint (false). All three preseeded false: the deploy
  does each once, for the whole site.
- keystone.service runs `/etc/init.d/keystone systemd-start` as user keystone, which execs
  uwsgi_python3 with `--http-socket :5000 --ini /etc/keystone/keystone-uwsgi.ini`: every address
  of the node, where HAProxy already binds the VIP on that port (nonlocal bind) and the stand-in
  binds the node's address. The script sources /etc/default/keystone after building its
  arguments, so that file sets DAEMON_ARGS: the node's address and an ini of ours (the package's
  asks for 8 processes x 32 threads and its apparmor profile; a lab node has neither the cores
  nor, in a container, apparmor).
- postinst starts keystone at once (with its default keystone.conf: sqlite): our files for
  /etc/default and the ini are in place before the package, the stand-in has let the port go.

Secrets: the keystone database account's password and the keystone admin's, generated once into
SECRETS_FILE (0600, beside the lab's secrets.json, removed by `lab down --purge`), never in git
or a log. Not in secrets.json itself: that file holds exactly the deploy's secrets (the rotation
drill, test_85, checks its names are config/secrets.py's).

Everything here but install(), release(), check() and the Client is pure, and unit-tested
(tests/unit/test_lab_keystone.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import requests
from keystoneauth1 import exceptions as ksa
from keystoneauth1 import session as ksa_session
from keystoneauth1.identity import v3

from lab.names import CA_FILE, KEYSTONE_SECRETS_FILE, REPO_ROOT, LabError

LISTENER = "keystone_internal"   # the catalogue's keystone listener (config/catalogue.py)
PACKAGE = "keystone"
UNIT = "keystone"
CONF = "/etc/keystone/keystone.conf"
UWSGI_INI = "/etc/keystone/lab-uwsgi.ini"
DEFAULTS_FILE = "/etc/default/keystone"   # sourced by the package's init script
FERNET_DIR = "/etc/keystone/fernet-keys"
CREDENTIAL_DIR = "/etc/keystone/credential-keys"
KEY_DIRS = (FERNET_DIR, CREDENTIAL_DIR)
DB_NAME = "keystone"
DB_USER = "keystone"
# The bootstrapped user and its project: names of the lab's own (not the database's admin
# account's); the role is keystone-manage bootstrap's default, the one keystone's policies name.
ADMIN_USER = "lab-admin"
ADMIN_PROJECT = "lab-admin"
REGION = "RegionOne"
DOMAIN = "default"
PROCESSES = 2   # uwsgi workers per node: 3 nodes on a 2-core machine
THREADS = 4
SECRETS_FILE = Path(KEYSTONE_SECRETS_FILE)
SECRET_NAMES = ("keystone_db_password", "keystone_admin_password")
# The fernet and credential key repositories, keys 0 (staged) and 1 (primary) as
# keystone-manage fernet_setup makes them: lab secrets, the same bytes uploaded to every node.
KEYS = {f"keystone_{kind}_key_{i}": (directory, str(i))
        for kind, directory in (("fernet", FERNET_DIR), ("credential", CREDENTIAL_DIR)) for i in (0, 1)}
DEPLOY_FILE = "lab/keystone_deploy.py"
PROJECT_PREFIX = "lab-ks-"   # projects the client makes (and deletes)
# On the first controller after bootstrap: the SHA-256 of the admin password bootstrapped (a
# changed secret bootstraps again: keystone-manage bootstrap resets a password that does not
# authenticate). A 24-character random password's digest reveals nothing.
BOOTSTRAP_MARKER = "/var/lib/keystone/lab-bootstrap.sha256"

# debconf answers: keystone's own questions (templates of 22.0.2-0+deb12u6), all "no".
PRESEED = (
    ("keystone/configure_db", "boolean", "false"),
    ("keystone/create-admin-tenant", "boolean", "false"),
    ("keystone/register-endpoint", "boolean", "false"),
)


# --- secrets ---------------------------------------------------------------------------------


def generate_secrets(have: dict | None = None) -> dict[str, str]:
    """The keystone secrets: those in `have` kept, the missing ones fresh (24 letters and digits,
    as the lab's others: no character a URL or an ini file would need quoted)."""
    from lab.keys import _ALNUM, _gen

    have = {k: v for k, v in (have or {}).items() if isinstance(v, str) and v}
    made = {name: have.get(name) or _gen(_ALNUM, 24) for name in SECRET_NAMES}
    made |= {name: have.get(name) or fernet_key() for name in KEYS}
    return made | {k: v for k, v in have.items() if k not in made}


def fernet_key() -> str:
    """A key as cryptography's Fernet.generate_key() makes one: 32 random bytes, URL-safe base64."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def ensure_secrets(path: Path = SECRETS_FILE) -> dict[str, str]:
    """The keystone secrets, generated once into `path` (0600); keys it lacks added."""
    from lab.host import write
    from lab.keys import read_secrets

    current = read_secrets(path, "remove it (keystone's database account and admin are then given new passwords)")
    merged = generate_secrets(current)
    if merged != current or (path.stat().st_mode & 0o777) != 0o600:
        write(path, json.dumps(merged, indent=2, sort_keys=True) + "\n", 0o600)
    return merged


# --- what the nodes get (pure) ---------------------------------------------------------------


def backend_port(site) -> int:
    svc = next(s for s in site.services if s.name == LISTENER)
    return svc.backend_port or svc.port


def public_url(site) -> str:
    """keystone's endpoint URL in its catalogue: the VIP's listener, https when it takes TLS."""
    svc = next(s for s in site.services if s.name == LISTENER)
    scheme = "https" if svc.takes_tls(site.data["haproxy_tls"]) else "http"
    return f"{scheme}://{site.data['vip']}:{svc.port}/v3"


def database_url(site, password: str) -> str:
    """oslo.db's connection: through the VIP's database listener, as every service connects."""
    d = site.data
    return f"mysql+pymysql://{DB_USER}:{urllib.parse.quote(password, safe='')}@{d['vip']}:{d['mariadb_port']}/{DB_NAME}"


def render_conf(site, site_secrets: dict, ks_secrets: dict) -> str:
    """keystone.conf: database through the VIP, the deploy's memcached servers, notifications
    with the deploy's transport_url (Site.client_strings: what the deploy prints), fernet tokens."""
    strings = site.client_strings(site_secrets)
    return f"""# Lab only (lab/keystone_deploy.py): keystone behind the VIP's {LISTENER} listener.
[DEFAULT]
# uwsgi writes the log (logto in {UWSGI_INI})
use_stderr = true

[database]
connection = {database_url(site, ks_secrets['keystone_db_password'])}
# HAProxy's database listener closes idle sessions: recycle pooled connections before it does
connection_recycle_time = 600
# what the deploy tells the services (causal reads across a failover)
mysql_wsrep_sync_wait = {strings['mysql_wsrep_sync_wait']}

[cache]
enabled = true
backend = oslo_cache.memcache_pool
memcache_servers = {strings['memcached_servers']}

[oslo_messaging_notifications]
driver = messagingv2
transport_url = {strings['transport_url']}

[oslo_messaging_rabbit]
# what the deploy tells the services (a silent broker left within one to two timeouts)
heartbeat_timeout_threshold = {strings['heartbeat_timeout_threshold']}

[oslo_middleware]
enable_proxy_headers_parsing = true

[token]
provider = fernet

[fernet_tokens]
key_repository = {FERNET_DIR}/

[credential]
key_repository = {CREDENTIAL_DIR}/
"""


def render_uwsgi_ini(address: str, port: int) -> str:
    """The uwsgi ini of the package's, minus its apparmor profile, with lab-size workers; the
    socket is set in DAEMON_ARGS (render_defaults)."""
    return f"""# Lab only (lab/keystone_deploy.py): keystone's uwsgi on {address}:{port}.
# The package's /etc/keystone/keystone-uwsgi.ini, but: {PROCESSES} processes of {THREADS} threads, no apparmor.
[uwsgi]
buffer-size = 65535
rem-header = Content-Length
master = true
thunder-lock = true
lazy-apps = true
paste-logger = true
no-orphans = true
die-on-term = true
enable-threads = true
processes = {PROCESSES}
threads = {THREADS}
listen = 100
logto = /var/log/keystone/keystone.log
name = keystone-api
uid = keystone
gid = keystone
chdir = /var/lib/keystone
wsgi-file = /usr/bin/keystone-wsgi-public
"""


def render_defaults(address: str, port: int) -> str:
    """/etc/default/keystone: the package's init script sources it after building its uwsgi
    arguments, so DAEMON_ARGS set here replace them (the node's address, not every address)."""
    return f"""# Lab only (lab/keystone_deploy.py): keystone's uwsgi on the node's address, not on every
# address (HAProxy binds the VIP on port {port} on every node).
DAEMON_ARGS="--http-socket {address}:{port} --ini {UWSGI_INI}"
"""


def preseed_text() -> str:
    """debconf-set-selections input: keystone's questions answered "no", marked seen."""
    return "".join(f"{PACKAGE} {q} {t} {v}\n{PACKAGE} {q} seen true\n" for q, t, v in PRESEED)


def native_hash(password: str) -> str:
    from config.accounts import native_hash as h

    return h(password)


def _q(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def db_statements(hosts: list[str], password: str, present: dict[str, str] | None = None,
                  db_exists: bool = False) -> list[str]:
    """SQL that makes keystone's database and its account from each of `hosts` (the controllers:
    HAProxy connects from them) right; empty when they are. `present`: {host part: SHA-256 of
    the account's authentication_string} as found (account_digests). Only the password's hash
    travels. Pure."""
    want = native_hash(password)
    digest = hashlib.sha256(want.encode()).hexdigest()
    sql = [] if db_exists else [f"CREATE DATABASE IF NOT EXISTS {DB_NAME}"]
    for h in hosts:
        if (present or {}).get(h) == digest:
            continue
        who = f"{_q(DB_USER)}@{_q(h)}"
        sql += [f"CREATE USER IF NOT EXISTS {who} IDENTIFIED BY PASSWORD {_q(want)}",
                f"ALTER USER {who} IDENTIFIED BY PASSWORD {_q(want)}",
                f"GRANT ALL PRIVILEGES ON {DB_NAME}.* TO {who}"]
    return sql


def bootstrap_args(site) -> list[str]:
    """keystone-manage bootstrap's arguments (the password goes in OS_BOOTSTRAP_PASSWORD)."""
    url = public_url(site)
    return ["--bootstrap-username", ADMIN_USER, "--bootstrap-project-name", ADMIN_PROJECT,
            "--bootstrap-service-name", "keystone",
            "--bootstrap-region-id", REGION, "--bootstrap-public-url", url,
            "--bootstrap-internal-url", url, "--bootstrap-admin-url", url]


def password_digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def needs_bootstrap(state: dict, password: str) -> bool:
    """Bootstrap when the admin is missing, or was bootstrapped with another password (or by
    something else: no marker). Pure."""
    return not state["user"] or state["bootstrapped"] != password_digest(password)


def parse_state(lines: list[str]) -> dict:
    """The KeystoneState fact's output: {"installed": bool, "db": bool, "accounts": {host:
    sha256}, "user": bool (the bootstrapped user exists), "bootstrapped": marker digest, "synced": bool, "keys": {dir: {file:
    sha256}}}. Pure."""
    state = {"db": False, "accounts": {}, "user": False, "synced": False, "installed": False,
             "bootstrapped": "", "keys": {d: {} for d in KEY_DIRS}}
    for line in lines:
        kind, _, rest = line.strip().partition("=")
        if kind == "db":
            state["db"] = rest == "1"
        elif kind == "account":
            h, _, digest = rest.rpartition("=")
            state["accounts"][h] = digest
        elif kind == "user":
            state["user"] = rest not in ("", "0")
        elif kind == "synced":
            state["synced"] = rest == "0"
        elif kind == "bootstrapped":
            state["bootstrapped"] = rest
        elif kind == "installed":
            state["installed"] = rest == "yes"
        elif kind == "key":
            d, _, f_digest = rest.partition(":")
            name, _, digest = f_digest.partition("=")
            if d in state["keys"] and name and digest:
                state["keys"][d][name] = digest
    return state


# --- on the lab (needs a running, deployed lab) ---------------------------------------------


def install(timeout: float = 1200) -> subprocess.CompletedProcess:
    """Run the keystone deploy on every lab node; the CompletedProcess (output merged)."""
    ensure_secrets()
    pyinfra = str(Path(sys.executable).parent / "pyinfra")
    return subprocess.run(
        [pyinfra, "-y", "inventories/lab.py", DEPLOY_FILE],
        cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=timeout, env=dict(os.environ),
    )


def _port() -> int:
    from lab import sitemodel

    return sitemodel.backend_port(LISTENER)


def stop(node: str) -> None:
    """keystone stopped on `node` (its port refused: the stand-in does not take it back)."""
    _systemctl(node, "stop")


def start(node: str) -> None:
    _systemctl(node, "start")


def _systemctl(node: str, verb: str) -> None:
    from lab.machines import exec_

    r = exec_(node, ["systemctl", verb, f"{UNIT}.service"], timeout=60)
    if r.returncode != 0:
        raise LabError(f"{node}: systemctl {verb} {UNIT}: {r.stderr.strip()}")


def release(nodes: list[str] | None = None) -> None:
    """The port back to the stand-in on every node: keystone stopped and disabled, the owned
    marker removed (the other lab tests expect the stand-in's answers on every API port)."""
    from lab.backends import OWNED_DIR
    from lab.images import node_names
    from lab.machines import exec_

    port = _port()
    for node in nodes or node_names():
        r = exec_(node, ["sh", "-c", f"systemctl disable --now {UNIT}.service 2>/dev/null; rm -f {OWNED_DIR}/{port}"],
                  timeout=60)
        if r.returncode != 0:
            raise LabError(f"{node}: could not release port {port}: {r.stderr.strip()}")


class KeystoneError(Exception):
    """A keystone call through the VIP that did not give the answer expected."""


class Client:
    """keystone's v3 API through the VIP, called as OpenStack's services call it: a keystoneauth1
    session (the client library nova, neutron and keystonemiddleware use) with the v3 password
    plugin; HTTPS verified against the lab's CA when the listener takes TLS; never through an
    http_proxy. Credentials: the admin bootstrapped by the keystone deploy.

    Failures are of two kinds, as a client of the site sees them: keystone answered otherwise
    than expected (KeystoneError: it did not do it), or no answer came (ConnectionError, an
    OSError: the call's effect is unknown)."""

    def __init__(self, url: str | None = None, password: str | None = None, timeout: float = 10):
        from lab import sitemodel

        self.url = (url or sitemodel.vip_url(sitemodel.listen_port(LISTENER))).rstrip("/")
        self.password = password or ensure_secrets()["keystone_admin_password"]
        transport = requests.Session()
        transport.trust_env = False   # never through an http_proxy of the environment
        verify = str(CA_FILE) if self.url.startswith("https:") else True
        self.session = ksa_session.Session(session=transport, verify=verify, timeout=timeout)
        self.auth = None

    def _plugin(self):
        return v3.Password(auth_url=f"{self.url}/v3", username=ADMIN_USER, user_domain_id=DOMAIN,
                           password=self.password, project_name=ADMIN_PROJECT, project_domain_id=DOMAIN)

    def _guard(self, what: str, call):
        """call(), keystoneauth's exceptions as this client's two kinds (never the password)."""
        try:
            return call()
        except ksa.ConnectionError as exc:   # refused, reset, timed out, TLS: no answer
            raise ConnectionError(f"{what}: no answer: {type(exc).__name__}: {exc}") from None
        except ksa.HttpError as exc:
            raise KeystoneError(f"{what}: HTTP {exc.http_status}: {exc.message}") from None
        except ksa.ClientException as exc:
            raise KeystoneError(f"{what}: {type(exc).__name__}: {exc}") from None

    def _call(self, method: str, path: str, body: dict | None = None, expect: int = 200) -> dict:
        if self.auth is None:
            self.issue_token()
        r = self._guard(f"{method} {path}", lambda: self.session.request(
            f"{self.url}{path}", method, json=body, auth=self.auth, raise_exc=False,
            headers={"Accept": "application/json"}))
        if r.status_code != expect:
            # keystone's error body names the cause
            raise KeystoneError(f"{method} {path}: HTTP {r.status_code} (expected {expect}): {r.text[:300]}")
        return r.json() if r.content.strip() else {}

    def issue_token(self) -> str:
        """A new token scoped to the admin project (POST /v3/auth/tokens by the password plugin)."""
        auth = self._plugin()
        token = self._guard("POST /v3/auth/tokens", lambda: auth.get_token(self.session))
        if not token:
            raise KeystoneError("POST /v3/auth/tokens: no token in the answer")
        self.auth = auth
        return token

    def create_project(self, name: str | None = None) -> str:
        """POST /v3/projects in the default domain: the new project's id."""
        name = name or f"{PROJECT_PREFIX}{uuid.uuid4().hex[:12]}"
        return self._call("POST", "/v3/projects", {"project": {"name": name, "domain_id": DOMAIN}},
                          expect=201)["project"]["id"]

    def delete_project(self, project_id: str) -> None:
        self._call("DELETE", f"/v3/projects/{urllib.parse.quote(project_id, safe='')}", expect=204)

    def cycle(self) -> dict[str, float]:
        """One token issue, one project created and deleted: {step: seconds}."""
        out = {}
        t = time.monotonic()
        self.issue_token()
        out["token"] = time.monotonic() - t
        t = time.monotonic()
        pid = self.create_project()
        out["create"] = time.monotonic() - t
        t = time.monotonic()
        self.delete_project(pid)
        out["delete"] = time.monotonic() - t
        return out


def installed() -> bool:
    """Whether the lab's keystone answers through the VIP (make keystone installed it): the soak
    and the failover bench add their keystone calls only then."""
    try:
        Client(timeout=5).issue_token()
    except (OSError, ValueError, KeyError, KeystoneError):
        return False
    return True


def check(count: int = 3) -> list[dict[str, float]]:
    """`count` cycles through the VIP (raises KeystoneError or OSError on the first failure)."""
    client = Client()
    return [client.cycle() for _ in range(count)]


def main(argv: list[str]) -> int:
    what = argv[1] if len(argv) > 1 else ""
    try:
        if what == "install":
            run = install()
            print(run.stdout)
            if run.returncode != 0:
                return run.returncode
            for c in check():
                print("keystone through the VIP: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in c.items()))
            return 0
        if what == "check":
            for c in check():
                print("keystone through the VIP: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in c.items()))
            return 0
        if what == "release":
            release()
            print("keystone stopped and disabled on every node; the stand-ins answer its port again")
            return 0
    except (LabError, KeystoneError, OSError) as exc:
        print(f"keystone: error: {exc}", file=sys.stderr)
        return 1
    print("usage: python -m lab.keystone install|check|release", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
