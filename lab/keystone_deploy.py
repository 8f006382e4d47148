"""pyinfra deploy (LAB ONLY): Debian's keystone behind the VIP on every lab node (lab/keystone.py).

    pyinfra -y inventories/lab.py lab/keystone_deploy.py          (or: make keystone)

Needs the site deployed (deploy.py: MariaDB, memcached, RabbitMQ, HAProxy). In order, every
operation called on every host (the ones for the first controller only are no-ops elsewhere, so
pyinfra keeps the hosts' sequences aligned, as in deploy.py):
  1. the API stand-ins (lab/backends_deploy.py, included: a responder that knows owned ports),
     and the keystone port marked owned: the stand-in lets it go and never takes it back;
  2. /etc/default/keystone and the uwsgi ini (before the package: its postinst starts keystone);
  3. the package, debconf preseeded (no database, admin or endpoint of its own);
  4. keystone.conf (0640 root:keystone; it holds passwords: uploaded, never shown in a diff);
  5. first controller: keystone's database and account through the VIP (the site's admin
     account, its password in a 0600 option file, the SQL with the account's hash on stdin);
  6. every controller: the fernet and credential keys (0 staged, 1 primary, as keystone-manage
     fernet_setup makes them), lab secrets generated once (lab/keystone.KEYS), the same bytes
     uploaded to each, 0600 keystone-owned (copying them from the first controller over SFTP at
     execution hung on a fresh install);
  7. first controller: keystone-manage db_sync (unless db_sync --check says current);
  8. keystone restarted when one of its files changed, running and enabled, answering on the
     node's address;
  9. first controller: keystone-manage bootstrap once (the admin, its project, the endpoints on
     the VIP), the password in OS_BOOTSTRAP_PASSWORD read from a 0600 file.
Idempotent: a re-run with nothing to do changes nothing (each step reads the state first).
"""

import io
import shlex
import sys
from io import StringIO
from pathlib import Path

from pyinfra import host, local
from pyinfra.api import FactBase, FileUploadCommand, StringCommand, operation
from pyinfra.operations import files, server, systemd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lab import keystone as ks  # noqa: E402
from lab.backends import OWNED_DIR  # noqa: E402
from operations.common import secret_value, secrets, site  # noqa: E402  (runs preflight, as deploy.py does)
from operations.steps import consume, secret_input  # noqa: E402

APT_TIMEOUT = 900
WAIT = 90  # seconds for keystone to answer on the node's address after a (re)start

s = site()
me = s.controller(host.name)
first = s.controllers[0].name
mine = host.name == first
port = ks.backend_port(s)
ks_secrets = ks.ensure_secrets()


class KeystoneState(FactBase):
    """What the keystone deploy reads before each step (lab/keystone.parse_state): the package,
    the key files' SHA-256 (never their content); with_db: keystone's database, its accounts
    (SHA-256 of each authentication_string), the bootstrapped user and its marker (MariaDB read
    as root through its unix socket); with_sync: db_sync --check. Always exits 0."""

    def command(self, with_db=False, with_sync=False):
        dirs = " ".join(ks.KEY_DIRS)
        cmd = (
            "dpkg-query -W -f='${Status}\\n' keystone 2>/dev/null | grep -q 'install ok installed' "
            "&& echo installed=yes || echo installed=no; "
            f"for d in {dirs}; do [ -d $d ] || continue; for f in $d/*; do [ -f \"$f\" ] || continue; "
            "echo \"key=$d:${f##*/}=$(sha256sum < \"$f\" | cut -c1-64)\"; done; done; "
        )
        if with_db:
            cmd += (
                "timeout 10 mysql -N -B -e \"SELECT CONCAT('db=', COUNT(*)) FROM information_schema.schemata "
                f"WHERE schema_name='{ks.DB_NAME}'; SELECT CONCAT('account=', host, '=', SHA2(authentication_string, 256)) "
                f"FROM mysql.user WHERE user='{ks.DB_USER}'\" 2>/dev/null; "
                f"echo user=$(timeout 10 mysql -N -B -e \"SELECT COUNT(*) FROM {ks.DB_NAME}.local_user "
                f"WHERE name='{ks.ADMIN_USER}'\" 2>/dev/null || echo 0); "
                f"echo bootstrapped=$(cat {ks.BOOTSTRAP_MARKER} 2>/dev/null); "
            )
        if with_sync:  # a keystone-manage run (seconds): only where db_sync decides
            cmd += (
                "if command -v keystone-manage >/dev/null && [ -r /etc/keystone/keystone.conf ]; then "
                "timeout 120 runuser -u keystone -- keystone-manage db_sync --check >/dev/null 2>&1; echo synced=$?; "
                "else echo synced=none; fi; "
            )
        return cmd + "echo end=yes"

    def process(self, output):
        return ks.parse_state(output)


class FileSum(FactBase):
    """A file's SHA-256, mode, owner and group ("none" when absent): compared, never shown."""

    def command(self, path):
        p = shlex.quote(path)
        return f"if [ -f {p} ]; then echo \"$(sha256sum < {p} | cut -c1-64) $(stat -c '%a %U %G' {p})\"; else echo none; fi"

    def process(self, output):
        return output[0].strip() if output else "none"


# Secret contents by (host, path): never an operation argument (pyinfra prints those with -v).
_SECRET_FILES: dict[tuple[str, str], str] = {}


@operation()
def secret_file(path: str, mode: str = "640", user: str = "root", group: str = "keystone"):
    """
    A file that holds secrets: uploaded into a 0600 temporary file, then moved into place, when
    its digest, mode or owner differ (no diff, no content in any output).

    + path: the file (its content registered in _SECRET_FILES for this host)
    """
    import hashlib

    content = _SECRET_FILES[(host.name, path)]
    want = f"{hashlib.sha256(content.encode()).hexdigest()} {int(mode, 8):o} {user} {group}"
    if host.get_fact(FileSum, path=path) == want:
        return
    tmp = f"{path}.lab-tmp"
    yield StringCommand(f"install -m 600 /dev/null {shlex.quote(tmp)}")
    yield FileUploadCommand(io.StringIO(content), tmp)
    yield StringCommand(f"chown {user}:{group} {shlex.quote(tmp)} && chmod {mode} {shlex.quote(tmp)} "
                        f"&& mv -f {shlex.quote(tmp)} {shlex.quote(path)}")


@operation()
def package():
    """
    keystone installed non-interactively, debconf preseeded (lab/keystone.PRESEED); nothing
    when it is installed. apt bounded and retried, as the deploy's.
    """
    if host.get_fact(KeystoneState)["installed"]:
        return
    yield StringCommand(f"printf %s {shlex.quote(ks.preseed_text())} | debconf-set-selections")
    yield StringCommand(
        "export DEBIAN_FRONTEND=noninteractive; "
        "for try in 1 2 3; do "
        "timeout 300 apt-get update -q -o Acquire::http::Timeout=30 && "
        f"timeout {APT_TIMEOUT} apt-get install -y -q --no-install-recommends "
        f"-o Dpkg::Options::=--force-confold {ks.PACKAGE} && exit 0; "
        f"echo '{host.name}: apt-get install {ks.PACKAGE}: try '$try' failed' >&2; sleep 5; done; "
        f"echo '{host.name}: could not install {ks.PACKAGE} (3 tries)' >&2; exit 1"
    )


@operation()
def database(run: bool = True):
    """
    keystone's database and its account from each controller, made through the VIP with the
    site's admin account; nothing when they are right (read as root on this node).

    + run: False makes it a no-op (called on every host, it acts on the first)
    """
    if not run:
        return
    found = host.get_fact(KeystoneState, with_db=True)
    statements = ks.db_statements([c.address for c in s.controllers], ks_secrets["keystone_db_password"],
                                  found["accounts"], found["db"])
    if not statements:
        return
    d = s.data
    option_file = f"[client]\nuser={d['mariadb_admin_user']}\npassword={secret_value('mariadb_admin_password')}\n"
    up_cnf, cnf = secret_input("keystone-admin.cnf", option_file)
    up_sql, sql = secret_input("keystone-db.sql", ";\n".join(statements) + ";\n")
    yield from up_cnf
    yield from up_sql
    # mysql echoes a failing statement (it holds a password hash): its error line only, cut
    yield consume(
        f"( err=$(mktemp); timeout 30 mysql --defaults-extra-file={cnf} --connect-timeout=5 -h {d['vip']} "
        f"-P {d['mariadb_port']} 2>$err; rc=$?; rm -f {cnf}; if [ $rc -ne 0 ]; then "
        f"echo '{host.name}: creating the keystone database and account through the VIP failed:' >&2; "
        "grep ERROR $err | sed 's/ near .*//' >&2; fi; rm -f $err; exit $rc )", sql)


@operation()
def db_sync(run: bool = True):
    """
    keystone-manage db_sync, as keystone, unless `db_sync --check` says the schema is current.

    + run: False makes it a no-op (called on every host, it acts on the first)
    """
    if not run or host.get_fact(KeystoneState, with_sync=True)["synced"]:
        return
    yield StringCommand("timeout 600 runuser -u keystone -- keystone-manage db_sync")


@operation()
def bootstrap(run: bool = True):
    """
    keystone-manage bootstrap once: the admin user, project and role, the identity service and
    its endpoints on the VIP; again when the admin's secret changed (ks.needs_bootstrap). The
    password from a 0600 file into OS_BOOTSTRAP_PASSWORD (runuser keeps the environment), never
    on a command line; then the marker (its SHA-256).

    + run: False makes it a no-op (called on every host, it acts on the first)
    """
    password = ks_secrets["keystone_admin_password"]
    if not run or not ks.needs_bootstrap(host.get_fact(KeystoneState, with_db=True), password):
        return
    upload, path = secret_input("keystone-bootstrap", password + "\n")
    yield from upload
    args = " ".join(shlex.quote(a) for a in ks.bootstrap_args(s))
    yield consume("( IFS= read -r OS_BOOTSTRAP_PASSWORD; export OS_BOOTSTRAP_PASSWORD; "
                  f"timeout 300 runuser -u keystone -- keystone-manage bootstrap {args} )", path)
    yield StringCommand(f"echo {ks.password_digest(password)} > {ks.BOOTSTRAP_MARKER}")


# 1. the stand-ins, and the keystone port taken from them
local.include(str(ROOT / "lab" / "backends_deploy.py"))
owned = files.put(name="keystone: port owned (the stand-in lets it go)",
                  src=StringIO(f"{ks.UNIT}\n"), dest=f"{OWNED_DIR}/{port}", mode="644")
server.shell(
    name="keystone: the stand-in has let the port go",
    commands=[f"for i in $(seq 50); do ss -Hltn 'sport = :{port}' | grep -q '{me.address}:{port}' || exit 0; "
              "sleep 0.2; done; "
              f"echo '{host.name}: something still listens on {me.address}:{port}' >&2; exit 1"],
    _if=owned.did_change,
)

# 2. before the package: its postinst starts keystone
defaults = files.put(name="keystone: /etc/default (uwsgi on the node's address)",
                     src=StringIO(ks.render_defaults(me.address, port)), dest=ks.DEFAULTS_FILE, mode="644")
ini = files.put(name="keystone: uwsgi ini", src=StringIO(ks.render_uwsgi_ini(me.address, port)),
                dest=ks.UWSGI_INI, mode="644")

# 3. the package
installed = package(name="keystone: package (debconf preseeded)")

# 4. keystone.conf
_SECRET_FILES[(host.name, ks.CONF)] = ks.render_conf(s, secrets(), ks_secrets)
conf = secret_file(name="keystone: keystone.conf", path=ks.CONF)

# 5.-7. once for the site, keys everywhere
database(name="keystone: database and account through the VIP", run=mine)
for directory in ks.KEY_DIRS:
    files.directory(name=f"keystone: {directory}", path=directory, user="keystone", group="keystone", mode="700")
keys = []
for secret, (directory, name) in ks.KEYS.items():
    _SECRET_FILES[(host.name, f"{directory}/{name}")] = ks_secrets[secret]
    keys.append(secret_file(name=f"keystone: {directory}/{name}", path=f"{directory}/{name}",
                            mode="600", user="keystone", group="keystone"))
db_sync(name="keystone: db_sync", run=mine)

# 8. running, on the node's address
changed = [owned, defaults, ini, installed, conf, *keys]  # owned: keystone back after a release()
systemd.service(name="keystone: restart after a change", service=f"{ks.UNIT}.service",
                running=True, restarted=True, enabled=True, daemon_reload=True,
                _if=lambda: any(op.did_change() for op in changed))
systemd.service(name="keystone: running", service=f"{ks.UNIT}.service", running=True, enabled=True)
server.shell(
    name="keystone: answering on the node's address",
    commands=[f"for i in $(seq {WAIT}); do curl -s -o /dev/null -m 5 http://{me.address}:{port}/v3 && exit 0; sleep 1; done; "
              f"echo '{host.name}: keystone does not answer on {me.address}:{port} after {WAIT}s' >&2; "
              f"journalctl -u {ks.UNIT} -n 20 --no-pager >&2; tail -n 20 /var/log/keystone/keystone.log >&2; exit 1"],
    _if=lambda: any(op.did_change() for op in changed),
)

# 9. the admin, once
bootstrap(name="keystone: bootstrap (admin, endpoints on the VIP)", run=mine)
