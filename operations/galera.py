"""MariaDB Galera on every controller: one cluster, bootstrapped once, joined one node at a time.

Whether to bootstrap is decided from facts of every controller, read before the run: if any
node is already in a Primary component the cluster exists and is never bootstrapped again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import FactBase, QuoteString, StringCommand, deploy, operation
from pyinfra.api.hiddenvalue import HiddenValue

from operations.common import (
    announce, facts_of_all_controllers, install_files, once, one_at_a_time, packages, planned_fact, secret_value, shell, site, unit_log, wait_until,
)

PACKAGES = ["mariadb-server", "mariadb-client", "galera-4", "mariadb-backup", "socat", "rsync"]
SYNCED = (
    "s=$(mysql -N -B -e \"SHOW GLOBAL STATUS LIKE 'wsrep_%'\"); "
    "echo \"$s\" | grep -qx 'wsrep_cluster_status.Primary' && "
    "echo \"$s\" | grep -qx 'wsrep_local_state_comment.Synced'"
)


class GaleraNode(FactBase):
    """
    This node's Galera state as the deploy needs it to decide what to do:

    .. code:: python

        {"installed": True, "active": True, "wsrep_cluster_status": "Primary",
         "wsrep_local_state_comment": "Synced", "wsrep_cluster_size": "3",
         "wsrep_last_committed": "1234", "grastate_uuid": "2a0c...", "grastate_seqno": "-1",
         "recovered_position": "2a0c...:1234"}

    recovered_position only when mariadbd is not running and grastate.dat has no seqno (it
    crashed, or its start failed): `galera_recovery` reads the last committed position from
    InnoDB, exactly what mariadb.service's ExecStartPre runs at every start.
    """

    def command(self):
        return (
            "if ! command -v mysqld >/dev/null 2>&1 && ! test -x /usr/sbin/mariadbd; then echo installed=no; exit 0; fi; "
            "echo installed=yes; "
            "systemctl is-active -q mariadb && echo active=yes || echo active=no; "
            "timeout 10 mysql -N -B -e \"SHOW GLOBAL STATUS WHERE Variable_name IN "
            "('wsrep_cluster_status','wsrep_local_state_comment','wsrep_cluster_size','wsrep_last_committed',"
            "'wsrep_incoming_addresses')\" "
            "2>/dev/null | tr '\\t' '='; "
            "sed -n 's/^\\(uuid\\|seqno\\|safe_to_bootstrap\\):[[:space:]]*/grastate_\\1=/p' /var/lib/mysql/grastate.dat 2>/dev/null; "
            "if pgrep -x mariadbd >/dev/null || pgrep -x mysqld >/dev/null; then echo mysqld=running; "
            "elif grep -q '^seqno:[[:space:]]*-1' /var/lib/mysql/grastate.dat 2>/dev/null; then "
            "timeout 120 galera_recovery 2>/dev/null | sed -n 's/^--wsrep_start_position=/recovered_position=/p'; fi; true"
        )

    def process(self, output):
        facts = {}
        for line in output:
            key, _, value = line.partition("=")
            facts[key.strip()] = value.strip()
        return {
            "installed": facts.get("installed") == "yes",
            "active": facts.get("active") == "yes",
            **{k: v for k, v in facts.items() if k not in ("installed", "active")},
        }


@dataclass(frozen=True)
class Plan:
    mode: str  # "bootstrap": no cluster yet; "join": a Primary component exists
    anchor: str  # bootstrap node, or a node of the Primary component
    synced: frozenset  # nodes in the Primary component and Synced before the run
    size: int = 0  # members of the Primary component before the run
    why: str = ""  # said in the blast radius, for a recovery


class GaleraStateError(Exception):
    pass


def strangers(states: dict[str, dict], addresses: dict[str, str]) -> list[str]:
    """Members of the running cluster (wsrep_incoming_addresses, as the Primary nodes see it)
    at an address no controller of the inventory has: a controller taken out of the inventory
    while its mariadb still runs. Pure."""
    known = set(addresses.values())
    seen = set()
    for st in states.values():
        if st.get("wsrep_cluster_status") == "Primary":
            for member in (st.get("wsrep_incoming_addresses") or "").split(","):
                addr = member.strip().rpartition(":")[0] or member.strip()
                if addr and addr != "AUTO":
                    seen.add(addr)
    return sorted(seen - known)


def plan(states: dict[str, dict], order: list[str], addresses: dict[str, str] | None = None) -> Plan:
    """Pure decision from every node's pre-run GaleraNode fact (unreachable nodes absent).
    `addresses`: the inventory's node addresses, to refuse a cluster that still has a member
    the inventory no longer lists."""
    extra = strangers(states, addresses) if addresses else []
    if extra:
        raise GaleraStateError(
            f"the Galera cluster has a member the inventory does not list ({', '.join(extra)}): a "
            "controller removed from the inventory must leave the cluster first. Stop mariadb (and "
            "rabbitmq-server) on it, or put it back in the inventory, then re-run the deploy."
        )
    synced = frozenset(
        n for n, s in states.items()
        if s.get("wsrep_cluster_status") == "Primary" and s.get("wsrep_local_state_comment") == "Synced"
    )
    in_primary = [n for n in order if states.get(n, {}).get("wsrep_cluster_status") == "Primary"]
    if in_primary:
        size = int(states[in_primary[0]].get("wsrep_cluster_size") or 0)
        return Plan("join", in_primary[0], synced, size)
    with_state = [
        n for n in order
        if states.get(n, {}).get("grastate_uuid", "00000000-0000-0000-0000-000000000000").strip("0-")
    ]
    if len(with_state) == 1:
        # Only one node ever held data (e.g. a first run cut short after the bootstrap):
        # it is the only copy, so it is the one to bootstrap from.
        return Plan("bootstrap", with_state[0], synced)
    if with_state:
        return _full_outage(states, order, with_state, synced)
    missing = [n for n in order if n not in states]
    if missing:
        raise GaleraStateError(
            f"cannot decide whether to bootstrap Galera: {', '.join(missing)} unreachable and no "
            "reachable controller is in a Primary component; bring them back or remove them from the inventory."
        )
    return Plan("bootstrap", order[0], synced)


def position(state: dict) -> int | None:
    """The last transaction a stopped or non-Primary node committed; None when unknown."""
    for value in (state.get("wsrep_last_committed"), state.get("grastate_seqno"),
                  (state.get("recovered_position") or "").rpartition(":")[2]):
        try:
            if value is not None and int(value) >= 0:
                return int(value)
        except ValueError:
            continue
    return None


def _full_outage(states: dict, order: list[str], with_state: list[str], synced) -> Plan:
    """No Primary component anywhere and several nodes hold Galera state: recovery from a
    full outage. Bootstrapping any node but the most advanced one would throw away the
    transactions only the others committed, so the anchor is chosen only when every
    controller answered and told its position; otherwise the deploy stops and says why."""
    positions = {n: position(states[n]) for n in with_state}
    uuids = {states[n]["grastate_uuid"] for n in with_state}
    missing = [n for n in order if n not in states]
    told = ", ".join(f"{n} {'?' if positions[n] is None else positions[n]}" for n in with_state)
    if len(uuids) > 1:
        which = ", ".join(f"{n} {states[n]['grastate_uuid']}" for n in with_state)
        raise GaleraStateError(
            f"no controller is in a Primary component and their Galera state belongs to different "
            f"clusters ({which}): "
            "decide which cluster is the real one and wipe /var/lib/mysql/grastate.dat on the others."
        )
    safe = [n for n in with_state if states[n].get("grastate_safe_to_bootstrap") == "1"]
    if not missing and all(p is not None for p in positions.values()):
        # most advanced first; on a tie Galera's own mark, then inventory order
        anchor = max(with_state, key=lambda n: (positions[n], n in safe, -order.index(n)))
        return Plan("bootstrap", anchor, synced,
                    why=f"bootstrap Galera from {anchor}, the most advanced node after a full outage (last committed: {told})")
    if len(safe) == 1:
        # Galera marks the last node that left the cluster cleanly as safe to bootstrap: it
        # has every transaction, even if another controller is lost.
        return Plan("bootstrap", safe[0], synced, why=f"bootstrap Galera from {safe[0]}, marked safe_to_bootstrap")
    waiting = [n for n in with_state if positions[n] is None and states[n].get("mysqld") == "running"]
    if missing:
        why = f"{', '.join(missing)} unreachable"
    elif waiting:
        # mariadbd started without a Primary component to join waits, answering no query
        why = (f"mariadb on {', '.join(waiting)} is starting and waiting for a Primary component, which "
               "hides its position: stop mariadb on every controller (the deploy then reads each position "
               "with galera_recovery and bootstraps the most advanced)")
    else:
        why = "a position could not be read (galera_recovery printed none)"
    raise GaleraStateError(
        f"no controller is in a Primary component and several hold Galera state (last committed: {told}), "
        f"and {why}: this is a full-outage recovery, and bootstrapping any node but the most advanced "
        "loses transactions. Bring every controller back (then the deploy bootstraps the most advanced "
        "one), or if one is lost for good: run `galera_recovery` on the others, set safe_to_bootstrap: 1 "
        "in grastate.dat of the highest, start it with galera_new_cluster, then re-run the deploy."
    )


@once
def cluster_plan() -> Plan:
    order = [c.name for c in site().controllers]
    states = facts_of_all_controllers(GaleraNode)
    try:
        return plan(states, order, {c.name: c.address for c in site().controllers})
    except GaleraStateError as exc:
        import sys

        print(f"galera: {exc}", file=sys.stderr)
        raise SystemExit(1)


# --- accounts ----------------------------------------------------------------------------


class MysqlAccounts(FactBase):
    """
    Accounts and whether the test database exists, read through root's unix socket:

    .. code:: python

        {"users": {"haproxy@100.2.30.41": "", "admin@localhost": "*94BD..."}, "test_db": False,
         "ok": True}
    """

    def command(self):
        return (
            "timeout 10 mysql -N -B -e \"SELECT CONCAT('user=', user, '@', host, '=', authentication_string) "
            "FROM mysql.user; SELECT 'test_db=yes' FROM information_schema.schemata WHERE schema_name='test'\" "
            "2>/dev/null && echo ok=yes || echo ok=no"
        )

    def process(self, output):
        result = {"users": {}, "test_db": False, "ok": False}
        for line in output:
            kind, _, rest = line.partition("=")
            if kind == "user":
                name, _, auth = rest.partition("=")
                result["users"][name] = auth
            elif kind == "test_db":
                result["test_db"] = True
            elif kind == "ok":
                result["ok"] = rest == "yes"
        return result


def native_hash(password: str) -> str:
    """MySQL/MariaDB mysql_native_password hash, computed locally (the secret never leaves)."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


def _q(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def account_statements(existing: dict, data: dict, addresses: list[str], passwords: dict) -> list[str]:
    """SQL that makes the accounts right; empty when they already are. Pure."""
    users = existing.get("users", {}) if existing.get("ok") else None
    sql = []

    def account(user, hostpart, password, privileges, grant_option=False):
        key = f"{user}@{hostpart}"
        want = native_hash(password) if password is not None else ""
        if users is not None and users.get(key) == want:
            return
        # Only the hash travels: the cleartext password never leaves this machine.
        ident = f" IDENTIFIED BY PASSWORD {_q(want)}" if password is not None else ""
        sql.append(f"CREATE USER IF NOT EXISTS {_q(user)}@{_q(hostpart)}{ident}")
        if password is not None:
            sql.append(f"ALTER USER {_q(user)}@{_q(hostpart)}{ident}")
        if privileges:
            option = " WITH GRANT OPTION" if grant_option else ""
            sql.append(f"GRANT {privileges} TO {_q(user)}@{_q(hostpart)}{option}")

    # HAProxy's health check: no privileges, from the controllers only.
    for addr in addresses:
        account(data["mariadb_check_user"], addr, None, "")
    import ipaddress

    net = ipaddress.ip_network(data["internal_network"], strict=False)
    for hostpart in ("localhost", f"{net.network_address}/{net.netmask}"):
        account(data["mariadb_admin_user"], hostpart, passwords["mariadb_admin_password"], "ALL PRIVILEGES ON *.*", grant_option=True)
    if data["galera_sst_method"] == "mariabackup":
        account("sst", "localhost", passwords["mariadb_sst_password"], "RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.*")
    if users is None or any(k.startswith("@") for k in users):
        anon = [k for k in (users or {}) if k.startswith("@")]
        sql += [f"DROP USER IF EXISTS ''@{_q(k[1:])}" for k in anon]
    if users is None or existing.get("test_db"):
        sql.append("DROP DATABASE IF EXISTS test")
    return sql


@operation()
def accounts(run: bool = True):
    """
    HAProxy's check account, the admin account and the state-transfer account; no anonymous
    accounts, no test database. Passwords are compared as hashes computed here and sent on
    stdin, masked in every log.

    + run: False makes it a no-op (called on every host, it acts on one)
    """
    if not run:
        return
    s = site()
    statements = account_statements(
        planned_fact(MysqlAccounts),
        s.data,
        [c.address for c in s.controllers],
        {n: secret_value(n) for n in ("mariadb_admin_password", "mariadb_sst_password")},
    )
    if statements:
        script = ";\n".join(statements) + ";\n"
        # mysql echoes a failing statement: keep only its error line, cut before the statement text.
        yield StringCommand(
            "printf '%s'", QuoteString(HiddenValue(script, "<account SQL>")),
            f"| timeout 30 mysql 2>/tmp/.accounts.err || {{ echo '{host.name}: creating the database accounts failed:' >&2; "
            "grep ERROR /tmp/.accounts.err | sed 's/ near .*//' >&2; rm -f /tmp/.accounts.err; exit 1; }",
        )


# --- the deploy --------------------------------------------------------------------------


@deploy("MariaDB Galera")
def configure():
    """Packages, the Galera config, then: a fresh cluster is bootstrapped on one controller and
    the others join one at a time, in inventory order, each waiting until Synced; on a running
    cluster a node restarts (one at a time) only when its config changed or it is not Synced."""
    packages(name="galera: packages", names=PACKAGES)
    (cnf,) = install_files("galera")
    p = cluster_plan()
    anchor = host.name == p.anchor
    needs_start = cnf.will_change or host.name not in p.synced
    synced = wait_until(SYNCED, "mariadb to be Synced in a Primary component", on_fail=unit_log("mariadb"))

    # The anchor: bootstraps a new cluster, or (running cluster) restarts if its config changed.
    # The last member of a cluster cannot restart into it: it bootstraps again.
    alone = p.mode == "bootstrap" or p.size <= 1
    if alone:
        start = (
            "systemctl stop mariadb; "
            "sed -i 's/^safe_to_bootstrap: 0/safe_to_bootstrap: 1/' /var/lib/mysql/grastate.dat 2>/dev/null; "
            "timeout 600 galera_new_cluster"
        )
    else:
        start = "timeout 600 systemctl restart mariadb"
    restart_anchor = anchor and (cnf.will_change or p.mode == "bootstrap")
    announce(anchor and needs_start,
             f"{p.why or ('bootstrap the Galera cluster' if alone else 'restart mariadb')}, wait until Synced")
    shell(
        f"galera: {'bootstrap' if alone else 'restart'} {p.anchor}",
        [f"{start} || {{ {unit_log('mariadb')}; exit 1; }}", synced] if restart_anchor else [synced],
        when=anchor and needs_start,
    )
    # Before any join: a joiner's state transfer logs in to the donor with the sst account.
    accounts(name="galera: accounts", run=anchor)

    others = [c.name for c in site().controllers if c.name != p.anchor]
    announce(needs_start and not anchor, "restart mariadb (one node at a time), wait until Synced")
    for name, mine in one_at_a_time(others):
        shell(
            f"galera: join / restart {name}, waiting for Synced",
            [
                f"timeout 600 systemctl restart mariadb || {{ echo '{host.name}: mariadb did not join the cluster:' >&2; {unit_log('mariadb')}; exit 1; }}",
                synced,
            ],
            when=mine and needs_start,
        )
