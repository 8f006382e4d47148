"""MariaDB Galera on every controller: one cluster, bootstrapped once, joined one node at a time.

Every decision is taken from the whole picture: the GaleraNode fact of every controller of the
inventory, read before the run (also of controllers a `--limit` leaves out: reading changes
nothing). plan() is pure and tested as a table (tests/unit/test_galera_plan.py):

- a node outside the Primary component while others hold one is joined, never bootstrapped;
- a new cluster, or a full-outage recovery, is bootstrapped only when every controller is in
  the run and answered, and none is in a Primary component; the most advanced position wins
  (safe_to_bootstrap only breaks a tie); the bootstrap command checks again on the host that
  no peer runs Galera and that its position is still the planned one;
- two Primary components (a split brain), or a node ahead of the Primary component (a history
  that diverged), stop the deploy unless the operator asks for the minority's repair
  (HA_GALERA_REPAIR=1): its state is set aside and it rejoins by full state transfer;
- a Donor or Joiner is waited for, never restarted; a running member restarts only when its
  config changed in more than the member list (wsrep_cluster_address is read only at start:
  adding or removing a controller rewrites it, restarts nobody), and only once every member
  is back in the cluster and it is Synced itself.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, deploy, operation
from pyinfra.api.hiddenvalue import HiddenValue

from config.files import GALERA_CNF, SST_ACCOUNT
from facts.galera import (
    ZERO_UUID, GaleraNode, MysqlAccounts, components, has_state, in_primary, position, sans_members,
    serving, serving_check, strangers, unanswered,
)
from facts.host import PENDING_DIR
from operations.common import (
    announce, controllers_in_run, facts_of_all_controllers, files_of, install_files, once, one_at_a_time,
    packages, planned_fact, secret_value, shell, site, turn, unit_log, wait_until, files_for,
)
from facts.keepalived import VipHolder

PACKAGES = ["mariadb-server", "mariadb-client", "galera-4", "mariadb-backup", "socat", "rsync"]
CNF = GALERA_CNF
GALERA_PORT = 4567  # group communication: a peer listening there runs Galera
REPAIR_SWITCH = "HA_GALERA_REPAIR"
SYNCED = serving_check()


# --- the plan -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    mode: str  # "bootstrap": no Primary component anywhere; "join": one exists
    anchor: str  # bootstrap node, or the first node of the Primary component
    synced: frozenset  # Synced in the Primary component before the run
    size: int = 0  # members of the Primary component before the run
    why: str = ""  # said in the blast radius, for a recovery or a repair
    position: tuple = (None, None)  # bootstrap: (uuid, seqno) the anchor must still hold
    busy: frozenset = frozenset()  # Donor, Joiner, starting: waited for, never restarted
    repair: frozenset = frozenset()  # minority or diverged nodes, resynced from the majority
    seen: str = ""  # every controller's condition, one line


class GaleraStateError(Exception):
    pass


def describe(name: str, st: dict | None, limited: frozenset = frozenset()) -> str:
    """One controller's condition in a few words, for plans and refusals."""
    if st is None:
        return f"{name} did not answer"
    pos = position(st)
    at = "" if pos is None else f", last committed {pos}"
    if in_primary(st):
        what = f"in a Primary component of {st.get('wsrep_cluster_size')}, {st.get('wsrep_local_state_comment')}"
    elif unanswered(st):
        what = "mariadb running, not answering"
    elif st.get("mysqld") == "running":
        what = f"mariadb running, {st.get('wsrep_cluster_status') or 'without Galera'}"
    elif st.get("installed") is False:
        what = "not installed"
    else:
        what = "mariadb stopped" if has_state(st) else "mariadb stopped, no Galera state"
    return f"{name} {what}{at}{' (left out by --limit)' if name in limited else ''}"


def plan(states: dict[str, dict | None], order: list[str], addresses: dict[str, str] | None = None,
         limited=frozenset(), repair: bool = False) -> Plan:
    """What to do, from every controller's pre-run GaleraNode fact. Pure.

    + states: {name: fact}; a controller that could not be read is absent or None
    + order: the inventory's controllers, in order
    + addresses: their addresses (members the inventory no longer lists are refused)
    + limited: controllers a --limit leaves out of this run (their facts were still read)
    + repair: the operator's switch (HA_GALERA_REPAIR=1) to resync a minority or diverged node
    """
    limited = frozenset(limited)
    seen = "; ".join(describe(n, states.get(n), limited) for n in order)
    extra = strangers(states, addresses) if addresses else []
    if extra:
        raise GaleraStateError(
            f"the Galera cluster has a member the inventory does not list ({', '.join(extra)}): a "
            "controller removed from the inventory must leave the cluster first. Stop mariadb (and "
            "rabbitmq-server) on it, or put it back in the inventory, then re-run the deploy."
        )
    comps = components(states, order, addresses)
    if comps:
        return _join(states, order, comps, repair, seen)
    return _bootstrap(states, order, limited, seen)


def _join(states, order, comps, repair: bool, seen: str) -> Plan:
    """A Primary component exists: nobody bootstraps; the others join it."""
    if len({c.uuid for c in comps}) > 1:
        text = "; ".join(f"{', '.join(c.nodes)} in {c.uuid}" for c in comps)
        raise GaleraStateError(
            f"controllers run Primary components of different clusters ({text}): decide which cluster "
            "is the real one, stop mariadb on the others and move their /var/lib/mysql aside, then re-run."
        )
    major, minor = comps[0], comps[1:]
    split = "; ".join(f"{{{', '.join(sorted(c.members))}}} (last committed {c.last_committed})" for c in comps)
    if minor and minor[0].size == major.size:
        raise GaleraStateError(
            f"split brain: two Primary components of cluster {major.uuid} of equal size: {split}. No side is the "
            "majority: decide which side's writes to keep, stop mariadb on the other side's nodes, move their "
            "/var/lib/mysql/grastate.dat aside, then re-run the deploy (they rejoin by full state transfer)."
        )
    losers = {n: states[n] for c in minor for n in c.nodes}
    # Outside the Primary component but ahead of it: transactions the cluster never saw.
    for n in order:
        st = states.get(n)
        if n in major.nodes or n in losers or not has_state(st) or st.get("grastate_uuid") != major.uuid:
            continue
        if position(st) is not None and major.last_committed is not None and position(st) > major.last_committed:
            losers[n] = st
    if repair:
        # With the switch, every node outside the Primary component that holds state rejoins by
        # full state transfer: also one whose history diverged unseen (a failed rejoin after a
        # split brain: "Unsupported CC action version" in its journal).
        for n in order:
            st = states.get(n)
            if n not in major.nodes and n not in losers and has_state(st) and not unanswered(st):
                losers[n] = st
    if losers:
        lost = ", ".join(f"{n} at {position(st)}" for n, st in losers.items())
        what = (f"split brain: two Primary components of cluster {major.uuid}: {split}" if minor else
                f"diverged: {', '.join(losers)} committed past the Primary component ({major.last_committed})")
        if not repair:
            raise GaleraStateError(
                f"{what}. The majority is {', '.join(major.nodes)} (last committed {major.last_committed}). "
                f"Repairing resyncs {', '.join(losers)} from it by full state transfer, losing what only they "
                f"committed ({lost} vs {major.last_committed}): re-run with {REPAIR_SWITCH}=1 to do that."
            )
    busy = frozenset(n for n in order if (n in major.nodes and not serving(states[n])) or
                     (n not in losers and unanswered(states.get(n))))
    why = (f"repair {', '.join(losers)}: set its Galera state aside ({', '.join(f'{n} at {position(s)}' for n, s in losers.items())}; "
           f"the majority {', '.join(major.nodes)} at {major.last_committed}) and rejoin by full state transfer") if losers else ""
    return Plan("join", major.nodes[0], frozenset(n for n in major.nodes if serving(states[n])), major.size,
                why=why, busy=busy, repair=frozenset(losers), seen=seen)


def _bootstrap(states, order, limited: frozenset, seen: str) -> Plan:
    """No Primary component anywhere: a new cluster, or a recovery from a full outage; only
    from the whole picture."""
    missing = [n for n in order if states.get(n) is None]
    if missing or limited:
        what = (f"{', '.join(missing)} did not answer (unreachable, or its fact failed)" if missing else
                f"this run is limited to {', '.join(n for n in order if n not in limited)}")
        todo = ("run the deploy without --limit" if not missing else
                f"bring {', '.join(missing)} back and re-run the deploy; if it is lost for good, recover by hand "
                "(README: Recovery from a full outage) or remove it from the inventory")
        raise GaleraStateError(
            f"no Primary component seen and {what}: not bootstrapping (a Primary component may run where this "
            f"run cannot see, or the most advanced node may be missing). Seen: {seen}. To go on: {todo}."
        )
    with_state = [n for n in order if has_state(states[n])]
    if not with_state:
        return Plan("bootstrap", order[0], frozenset(), seen=seen)
    uuids = {states[n]["grastate_uuid"] for n in with_state}
    if len(uuids) > 1:
        which = ", ".join(f"{n} {states[n]['grastate_uuid']}" for n in with_state)
        raise GaleraStateError(
            f"no controller is in a Primary component and their Galera state belongs to different clusters "
            f"({which}): decide which cluster is the real one and wipe /var/lib/mysql/grastate.dat on the others."
        )
    (uuid,) = uuids
    positions = {n: position(states[n]) for n in with_state}
    told = ", ".join(f"{n} {'?' if positions[n] is None else positions[n]}" for n in with_state)
    if len(with_state) == 1 and not unanswered(states[with_state[0]]):
        # Only one node ever held data (a first run cut short after the bootstrap): the only copy.
        n = with_state[0]
        return Plan("bootstrap", n, frozenset(), position=(uuid, positions[n]), seen=seen,
                    why=f"bootstrap Galera from {n}, the only node that holds Galera state")
    if all(p is not None for p in positions.values()):
        # The most advanced wins; Galera's safe_to_bootstrap mark, then inventory order, only break a tie.
        safe = {n for n in with_state if states[n].get("grastate_safe_to_bootstrap") == "1"}
        anchor = max(with_state, key=lambda n: (positions[n], n in safe, -order.index(n)))
        return Plan("bootstrap", anchor, frozenset(), position=(uuid, positions[anchor]), seen=seen,
                    why=f"bootstrap Galera from {anchor}, the most advanced node after a full outage (last committed: {told})")
    waiting = [n for n in with_state if positions[n] is None and states[n].get("mysqld") == "running"]
    if waiting:
        # mariadbd started without a Primary component to join waits, answering no query
        why = (f"mariadb on {', '.join(waiting)} is starting and waiting for a Primary component, which "
               "hides its position: stop mariadb on every controller (the deploy then reads each position "
               "with galera_recovery and bootstraps the most advanced)")
    else:
        why = "a position could not be read (galera_recovery printed none)"
    raise GaleraStateError(
        f"no controller is in a Primary component and several hold Galera state (last committed: {told}), "
        f"and {why}: this is a full-outage recovery, and bootstrapping any node but the most advanced "
        "loses transactions. If a node is lost for good: run `galera_recovery` on the others, set "
        "safe_to_bootstrap: 1 in grastate.dat of the highest, start it with galera_new_cluster, then re-run the deploy."
    )


def bootstrap_command(me: str, peers: list[str], expected: tuple) -> str:
    """The bootstrap, with its plan checked again on the host when it runs: no peer runs
    Galera (its group port refuses connections; no answer is not an answer) and this node
    still holds the planned position (uuid, seqno; (None, None) for a new cluster). Pure."""
    uuid, seqno = expected
    q = shlex.quote
    lines = [
        f"for a in {' '.join(q(p) for p in peers)}; do "
        f"err=$(timeout 3 bash -c \"exec 3<>/dev/tcp/$a/{GALERA_PORT}\" 2>&1) && "
        f"{{ echo \"{me}: not bootstrapping Galera: $a listens on {GALERA_PORT}: a Galera node runs there; "
        "re-run the deploy (it joins the running cluster)\" >&2; exit 1; }; "
        "case \"$err\" in *refused*) ;; *) "
        f"echo \"{me}: not bootstrapping Galera: cannot tell whether $a runs Galera (${{err:-no answer within 3 s}})\" >&2; exit 1;; "
        "esac; done",
        "systemctl stop mariadb",
        "uuid=$(sed -n 's/^uuid:[[:space:]]*//p' /var/lib/mysql/grastate.dat 2>/dev/null); "
        "seqno=$(sed -n 's/^seqno:[[:space:]]*//p' /var/lib/mysql/grastate.dat 2>/dev/null)",
    ]
    if uuid is None:
        lines.append(
            f"case \"$uuid\" in ''|{ZERO_UUID}) ;; *) echo \"{me}: not bootstrapping Galera: it now holds state "
            "$uuid:$seqno, the plan saw none; re-run the deploy\" >&2; exit 1;; esac"
        )
    else:
        want = f"{uuid}:{'' if seqno is None else seqno}"
        if seqno is None:
            got = "$uuid:"
        else:
            lines.append("[ \"$seqno\" = -1 ] && seqno=$(timeout 120 galera_recovery 2>/dev/null | "
                         "sed -n 's/^--wsrep_start_position=.*://p')")
            got = "$uuid:$seqno"
        lines.append(
            f"[ \"{got}\" = {q(want)} ] || {{ echo \"{me}: not bootstrapping Galera: it holds {got}, "
            f"the plan was made for {want}; re-run the deploy\" >&2; exit 1; }}"
        )
    lines += [
        "sed -i 's/^safe_to_bootstrap: 0/safe_to_bootstrap: 1/' /var/lib/mysql/grastate.dat 2>/dev/null",
        f"timeout 600 galera_new_cluster || {{ {unit_log('mariadb')}; exit 1; }}",
    ]
    return "; ".join(lines)


@once
def cluster_states() -> dict:
    """Every controller's GaleraNode fact, also of controllers a --limit leaves out."""
    return facts_of_all_controllers(GaleraNode)


@once
def vip_holders() -> list[str]:
    """The controllers that hold the VIP (one, unless a split brain), read when a restart is planned."""
    s = site()
    facts = facts_of_all_controllers(VipHolder, interface=s["vip_interface"], vip=s["vip"])
    return [n for n, v in facts.items() if v and v.get("holds_vip")]


@once
def _plan_or_refusal() -> Plan | GaleraStateError:
    s = site()
    order = [c.name for c in s.controllers]
    in_run = controllers_in_run()
    try:
        return plan(cluster_states(), order, {c.name: c.address for c in s.controllers},
                    limited=frozenset(n for n in order if n not in in_run),
                    repair=os.environ.get(REPAIR_SWITCH) == "1")
    except GaleraStateError as exc:
        import sys

        print(f"galera: {exc}", file=sys.stderr)  # once, for every host's deploy
        return exc


def cluster_plan() -> Plan:
    """The plan of this run, shared by every host; a refusal ends the run before any change."""
    p = _plan_or_refusal()
    if isinstance(p, GaleraStateError):
        raise SystemExit(1)
    return p


# --- accounts ----------------------------------------------------------------------------


def native_hash(password: str) -> str:
    """MySQL/MariaDB mysql_native_password hash, computed locally (the secret never leaves)."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


def _q(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def account_statements(existing: dict, data: dict, addresses: list[str], passwords: dict) -> list[str]:
    """SQL that makes the accounts right; empty when they already are. Pure."""
    users = None if existing.get("error") else existing.get("users", {})
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
            f"| {{ err=$(mktemp); timeout 30 mysql 2>$err || {{ echo '{host.name}: creating the database accounts failed:' >&2; "
            "grep ERROR $err | sed 's/ near .*//' >&2; rm -f $err; exit 1; }; rm -f $err; }",
        )


# --- the deploy --------------------------------------------------------------------------


def restarts(p: Plan, states: dict, wanted: dict[str, str]) -> set[str]:
    """Members that restart: their config changed beyond the membership lines (`wanted`: each
    node's sans_members() of its new galera.cnf), or a restart was left pending. Pure."""
    return {n for n in p.synced | p.busy
            if (states.get(n) or {}).get("cnf_sans_members") != wanted.get(n) or (states.get(n) or {}).get("pending")}


def restart_order(order: list[str], writer: str, holder: str | None) -> list[str]:
    """Rolling restarts: the nodes that neither take the database writes nor hold the VIP
    first, then the writer (its writes moved to the next server first), the VIP holder last
    (kolla-ansible's order). Pure."""
    last = list(dict.fromkeys(n for n in (writer, holder) if n in order))
    return [n for n in order if n not in last] + last


def writes_to(listener: str, server: str, socket: str, state: str) -> str:
    """This HAProxy's server `server` of the database listener set to `state` through the
    runtime API (no reload): maint moves new sessions to the next server, ready brings them
    back. A controller without a running HAProxy (its first deploy) has nothing to move."""
    q = shlex.quote
    cmd = q(f"set server {listener}/{server} state {state}")
    return (f"if test -S {q(socket)}; then out=$(echo {cmd} | socat stdio {q(socket)}); "
            f"test -z \"$out\" || {{ echo \"$(hostname): haproxy: $out\" >&2; exit 1; }}; fi")


def synced_wait(hint: str = "") -> StringCommand:
    """Wait (bounded) until this node serves; on timeout its journal, then `hint`."""
    return wait_until(SYNCED, "mariadb to be Synced in a Primary component",
                      on_fail=unit_log("mariadb") + (f"; {hint}" if hint else ""))


def _synced_members(count: int) -> str:
    """Shell test: this node is Synced in a Primary component of at least `count` members."""
    return (f"{SYNCED} && [ \"$(echo \"$s\" | sed -n 's/^wsrep_cluster_size.//p')\" -ge {count} ]")


@deploy("MariaDB Galera")
def configure():
    """Packages, the Galera config, then as cluster_plan() decided: the bootstrap of a new
    cluster (checked again on the host), a Donor or Joiner waited for, the nodes outside the
    Primary component joined one at a time (each until Synced), a minority repaired (only with
    the operator's switch), and running members whose config changed beyond the member list
    restarted one at a time, each only once every member is back and it is Synced."""
    packages(name="galera: packages", names=PACKAGES)
    p = cluster_plan()
    me = host.name
    st = cluster_states().get(me) or {}
    (wanted,) = files_of("galera")
    # wsrep_cluster_address is read only at start: a new member list alone restarts nobody.
    beyond_members = st.get("cnf_sans_members") != sans_members(wanted.content)
    member = me in p.synced or me in p.busy
    s = site()
    wanted_sums = {c.name: sans_members(f.content) for c in s.controllers for f in files_for(c.name, "galera")}
    restarting = restarts(p, cluster_states(), wanted_sums)
    restart = me in restarting
    # Written with the file, cleared after the restart: a run interrupted in between restarts it next time.
    turn(name="galera: restart pending", commands=[f"mkdir -p {PENDING_DIR} && touch {PENDING_DIR}/mariadb"],
         run=member and beyond_members)
    install_files("galera")
    synced = synced_wait()
    clear = f"rm -f {PENDING_DIR}/mariadb"

    bootstrap = p.mode == "bootstrap" and me == p.anchor
    announce(bootstrap, f"{p.why or 'bootstrap a new Galera cluster'}, wait until Synced (checked again on {p.anchor})")
    peers = [c.address for c in site().controllers if c.name != me]
    turn(name=f"galera: bootstrap {p.anchor}" if p.mode == "bootstrap" else "galera: bootstrap (none: a Primary component runs)",
         commands=[bootstrap_command(me, peers, p.position), synced, clear], run=bootstrap)
    # Before any join: a joiner's state transfer logs in to the donor with the sst account.
    accounts(name="galera: accounts", run=me == p.anchor)

    order = [c.name for c in site().controllers]
    announce(me in p.busy, "wait until mariadb is Synced (a Donor or Joiner is never restarted)")
    for name, mine in one_at_a_time([n for n in order if n in p.busy]):
        turn(name=f"galera: wait for {name} to be Synced", commands=[synced], run=mine)

    joins = [n for n in order if n != p.anchor and n not in p.synced and n not in p.busy]
    joining = me in joins
    repair = me in p.repair
    announce(joining and not repair, "join the Galera cluster (one node at a time), wait until Synced")
    announce(repair, p.why)
    # Its Galera state and its gcache (whose diverged history breaks the IST after the state
    # transfer: "Unsupported CC action version", seen on the lab) set aside, kept for a post-mortem.
    aside = ("d=/var/lib/openstack-ha/galera-repaired-$(date +%Y%m%d%H%M%S); mkdir -p $d; "
             "for f in grastate.dat gvwstate.dat galera.cache; do test -e /var/lib/mysql/$f && mv -f /var/lib/mysql/$f $d/; done; true")
    for name, mine in one_at_a_time(joins):
        turn(
            name=f"galera: {name} joins, waiting for Synced",
            commands=[f"systemctl stop mariadb; {aside}"] * (mine and repair) + [
                f"timeout 600 systemctl restart mariadb || {{ echo '{me}: mariadb did not join the cluster:' >&2; "
                f"{unit_log('mariadb')}; exit 1; }}",
                synced_wait(
                    f"echo '{me}: if the journal says \"Unsupported CC action version\" or \"different histories\", its "
                    f"history diverged: re-run with {REPAIR_SWITCH}=1 (its state is set aside, it rejoins by full state "
                    "transfer)' >&2"),
                clear],
            run=mine,
        )

    # Every node that will be in the cluster after the joins, before a member leaves it for its restart.
    in_run = controllers_in_run()
    members = max(p.size + sum(1 for n in joins if n in in_run), 2)
    writer = next(c.name for c in s.controllers)  # the database listener's one active server
    db = next(lst.name for lst in s.listeners if any(" backup" in line for line in lst.servers))
    holders = vip_holders() if restarting else []
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
        # also after a failed restart: its check keeps it out until it is Synced again
        shell(f"galera: writes back to {name}", [writes_to(db, name, sock, "ready")], when=moving)
