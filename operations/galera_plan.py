"""Galera's decisions, pure: what to bootstrap, whom to join or wait for, which members restart
and in which order.

Every decision is taken from the whole picture: the GaleraNode fact of every controller of the
inventory, read before the run (also of controllers a `--limit` leaves out: reading changes
nothing). plan() is pure and tested as a table (tests/unit/test_galera_plan.py):

- a node outside the Primary component while others hold one is joined, never bootstrapped;
- a new cluster, or a full-outage recovery, is bootstrapped only when every controller is in
  the run and answered, and none is in a Primary component; the most advanced position wins
  (safe_to_bootstrap only breaks a tie); the bootstrap command checks again on the host that
  no peer runs Galera and that its position is still the planned one;
- after a whole-site stop, servers waiting for a Primary component hide their position: with
  the whole picture (as above) the plan is "recover": stop them, read every position again,
  bootstrap the most advanced (decided when the positions are read, from this same plan); so
  is it when servers run outside any Primary component (fallen out of one: a Galera crash in a
  view change left none, galera#40): nobody may bootstrap while they listen on the group port;
- two Primary components (a split brain), or a node ahead of the Primary component (a history
  that diverged), stop the deploy unless the operator asks for the minority's repair
  (HA_GALERA_REPAIR=1): its state is set aside and it rejoins by full state transfer;
- a node running outside the Primary component while others hold one, that cannot confirm it
  reaches the component's members (asked from the node itself: a TCP connection to each
  member's group port, PeerReach), is cut off, not crashed: it is left alone, never restarted
  (a restart cannot reach its peers either, and turns a node that rejoins by itself when the
  partition heals into a dead server); the run says so and its report fails until it is back;
- a Donor or Joiner is waited for, never restarted; a running member restarts only when its
  config changed in more than the member list (wsrep_cluster_address is read only at start:
  adding or removing a controller rewrites it, restarts nobody), and only once every member
  is back in the cluster and it is Synced itself.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from facts.galera_rules import (
    ZERO_UUID, components, desynced_by_backup, has_state, in_primary, position, serving, strangers, unanswered,
)
from operations.common import unit_log

GALERA_PORT = 4567  # group communication: a peer listening there runs Galera
REPAIR_SWITCH = "HA_GALERA_REPAIR"


@dataclass(frozen=True)
class Plan:
    mode: str  # "bootstrap": no Primary component anywhere; "join": one exists; "recover": see stop
    anchor: str  # bootstrap node, or the first node of the Primary component
    synced: frozenset  # Synced in the Primary component before the run
    size: int = 0  # members of the Primary component before the run
    why: str = ""  # said in the blast radius, for a recovery or a repair
    position: tuple = (None, None)  # bootstrap: (uuid, seqno) the anchor must still hold
    busy: frozenset = frozenset()  # Donor, Joiner, starting: waited for, never restarted
    repair: frozenset = frozenset()  # minority or diverged nodes, resynced from the majority
    seen: str = ""  # every controller's condition, one line
    stop: frozenset = frozenset()  # recover: servers outside a Primary component (waiting at start, or
    # running outside one), stopped before every position is read again (galera_recovery) and the
    # most advanced bootstraps
    cut_off: frozenset = frozenset()  # running outside the Primary component, peers not reached: left alone
    cut_why: str = ""  # why, naming the members each cut-off node does not reach


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
         limited=frozenset(), repair: bool = False, away=frozenset(), reach: dict | None = None) -> Plan:
    """What to do, from every controller's pre-run GaleraNode fact. Pure.

    + states: {name: fact}; a controller that could not be read is absent or None
    + order: the inventory's controllers, in order
    + addresses: their addresses (members the inventory no longer lists are refused)
    + limited: controllers a --limit leaves out of this run (their facts were still read)
    + repair: the operator's switch (HA_GALERA_REPAIR=1) to resync a minority or diverged node
    + away: controllers in maintenance: never the bootstrap node when another will do
    + reach: {name: {address: {port: "open" | "refused" | "none"}} or None}, what each
      controller reached before the run (facts.host.PeerReach); None: nothing confirmed
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
        return _join(states, order, comps, repair, seen, addresses or {}, reach)
    return _bootstrap(states, order, limited, seen, frozenset(away))


def unreached(name: str, st: dict | None, members, addresses: dict[str, str], reach: dict | None) -> list[str]:
    """The members of the Primary component that a node running outside it does not confirm
    it reaches on the group port (every member when its reach is unknown); [] when it is not
    running outside the component, or reaches every member. Only an open port counts: a member
    of the Primary component listens on it, so a refusal is a REJECT rule between them, not a
    peer reached. Pure."""
    if not st or st.get("mysqld") != "running" or in_primary(st):
        return []
    mine = (reach or {}).get(name)
    return [m for m in sorted(members) if m != name and
            (mine is None or (mine.get(addresses.get(m, m)) or {}).get(GALERA_PORT) != "open")]


def _join(states, order, comps, repair: bool, seen: str, addresses: dict, reach) -> Plan:
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
    cut = {n: unreached(n, states.get(n), major.members, addresses, reach)
           for n in order if n not in major.nodes and n not in losers}
    cut = {n: missed for n, missed in cut.items() if missed}
    cut_why = "; ".join(
        f"{n} runs mariadb outside the Primary component and does not reach "
        f"{'any member (its reach was not read)' if (reach or {}).get(n) is None else ', '.join(missed) + ' on ' + str(GALERA_PORT)}"
        for n, missed in cut.items())
    busy = frozenset(n for n in order if (n in major.nodes and not serving(states[n])) or
                     (n not in losers and n not in cut and unanswered(states.get(n))))
    why = (f"repair {', '.join(losers)}: set its Galera state aside ({', '.join(f'{n} at {position(s)}' for n, s in losers.items())}; "
           f"the majority {', '.join(major.nodes)} at {major.last_committed}) and rejoin by full state transfer") if losers else ""
    return Plan("join", major.nodes[0], frozenset(n for n in major.nodes if serving(states[n])), major.size,
                why=why, busy=busy, repair=frozenset(losers), seen=seen, cut_off=frozenset(cut),
                cut_why=(f"{cut_why}: cut off, not crashed; left alone, never restarted (it rejoins by itself "
                         "when the partition heals; if it does not, re-run the deploy then)") if cut else "")


def _bootstrap(states, order, limited: frozenset, seen: str, away: frozenset = frozenset()) -> Plan:
    """No Primary component anywhere: a new cluster, or a recovery from a full outage; only
    from the whole picture."""
    missing = [n for n in order if states.get(n) is None]
    if missing or limited:
        what = (f"{', '.join(missing)} did not answer (unreachable, or its fact failed)" if missing else
                f"this run is limited to {', '.join(n for n in order if n not in limited)}")
        todo = ("run the deploy without --limit" if not missing else
                f"bring {', '.join(missing)} back and re-run the deploy; if it is lost for good, recover by hand "
                "(docs/operations.md: Recovery from a full outage) or remove it from the inventory")
        raise GaleraStateError(
            f"no Primary component seen and {what}: not bootstrapping (a Primary component may run where this "
            f"run cannot see, or the most advanced node may be missing). Seen: {seen}. To go on: {todo}."
        )
    with_state = [n for n in order if has_state(states[n])]
    if not with_state:
        return Plan("bootstrap", next((n for n in order if n not in away), order[0]), frozenset(), seen=seen)
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
    # Running, answering, outside any Primary component: fallen out of one (a Galera crash in a
    # view change, galera#40: "exception from gcomm", its provider Disconnected; or the others'
    # non-Primary remnant). They listen on the group port, so no node may bootstrap beside them
    # (bootstrap_command refuses): they are stopped first, as servers waiting at start are.
    outside = [n for n in with_state if states[n].get("mysqld") == "running" and states[n].get("active") is not False
               and not unanswered(states[n])]
    if outside and all(p is not None for p in positions.values()):
        return Plan("recover", "", frozenset(), seen=seen, stop=frozenset(outside),
                    why=f"recover a cluster without a Primary component: mariadb on {', '.join(outside)} runs outside "
                        f"any (last committed: {told}): stop it, read every position (galera_recovery), bootstrap "
                        "the most advanced (checked again on the host)")
    if all(p is not None for p in positions.values()):
        # The most advanced wins; a node out of maintenance, Galera's safe_to_bootstrap mark, then
        # inventory order, only break a tie (a node in maintenance is never preferred: it takes no
        # client traffic, and its bootstrap would be the one thing it serves).
        safe = {n for n in with_state if states[n].get("grastate_safe_to_bootstrap") == "1"}
        anchor = max(with_state, key=lambda n: (positions[n], n not in away, n in safe, -order.index(n)))
        return Plan("bootstrap", anchor, frozenset(), position=(uuid, positions[anchor]), seen=seen,
                    why=f"bootstrap Galera from {anchor}, the most advanced node after a full outage (last committed: {told})")
    # Waiting: mariadbd runs while its unit is still starting (systemd: activating). A server
    # whose unit is active and does not answer is loaded or hung, not waiting: never stopped here.
    waiting = [n for n in with_state if positions[n] is None and states[n].get("mysqld") == "running"
               and states[n].get("active") is False]
    unread = [n for n in with_state if positions[n] is None and n not in waiting]
    unread = [n for n in unread if n not in outside]  # their position is read again once stopped
    if waiting and not unread:
        # mariadbd started without a Primary component to join waits, answering no query, its
        # position hidden (a whole-site stop, then every controller booted). The whole picture
        # is here: stop the waiting servers (and any running outside a Primary component), read
        # every position, bootstrap the most advanced.
        return Plan("recover", "", frozenset(), seen=seen, stop=frozenset(waiting + outside),
                    why=f"recover from a whole-site stop: mariadb on {', '.join(waiting)} waits for a Primary component, "
                        f"its position hidden (last committed: {told}): stop it, read every position "
                        "(galera_recovery), bootstrap the most advanced (checked again on the host)")
    if waiting:
        why = (f"mariadb on {', '.join(waiting)} is starting and waiting for a Primary component, and the "
               f"position of {', '.join(unread)} could not be read (galera_recovery printed none)")
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


def restarts(p: Plan, states: dict, wanted: dict[str, str]) -> set[str]:
    """Members that restart: their config changed beyond the membership lines (`wanted`: each
    node's sans_members() of its new galera.cnf), or a restart was left pending. Pure."""
    return {n for n in p.synced | p.busy
            if (states.get(n) or {}).get("cnf_sans_members") != wanted.get(n) or (states.get(n) or {}).get("pending")}


def waited(p: Plan, states: dict, restarting: set[str]) -> list[str]:
    """The busy members the run waits for until they are Synced (sorted): every busy one but a
    member its own backup desyncs (facts.galera_rules.desynced_by_backup) with nothing to restart: it is a full member, out of
    HAProxy's database servers until the backup ends and Synced again then; waiting would hold
    the run for the backup's length (a long one, the deploy's wait times out). One that must
    restart is waited for: a restart would cut its backup. Pure."""
    return sorted(n for n in p.busy if not (desynced_by_backup(states.get(n)) and n not in restarting))


def with_pending(node: dict | None, units: dict | None) -> dict | None:
    """A controller's GaleraNode with `pending`, whether a mariadb restart was left pending
    (facts.host.ServiceStates reads the marker); unknown (None) when either is. Pure."""
    if node is None or units is None:
        return None
    return {**node, "pending": bool((units.get("units") or {}).get("mariadb", {}).get("pending"))}


def restart_order(order: list[str], writer: str, holder: str | None) -> list[str]:
    """Rolling restarts: the nodes that neither take the database writes nor hold the VIP
    first, then the writer (its writes moved to the next server first), the VIP holder last
    (kolla-ansible's order). Pure."""
    last = list(dict.fromkeys(n for n in (writer, holder) if n in order))
    return [n for n in order if n not in last] + last
