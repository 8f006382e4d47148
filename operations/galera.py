"""MariaDB Galera on every controller: one cluster, bootstrapped once, joined one node at a time.

The decisions are operations/galera_plan.py's, taken from every controller's GaleraNode fact
(also of controllers a `--limit` leaves out); this module reads the facts, refuses when the
plan does, and runs the plan: the bootstrap (checked again on the host), joins and waits one
node at a time, the accounts, and rolling restarts in kolla-ansible's order with the
database writes moved off the writer first.
"""

from __future__ import annotations

import ipaddress
import os
import shlex

import gevent
from pyinfra import host, inventory, logger, state
from pyinfra.api import StringCommand, deploy, operation

from config.accounts import native_hash
from config.files import GALERA_CNF, GALERA_SST_CNF, SST_ACCOUNT
from config.packages import PACKAGES
from facts.galera import SOCKET_UNITS, GaleraNode, GaleraTls, MysqlAccounts, members_check, sans_members, serving_check
from facts.haproxy_api import api, requests
from facts.host import PENDING_DIR, UNITS, ServiceStates
from operations.common import (
    announce, controllers_in_run, decided_once, failed_earlier, files_for, files_of, once, one_at_a_time, secret_value, shell, site, turn, unit_log, wait_until,
)
from operations.before import facts_of_all_controllers, known_in_run, planned_fact, reach_of_all
from operations.peer_tls_plan import PeerTlsRefused, galera_switch
from operations.galera_plan import (
    REPAIR_SWITCH, GaleraStateError, Plan, bootstrap_command, plan, restart_order, restarts, waited, with_pending,
)
from operations.steps import consume, install_files, packages, secret_input
from facts.keepalived import VipHolder
from operations.maintenance_marker import in_maintenance

CNF = GALERA_CNF
SYNCED = serving_check()


@once
def cluster_states() -> dict:
    """Every controller's GaleraNode fact, also of controllers a --limit leaves out, with the
    restart an earlier run left pending (its marker, read by ServiceStates in the same round
    trip). A controller in this run whose state is unknown stops the run (known_in_run)."""
    nodes = facts_of_all_controllers(GaleraNode)
    units = facts_of_all_controllers(ServiceStates, units=UNITS)
    return known_in_run({n: with_pending(st, units.get(n)) for n, st in nodes.items()}, "the Galera state")


@once
def vip_holders() -> list[str]:
    """The controllers that hold the VIP (one, unless a split brain), read when a restart is planned."""
    s = site()
    facts = facts_of_all_controllers(VipHolder, interface=s["vip_interface"], vip=s["vip"])
    return [n for n, v in facts.items() if v and v.get("holds_vip")]


@decided_once("galera: ", GaleraStateError)
def cluster_plan() -> Plan:
    """The plan of this run, shared by every host; a refusal ends the run before any change."""
    s = site()
    order = [c.name for c in s.controllers]
    in_run = controllers_in_run()
    return plan(cluster_states(), order, {c.name: c.address for c in s.controllers},
                limited=frozenset(n for n in order if n not in in_run),
                repair=os.environ.get(REPAIR_SWITCH) == "1", away=in_maintenance(), reach=reach_of_all())


@decided_once("galera: ", PeerTlsRefused)
def tls_switch_check() -> None:
    """Refuses (before any change) a galera_tls that differs from what a running member runs
    (operations/peer_tls_plan.py: the switch is a whole-cluster stop). Read only when a running
    member's galera.cnf changes or a restart is pending: else no member can be switched."""
    s = site()
    wanted = {c.name: sans_members(f.content) for c in s.controllers for f in files_for(c.name, "galera") if f.path == CNF}
    if any(st and st.get("mysqld") == "running" and (st.get("cnf_sans_members") != wanted.get(n) or st.get("pending"))
           for n, st in cluster_states().items()):
        galera_switch(facts_of_all_controllers(GaleraTls), s["galera_tls"], [c.name for c in s.controllers], s.writer)


# --- a recovery: the bootstrap node chosen once the servers outside a Primary component stopped ---

# Checked again on the host: a server whose unit is still starting (waiting for a Primary
# component) is stopped, and an active one only when it answers that it is outside any Primary
# component; one in a Primary component (formed meanwhile) or not answering (a loaded server) is
# not, and the run stops; stopped or failed, there is nothing to stop.
STOP_OUTSIDE_PRIMARY = (
    'st=$(systemctl show -p ActiveState --value mariadb); '
    'if [ "$st" = active ]; then '
    'c=$(timeout 10 mysql -N -B -e "SHOW GLOBAL STATUS LIKE \'wsrep_cluster_status\'" 2>/dev/null | cut -f2); '
    'case "$c" in Primary|"") echo "$(hostname): mariadb is active and ${c:-not answering}, not outside a Primary '
    'component: not stopped; re-run the deploy (it plans again from what it reads then)" >&2; exit 1;; esac; fi; '
    'if [ "$st" = activating ] || [ "$st" = active ]; then '
    'timeout 300 systemctl stop mariadb || { ' + unit_log("mariadb") + '; exit 1; }; fi'
)

def live_galera_states() -> dict:
    """Every controller's GaleraNode (with galera_recovery where mariadbd is stopped without a
    seqno), read now, in parallel; None where it could not be read."""
    def read(name):
        h = inventory.get_host(name, None)
        try:
            fact = h.get_fact(GaleraNode, recover=True, _ignore_errors=True) if h else None
        except Exception as exc:  # noqa: BLE001 - a node that could not be read is unknown, not a state
            logger.warning(f"[{name}] could not read GaleraNode: {type(exc).__name__}: {exc}")
            return None
        return None if not fact or fact.get("error") else fact

    jobs = {c.name: gevent.spawn(read, c.name) for c in site().controllers}
    gevent.joinall(list(jobs.values()))
    return {n: job.get() for n, job in jobs.items()}


@once
def recovery_plan() -> Plan | str:
    """While executing, once per run (after the waiting servers stopped): the plan again, from
    every position read now; it must be a bootstrap. A str says why not (then nobody bootstraps)."""
    s = site()
    order = [c.name for c in s.controllers]
    in_run = controllers_in_run()
    try:
        again = plan(live_galera_states(), order, {c.name: c.address for c in s.controllers},
                     limited=frozenset(n for n in order if n not in in_run), away=in_maintenance())
    except GaleraStateError as exc:
        return str(exc)
    if again.mode != "bootstrap":
        return (f"after the waiting servers stopped, the plan is {again.mode!r}, not a bootstrap (seen: {again.seen}): "
                "re-run the deploy")
    return again


@operation()
def recovery_bootstrap():
    """A whole-site recovery's bootstrap: on the controller the plan, made again from every
    position read once the waiting servers stopped, names; checked again there
    (bootstrap_command). Elsewhere nothing. Decided only while executing (before, the
    positions are hidden).
    """
    if not state.is_executing or failed_earlier():
        return
    again = recovery_plan()
    if isinstance(again, str):
        yield f"echo {shlex.quote(f'{host.name}: not bootstrapping Galera: {again}')} >&2; exit 1"
        return
    if again.anchor == host.name:
        host.log(again.why or f"bootstrap Galera from {host.name}")
        peers = [c.address for c in site().controllers if c.name != host.name]
        yield from [bootstrap_command(host.name, peers, again.position), synced_wait(), f"rm -f {PENDING_DIR}/mariadb"]


@operation()
def recovery_join(mine: bool):
    """A whole-site recovery's join: this controller's turn, unless it is the one that
    bootstrapped (known only while executing).

    + mine: this host's turn (one_at_a_time)
    """
    if not mine or failed_earlier():
        return
    if state.is_executing:
        again = recovery_plan()
        if isinstance(again, str) or again.anchor == host.name:
            return
    yield from join_commands(host.name, repair=False)


# --- accounts ----------------------------------------------------------------------------


def _q(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def account_statements(existing: dict, data: dict, addresses: list[str], passwords: dict) -> list[str]:
    """SQL that makes the accounts right; empty when they already are. `existing` is
    MysqlAccounts: each account found, True when it has the hash expected_hashes() gave the
    host. Pure."""
    users = None if existing.get("error") else existing.get("users", {})
    sql = []

    def account(user, hostpart, password, privileges, grant_option=False):
        key = f"{user}@{hostpart}"
        want = native_hash(password) if password is not None else ""
        if users is not None and users.get(key) is True:
            return
        # Only the hash travels: the cleartext password never leaves this machine.
        ident = f" IDENTIFIED BY PASSWORD {_q(want)}" if password is not None else ""
        sql.append(f"CREATE USER IF NOT EXISTS {_q(user)}@{_q(hostpart)}{ident}")
        if password is not None:
            sql.append(f"ALTER USER {_q(user)}@{_q(hostpart)}{ident}")
        if privileges:
            option = " WITH GRANT OPTION" if grant_option else ""
            sql.append(f"GRANT {privileges} TO {_q(user)}@{_q(hostpart)}{option}")

    def drop_others(user, keep, formerly):
        """Every other account of `user` dropped (an older, wider host part); when the accounts
        were not read, those earlier deploys made (`formerly`)."""
        found = [k.partition("@")[2] for k in sorted(users) if k.partition("@")[0] == user] if users is not None else formerly
        sql.extend(f"DROP USER IF EXISTS {_q(user)}@{_q(h)}" for h in found if h not in keep)

    # HAProxy's mysql-check: no password, no privileges, from the controllers only. With the
    # HTTP check it is not needed: a passwordless account any client of the VIP reaches (HAProxy
    # connects from a controller's address) is dropped.
    check_hosts = addresses if data["mariadb_check_method"] == "mysql-check" else []
    for addr in check_hosts:
        account(data["mariadb_check_user"], addr, None, "")
    drop_others(data["mariadb_check_user"], check_hosts, addresses)
    # The admin account: from this host (the unix socket) and the controllers (HAProxy on the
    # VIP connects from them) only; an older account of the whole network is dropped.
    admin_hosts = ["localhost", *addresses]
    for hostpart in admin_hosts:
        account(data["mariadb_admin_user"], hostpart, passwords["mariadb_admin_password"], "ALL PRIVILEGES ON *.*", grant_option=True)
    net = ipaddress.ip_network(data["internal_network"], strict=False)
    drop_others(data["mariadb_admin_user"], admin_hosts, [f"{net.network_address}/{net.netmask}"])
    if data["galera_sst_method"] == "mariabackup":
        account(SST_ACCOUNT, "localhost", passwords["mariadb_sst_password"], "RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.*")
    if users is None or any(k.startswith("@") for k in users):
        anon = [k for k in (users or {}) if k.startswith("@")]
        sql += [f"DROP USER IF EXISTS ''@{_q(k[1:])}" for k in anon]
    if users is None or existing.get("test_db"):
        sql.append("DROP DATABASE IF EXISTS test")
    return sql


@operation()
def accounts(run: bool = True):
    """
    HAProxy's check account (mysql-check only), the admin account (localhost and the
    controllers) and the state-transfer account; no wider, anonymous or unused accounts, no test
    database. Passwords are compared as hashes computed here; the SQL reaches mysql on stdin
    from a 0600 file, never on a command line or in a log.

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
        # The SQL carries password hashes (a mysql_native_password hash logs in as well as the
        # password): in a 0600 file on mysql's stdin, never on a command line.
        upload, path = secret_input("accounts.sql", ";\n".join(statements) + ";\n")
        yield from upload
        # mysql echoes a failing statement: keep only its error line, cut before the statement text.
        yield consume(
            f"( err=$(mktemp); timeout 30 mysql 2>$err || {{ echo '{host.name}: creating the database accounts "
            "failed:' >&2; grep ERROR $err | sed 's/ near .*//' >&2; rm -f $err; exit 1; }; rm -f $err )", path)


@operation()
def sst_auth(run: bool = True):
    """
    The running server's wsrep_sst_auth set to the one GALERA_SST_CNF now holds (read at
    start; dynamic), so that a state transfer this server donates logs in with the state
    transfer account's new password. The statement reaches mysql from a 0600 file.

    + run: False makes it a no-op (mysqld not running, or the file unchanged)
    """
    if not run or site()["galera_sst_method"] != "mariabackup":
        return
    auth = f"{SST_ACCOUNT}:{secret_value('mariadb_sst_password')}"
    upload, path = secret_input("sst_auth.sql", f"SET GLOBAL wsrep_sst_auth = {_q(auth)};\n")
    yield from upload
    yield consume(f"( timeout 30 mysql >/dev/null 2>&1 || {{ echo '{host.name}: setting wsrep_sst_auth failed "
                  f"(it applies at the next start of mariadb)' >&2; exit 1; }} )", path)


# --- the deploy --------------------------------------------------------------------------


def writes_to(listener: str, server: str, socket: str, state: str) -> str:
    """This HAProxy's server `server` of the database listener set to `state` through the
    runtime API (no reload): maint moves new sessions to the next server, ready brings them
    back. A controller without a running HAProxy (its first deploy) has nothing to move."""
    return api(socket, requests([listener], server, f"state {state}"))


def synced_wait(hint: str = "") -> StringCommand:
    """Wait (bounded) until this node serves; on timeout its journal, then `hint`."""
    return wait_until(SYNCED, "mariadb to be Synced in a Primary component",
                      on_fail=unit_log("mariadb") + (f"; {hint}" if hint else ""))


def _synced_members(count: int) -> str:
    """Shell test: this node is Synced in a Primary component of at least `count` members."""
    return members_check(count)


def join_commands(me: str, repair: bool) -> list:
    """A node's join: (repair: its Galera state and its gcache, whose diverged history breaks the
    IST after the state transfer, "Unsupported CC action version" on the lab, set aside first,
    kept for a post-mortem) a restart, then a wait until Synced."""
    aside = ("d=/var/lib/openstack-ha/galera-repaired-$(date +%Y%m%d%H%M%S); mkdir -p $d; "
             "for f in grastate.dat gvwstate.dat galera.cache; do test -e /var/lib/mysql/$f && mv -f /var/lib/mysql/$f $d/; done; true")
    return [f"systemctl stop mariadb; {aside}"] * repair + [
        f"timeout 600 systemctl restart mariadb || {{ echo '{me}: mariadb did not join the cluster:' >&2; "
        f"{unit_log('mariadb')}; exit 1; }}",
        synced_wait(
            f"echo '{me}: if the journal says \"Unsupported CC action version\" or \"different histories\", its "
            f"history diverged: re-run with {REPAIR_SWITCH}=1 (its state is set aside, it rejoins by full state "
            "transfer)' >&2"),
        f"rm -f {PENDING_DIR}/mariadb"]


@deploy("MariaDB Galera")
def configure():
    """Packages, the Galera config, then as cluster_plan() decided: the bootstrap of a new
    cluster (checked again on the host), a Donor or Joiner waited for, the nodes outside the
    Primary component joined one at a time (each until Synced), a minority repaired (only with
    the operator's switch), and running members whose config changed beyond the member list
    restarted one at a time, each only once every member is back and it is Synced."""
    packages(name="galera: packages", names=list(PACKAGES["galera"]))
    p = cluster_plan()
    tls_switch_check()
    me = host.name
    st = cluster_states().get(me) or {}
    # Enabled, mariadb.socket takes 3306 at the next boot and mariadb fails (facts.galera.SOCKET_UNITS);
    # also disabled where they were not read (a first install: its read came before the package).
    sockets = st.get("sockets") != "disabled"
    announce(st.get("sockets") == "enabled", f"disable {' and '.join(SOCKET_UNITS)} (enabled, mariadb.socket "
             "would take 3306 at the next boot and mariadb would fail to start)")
    units = " ".join(SOCKET_UNITS)
    shell("galera: socket activation units disabled",
          [f"systemctl disable -q {units} 2>/dev/null || ! systemctl is-enabled -q {units}"], when=sockets)
    (wanted,) = [f for f in files_of("galera") if f.path == CNF]
    # wsrep_cluster_address is read only at start: a new member list alone restarts nobody.
    beyond_members = st.get("cnf_sans_members") != sans_members(wanted.content)
    member = me in p.synced or me in p.busy
    s = site()
    wanted_sums = {c.name: sans_members(f.content) for c in s.controllers for f in files_for(c.name, "galera") if f.path == CNF}
    restarting = restarts(p, cluster_states(), wanted_sums)
    restart = me in restarting
    # Written with the file, cleared after the restart: a run interrupted in between restarts it next time.
    turn(name="galera: restart pending", commands=[f"mkdir -p {PENDING_DIR} && touch {PENDING_DIR}/mariadb"],
         run=member and beyond_members)
    installed = install_files("galera")
    # wsrep_sst_auth is dynamic: a new one reaches a running server without a restart.
    sst_auth(name="galera: wsrep_sst_auth to the running server", run=st.get("mysqld") == "running" and any(
        op.will_change for op, f in zip(installed, files_of("galera")) if f.path == GALERA_SST_CNF))
    synced = synced_wait()
    clear = f"rm -f {PENDING_DIR}/mariadb"

    bootstrap = p.mode == "bootstrap" and me == p.anchor
    announce(bootstrap, f"{p.why or 'bootstrap a new Galera cluster'}, wait until Synced (checked again on {p.anchor})")
    peers = [c.address for c in site().controllers if c.name != me]
    recover = p.mode == "recover"
    # A recovery (a whole-site stop, or servers left running outside any Primary component): every
    # server outside one stops together, then the plan is made again from every position
    # (recovery_plan) and the most advanced bootstraps; the others join after.
    announce(recover and me in p.stop, f"{p.why}; the database accounts are left to the next deploy")
    turn(name="galera: stop servers outside a Primary component (recovery)",
         commands=[STOP_OUTSIDE_PRIMARY], run=recover and me in p.stop)
    if recover:
        recovery_bootstrap(name="galera: bootstrap the most advanced (whole-site recovery)")
    else:
        turn(name=f"galera: bootstrap {p.anchor}" if p.mode == "bootstrap" else "galera: bootstrap (none: a Primary component runs)",
             commands=[bootstrap_command(me, peers, p.position), synced, clear], run=bootstrap)
    # Before any join: a joiner's state transfer logs in to the donor with the sst account.
    accounts(name="galera: accounts", run=me == p.anchor)

    order = [c.name for c in site().controllers]
    waits = waited(p, cluster_states(), restarting)
    announce(me in waits, "wait until mariadb is Synced (a Donor or Joiner is never restarted)")
    for name, mine in one_at_a_time([n for n in order if n in waits]):
        turn(name=f"galera: wait for {name} to be Synced", commands=[synced], run=mine)

    # A node cut off (running outside the Primary component, its peers not reached from it) is
    # left alone: said here and in the blast radius; the report fails until it is back.
    announce(me in p.cut_off, f"leave mariadb alone, never restart it: {p.cut_why}")
    if me in p.cut_off:
        host.log(f"galera: not restarted: {p.cut_why}", logger.warning)
    joins = [n for n in order if n != p.anchor and n not in p.synced and n not in p.busy and n not in p.cut_off]
    joining = me in joins
    repair = me in p.repair
    announce(joining and not repair, "join the Galera cluster (one node at a time), wait until Synced")
    announce(repair, p.why)
    for name, mine in one_at_a_time(joins):
        if recover:
            recovery_join(name=f"galera: {name} joins, waiting for Synced (whole-site recovery)", mine=mine)
        else:
            turn(name=f"galera: {name} joins, waiting for Synced", commands=join_commands(me, mine and repair), run=mine)

    # Every node that will be in the cluster after the joins, before a member leaves it for its restart.
    in_run = controllers_in_run()
    members = max(p.size + sum(1 for n in joins if n in in_run), 2)
    writer, db = s.writer, s.db_listener
    holders = vip_holders() if restarting else []
    away = in_maintenance() if restarting else frozenset()
    sock = s["haproxy_stats_socket"]
    announce(restart, "restart mariadb (config changed; one node at a time, once every member is back), wait until Synced"
             + ("; the writes moved to the next server first, on every HAProxy" if me == writer else ""))
    for name, mine in one_at_a_time(restart_order([n for n in order if n in restarting], writer,
                                                  holders[0] if len(holders) == 1 else None)):
        moving = name == writer
        turn(name=f"galera: writes moved off {name} (HAProxy runtime API)", commands=[writes_to(db, name, sock, "maint")],
             run=moving)
        turn(
            name=f"galera: restart {name}",
            commands=[wait_until(_synced_members(members), f"every member ({members}) back in the cluster and {me} Synced "
                        "before it restarts", on_fail=f"echo '{me}: not restarted' >&2"),
             f"timeout 600 systemctl restart mariadb || {{ {unit_log('mariadb')}; exit 1; }}", synced, clear],
            run=mine and restart,
        )
        # also after a failed restart: its check keeps it out until it is Synced again; never
        # to a controller in maintenance (its servers stay in maint until maintenance.py back)
        shell(f"galera: writes back to {name}", [writes_to(db, name, sock, "ready")], when=moving and name not in away)
