"""Galera: a node's state as the deploy and the report need it, and its accounts. The cluster
rules (what "serving" means, which Primary components exist, a node's position) are
facts/galera_rules.py's."""

from __future__ import annotations

import hashlib
import shlex

from pyinfra.api import FactBase

from config.paths import BACKUP_SERVICES, GALERA_CNF
from facts.galera_rules import DESYNCED, SERVING
from facts.probe import EXPECTED, NO_OUTPUT, key_values, tls_reading

# Read only when mariadbd starts (the donor only when it joins): a running member needs no
# restart for them. Comments never need one either.
# Also wsrep_sst_auth: in a file of its own since issue 24 (a new one is set at runtime), so the
# galera.cnf of before, which held it, asks no restart, and this hash never covers a secret.
MEMBERSHIP_LINES = ("wsrep_cluster_address", "wsrep_sst_donor", "#", "wsrep_sst_auth")
SANS_PATTERNS = " ".join(f"-e '^{k}'" for k in MEMBERSHIP_LINES)

# mariadb-server's socket activation units. The deploy never uses them, and enabled they break
# the next boot: mariadb.socket takes 3306 on every address, HAProxy cannot bind the VIP's 3306
# and mariadb.service fails. Its postinst enables mariadb.socket on an upgrade (lab: after a
# rolling upgrade, and so after any hand-run `apt-get upgrade`).
SOCKET_UNITS = ("mariadb.socket", "mariadb-extra.socket")

STATUS_KEYS = (*SERVING, "wsrep_cluster_size", "wsrep_last_committed", "wsrep_incoming_addresses",
               "wsrep_cluster_state_uuid", "wsrep_connected")
STATUS_QUERY = "SHOW GLOBAL STATUS WHERE Variable_name IN ({})".format(", ".join(f"'{k}'" for k in STATUS_KEYS))


def serving_check(status_query: str = STATUS_QUERY) -> str:
    """Shell that succeeds when the local node serves (root over the unix socket). grep reads
    all its input (no -q): with -q it exits at the first match, and `echo` writing the rest gets
    EPIPE, which under `set -o pipefail` (the backup script) failed the test on a serving node."""
    tests = " && ".join(f"echo \"$s\" | grep -x '{k}.{v}' >/dev/null" for k, v in SERVING.items())
    return f"s=$(mysql -N -B -e \"{status_query}\") && {tests}"


def members_check(count: int) -> str:
    """Shell that succeeds when the local node serves in a Primary component of at least `count` members."""
    return f"{serving_check()} && [ \"$(echo \"$s\" | sed -n 's/^wsrep_cluster_size.//p')\" -ge {count} ]"


def sans_members(text: str) -> str:
    """SHA1 of a galera.cnf without its membership, comment and wsrep_sst_auth lines, as `grep -v
    -e '^wsrep_cluster_address' -e '^wsrep_sst_donor' -e '^#' -e '^wsrep_sst_auth' | sha1sum`
    computes it on the host."""
    lines = [line if line.endswith("\n") else line + "\n" for line in text.splitlines(keepends=True)]
    kept = "".join(line for line in lines if not line.startswith(MEMBERSHIP_LINES))
    return hashlib.sha1(kept.encode()).hexdigest()

# What GaleraNode(recover=True) reports beyond recover=False (the same command and process()
# but for galera_recovery's line): dropped where the report reuses the plan's read.
RECOVERY_KEYS = ("recovered_position",)


def without_recovery(st: dict) -> dict:
    """A GaleraNode read with recover=True, as recover=False reads the same node."""
    return {k: v for k, v in st.items() if k not in RECOVERY_KEYS}


class GaleraNode(FactBase):
    """
    This node's Galera state, as the deploy decides from it and the report shows it:

    .. code:: python

        {"installed": True, "active": True, "query": "ok", "mysqld": "running",
         "wsrep_cluster_status": "Primary", "wsrep_local_state_comment": "Synced",
         "wsrep_ready": "ON", "wsrep_connected": "ON",
         "wsrep_cluster_size": "3", "wsrep_last_committed": "1234",
         "wsrep_incoming_addresses": "10.0.0.11:3306,...", "wsrep_cluster_state_uuid": "2a0c...",
         "grastate_uuid": "2a0c...", "grastate_seqno": "-1", "grastate_safe_to_bootstrap": "0",
         "recovered_position": "2a0c...:1234", "cnf_sans_members": "5e1f...", "sockets": "disabled",
         "error": None}

    `query` is "failed" when mariadbd runs but did not answer (starting, in a state transfer,
    hung): a state of its own, never read as "not Synced". recovered_position (only with
    recover=True) when mariadbd is not running and grastate.dat has no seqno (it crashed, or
    its start failed): `galera_recovery` reads the last committed position from InnoDB, as
    mariadb.service's ExecStartPre does at every start. cnf_sans_members: the SHA1 of its
    galera.cnf without the lines a running member does not need a restart for (a restart an
    earlier run left undone is facts.host.ServiceStates' `pending`, the marker's one reader).
    `sockets`: "enabled" when either of SOCKET_UNITS is. `error` when the output was cut short.
    """

    @staticmethod
    def default():
        return {"installed": None, "active": None, "error": NO_OUTPUT}

    def command(self, recover: bool = True):
        recovery = (
            "if [ -z \"$running\" ] && "
            "grep -q '^seqno:[[:space:]]*-1' /var/lib/mysql/grastate.dat 2>/dev/null; then "
            "timeout 120 galera_recovery 2>/dev/null | sed -n 's/^--wsrep_start_position=/recovered_position=/p'; fi; "
        ) if recover else ""
        return (
            "if ! command -v mysqld >/dev/null 2>&1 && ! test -x /usr/sbin/mariadbd; then echo installed=no; "
            "echo end=yes; exit 0; fi; echo installed=yes; "
            "systemctl is-active -q mariadb && echo active=yes || echo active=no; "
            f"systemctl is-enabled -q {' '.join(SOCKET_UNITS)} 2>/dev/null && echo sockets=enabled || echo sockets=disabled; "
            # one pgrep for either name (-x: the whole name, the pattern an extended regex)
            # (the recovery below reads $running: no second pgrep)
            "running=; if pgrep -x 'mariadbd|mysqld' >/dev/null; then running=yes; echo mysqld=running; "
            f"if out=$(timeout 10 mysql --connect-timeout=5 -N -B -e \"{STATUS_QUERY}\" 2>/dev/null); "
            "then echo query=ok; printf '%s\\n' \"$out\" | tr '\\t' '='; "
            # desynced: by one of its backups (oneshot services: activating while they run)? Asked
            # only then, never in a normal run.
            f"case $out in *{DESYNCED}*) systemctl is-active {' '.join(BACKUP_SERVICES)} 2>/dev/null "
            "| grep -qx -e active -e activating && echo backup=running;; esac; "
            "else echo query=failed; fi; fi; "
            "sed -n 's/^\\(uuid\\|seqno\\|safe_to_bootstrap\\):[[:space:]]*/grastate_\\1=/p' /var/lib/mysql/grastate.dat 2>/dev/null; "
            f"test -f {GALERA_CNF} && {{ set -- $(grep -v {SANS_PATTERNS} {GALERA_CNF} | sha1sum); "
            "echo cnf_sans_members=$1; }; "
            f"{recovery}echo end=yes"
        )

    def process(self, output):
        facts = key_values(output)
        if facts.pop("end", None) != "yes" or "installed" not in facts:
            return {**self.default(), "error": "galera state: output cut short (no end marker)"}
        return {
            "installed": facts.pop("installed") == "yes",
            "active": facts.pop("active", None) == "yes",
            **facts,
            "error": None,
        }


# On the host: each `user=NAME@HOST=AUTH` line of mysql's answer becomes `user=NAME@HOST=yes`
# when AUTH is the hash expected for NAME (facts.probe EXPECTED, section "mysql"), else `=no`;
# the hashes never leave the host. Other lines (mysql's errors) pass.
ACCOUNTS_COMPARE = EXPECTED + """
want = expected("mysql")
for line in sys.stdin:
    kind, _, rest = line.rstrip("\\n").partition("=")
    if kind == "user":
        account, _, auth = rest.partition("=")
        user = account.rpartition("@")[0]
        print(f"user={account}={'yes' if user in want and auth == want[user] else 'no'}")
    else:
        print(line, end="")
"""


class MysqlAccounts(FactBase):
    """
    Accounts, whether each has the password hash the run expects (compared on the host:
    ACCOUNTS_COMPARE; no hash is printed), and whether the test database exists, read through
    root's unix socket:

    .. code:: python

        {"users": {"haproxy@100.2.30.41": True, "admin@localhost": False}, "test_db": False,
         "error": None}
    """

    @staticmethod
    def default():
        return {"users": {}, "test_db": False, "error": NO_OUTPUT}

    def command(self):
        return (
            "out=$(timeout 10 mysql -N -B -e \"SELECT CONCAT('user=', user, '@', host, '=', authentication_string) "
            "FROM mysql.user; SELECT 'test_db=yes' FROM information_schema.schemata WHERE schema_name='test'\" "
            f"2>&1) && ok=yes || ok=no; printf '%s\\n' \"$out\" | python3 -c {shlex.quote(ACCOUNTS_COMPARE)}; echo ok=$ok"
        )

    def process(self, output):
        result = {"users": {}, "test_db": False, "error": "mysql: no answer (output cut short)"}
        said = ""
        for line in output:
            kind, _, rest = line.partition("=")
            if kind == "user":
                name, _, same = rest.rpartition("=")
                result["users"][name] = same == "yes"
            elif kind == "test_db":
                result["test_db"] = True
            elif kind == "ok":
                result["error"] = None if rest == "yes" else f"mysql: {said or 'failed'}"
            else:
                said = line.strip()[:300]
        return result


class GaleraTls(FactBase):
    """
    Whether the running mariadbd replicates over TLS (galera_tls), read before the run: its
    wsrep_provider_options name a socket.ssl_cert (SSL options that are not set are not listed).
    "stopped" when mariadbd does not run, "unknown" when it runs and did not answer:

    .. code:: python

        {"galera": "tls", "error": None}
    """

    @staticmethod
    def default():
        return {"galera": None, "error": NO_OUTPUT}

    def command(self):
        return (
            "if pgrep -x 'mariadbd|mysqld' >/dev/null; then "
            "if o=$(timeout 10 mysql --connect-timeout=5 -N -B -e 'SELECT @@wsrep_provider_options' 2>/dev/null); then "
            "printf '%s\\n' \"$o\" | grep -Eq 'socket\\.ssl_cert = [^;[:space:]]' && echo galera=tls || echo galera=plain; "
            "else echo galera=unknown; fi; else echo galera=stopped; fi; echo end=yes"
        )

    def process(self, output):
        return tls_reading(output, "galera")
