"""RabbitMQ's decisions, pure: which broker is restarted, started, stopped, joined or forgotten,
together or one at a time, and which is left alone.

The picture is every controller's RabbitmqCluster fact, read before the run (also of
controllers a `--limit` leaves out), the site's data and the run's limits (the controllers in
maintenance). plan() takes the cluster's decisions once per run; steps() turns them into one
controller's steps, from what changes on that controller (its cookie, its files, epmd's
socket). operations/rabbitmq.py only carries them out. Tested as a table
(tests/unit/test_rabbitmq_plan.py):

- the seed, which new nodes join one at a time, is the first controller already clustered
  with another, else the first controller;
- a broker found stuck (unit active, app not running: a feature-flag sync error at boot) is
  restarted first, together with every other stuck one (they wait for each other's tables);
- a broker paused by pause_minority (unit active, app not running, and it does not reach a
  majority of the controllers while a majority runs its brokers) is waited for, never
  restarted: it resumes by itself when it reaches its peers again; a restart would start a
  broker that cannot reach its peers (it waits for their tables and fails);
- stopped brokers start together, not one at a time (each waits for its peers' tables);
- a cookie change stops every node that gets it, then they start together; so does a switch
  of the Erlang distribution to or from TLS (rabbitmq_tls: operations/peer_tls_plan.py);
- a changed config restarts nodes one at a time, unless controllers in maintenance leave too
  few brokers for a majority: the restart is deferred, its pending marker kept;
- a controller in maintenance gets no start, restart, join or enable (epmd's socket is made
  again there alone, its broker stopped);
- members of the cluster that are no controller of the inventory are forgotten on the seed;
- a partition that outlived the network's heal (pause_minority acts only while a node is cut
  off: every broker runs, and the partition stays recorded, the views split into a majority
  side and the rest, or whole with the records naming the minority) has its minority side
  restarted, one node at a time (RabbitMQ's partitions guide), and only from the whole
  picture: every controller's broker running and its view read, none in maintenance
  (facts/rabbitmq_rules.py); each restart re-checked on its node when it executes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from facts.rabbitmq_rules import minority

NODE_NAME = re.compile(r"rabbit@[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


class RabbitmqStateError(Exception):
    """The deploy refuses: nothing was changed; the message says what each controller showed and the fix."""


@dataclass(frozen=True)
class Plan:
    seed: str  # the node others join
    stuck: frozenset = frozenset()  # restarted first, together
    paused: frozenset = frozenset()  # cut off by pause_minority: waited for, never restarted
    stopped: frozenset = frozenset()  # installed, not running, not in maintenance: started together
    joins: tuple = ()  # join the seed, one at a time, in inventory order
    forget: tuple = ()  # cluster members no controller of the inventory: forgotten on the seed
    away: frozenset = frozenset()  # in maintenance: no start, restart, join or enable
    left: int = 0  # brokers left running during one node's rolling restart
    room: bool = True  # a rolling restart leaves a majority running (or nobody is in maintenance)
    seen: str = ""  # every controller's condition, one line
    heal: tuple = ()  # a partition outlived the network's heal: its minority, restarted one at a time


@dataclass(frozen=True)
class Steps:
    """One controller's steps in this run, each a turn of operations/rabbitmq.py; steps() gives
    every field (no default: nothing is left to one)."""
    unstick: bool  # restart a stuck broker (with the other stuck ones)
    cookie_stop: bool  # stop before the cookie changes (or the distribution's TLS switches)
    cookie_start: bool  # start together after the cookie change (or the TLS switch)
    start: bool  # start a stopped broker (with the other stopped ones)
    rebind_alone: bool  # in maintenance: epmd's socket made again, broker stopped
    restart: bool  # its turn of the rolling restart
    deferred: bool  # a restart was due and waits for the end of maintenance
    wait: bool  # paused: waited for; nothing is started, restarted or joined there
    join: bool  # joins the seed's cluster
    forget: tuple  # forgotten here (the seed)
    heal: bool  # restarted, its turn, to clear a partition that outlived the heal (the minority)
    definitions: bool  # users, vhost and policy made right here (the seed)


def majority(count: int) -> int:
    return count // 2 + 1


def stuck(states: dict) -> list[str]:
    """Nodes whose unit is active while the broker is not running (seen after a feature-flag
    sync error at boot: systemd says active, `rabbitmqctl` says the app is not running, and its
    peers wait for its tables). Pure."""
    return sorted(n for n, st in states.items() if st and st.get("running") and not st.get("broker"))


def seed_node(states: dict[str, dict], order: list[str], paused=frozenset()) -> str:
    """The node others join, and where users and policies are made: the first controller already
    clustered with another, else the first; never a paused one (its CLI answers nothing: the
    definitions and joins would fail there), unless every controller is."""
    candidates = [n for n in order if n not in paused] or order
    for name in candidates:
        st = states.get(name) or {}
        if st.get("running") and len(st.get("nodes", [])) > 1:
            return name
    return candidates[0]


def removed_members(seed_state: dict, names: list[str]) -> list[str]:
    """Cluster members the seed knows that are no controller of the inventory. Pure."""
    known = {f"rabbit@{n}" for n in names}
    # read from the node's own files, not from validated site data: only well-formed names
    return sorted(n for n in set((seed_state or {}).get("nodes", [])) - known if NODE_NAME.fullmatch(n))


def reached(st: dict, name: str, addresses: dict[str, str]) -> int | None:
    """How many controllers node `name` reaches, itself included (its fact's `reaches`: the
    peers whose Erlang distribution port accepted a connection from it); None when not probed."""
    seen = (st or {}).get("reaches")
    if seen is None:
        return None
    return 1 + sum(1 for n, a in addresses.items() if n != name and a in seen)


def describe(name: str, st: dict | None, away=frozenset()) -> str:
    """One controller's condition in a few words, for plans and messages."""
    if st is None:
        return f"{name} did not answer"
    if not st.get("installed"):
        what = "not installed"
    elif not st.get("running"):
        what = "rabbitmq-server stopped"
    elif not st.get("broker"):
        what = "unit active, broker not running"
    else:
        what = "broker running"
    return f"{name} {what}{' (in maintenance)' if name in away else ''}"


def plan(states: dict[str, dict | None], order: list[str], addresses: dict[str, str] | None = None,
         away=frozenset(), partition_handling: str = "pause_minority", members: dict | None = None) -> Plan:
    """The cluster's decisions, from every controller's pre-run RabbitmqCluster fact. Pure.

    + states: {name: fact}; a controller that could not be read is absent or None
    + order: the inventory's controllers, in order
    + addresses: their addresses (to count the peers a stuck node reaches)
    + away: controllers in maintenance
    + partition_handling: rabbitmq_partition_handling ("pause_minority" pauses a minority)
    + members: {name: RabbitmqMembers fact or None}, every controller's running view and
      partition records (a partition that outlived the heal: heal_after_partition())
    """
    away = frozenset(away)
    addresses = addresses or {}
    seen = "; ".join(describe(n, states.get(n), away) for n in order)
    need = majority(len(order))
    serving = [n for n in order if (states.get(n) or {}).get("broker")]
    paused = set()
    if partition_handling == "pause_minority" and len(serving) >= need:
        # A majority runs: a node without its broker that cannot show it reaches a majority is
        # taken for paused (cut off), not stuck.
        for n in stuck(states):
            count = reached(states[n], n, addresses)
            if count is None or count < need:
                paused.add(n)
    seed = seed_node(states, order, paused)
    jammed = frozenset(n for n in stuck(states) if n not in away and n not in paused)
    stopped = frozenset(n for n in order if (states.get(n) or {}).get("installed")
                        and not states[n].get("running") and n not in away)
    joins = tuple(n for n in order if n != seed and n not in away and n not in paused
                  and f"rabbit@{seed}" not in (states.get(n) or {}).get("nodes", []))
    out = sorted(n for n in order if n in away)
    left = len(order) - len(out) - 1
    heal = heal_after_partition(states, order, away, partition_handling, members or {})
    return Plan(seed, jammed, frozenset(paused), stopped, joins, tuple(removed_members(states.get(seed), order)),
                away, left, not out or left >= need, seen, heal)


def heal_after_partition(states: dict, order: list[str], away, partition_handling: str, members: dict) -> tuple:
    """The controllers restarted to clear a partition that outlived the network's heal: its
    minority side (facts/rabbitmq_rules.py), in inventory order. Only under pause_minority
    (autoheal restarts a side itself; ignore leaves it to the operator), with every
    controller's broker running and none in maintenance; else none. Pure."""
    if partition_handling != "pause_minority" or away or not all((states.get(n) or {}).get("broker") for n in order):
        return ()
    named = set(minority({n: members.get(n) for n in order}, order))
    return tuple(n for n in order if n in named)


def steps(p: Plan, name: str, running: bool, new_cookie: bool = False, pending: bool = False,
          rebind: bool = False, tls_switch: bool = False) -> Steps:
    """Controller `name`'s steps. Pure.

    + running: its unit was active before the run
    + new_cookie: its Erlang cookie changes in this run
    + pending: its config changes, or a restart was left pending
    + rebind: epmd's listeners change (its socket is made again while the broker is stopped)
    + tls_switch: the brokers' Erlang distribution switches to or from TLS (rabbitmq_tls,
      operations/peer_tls_plan.py): as for a new cookie, every broker stops, then they start together
    """
    away = name in p.away
    together = new_cookie or tls_switch
    what = "the Erlang cookie changes" if new_cookie else "the Erlang distribution switches TLS (rabbitmq_tls)"
    if name in p.paused and together:
        raise RabbitmqStateError(
            f"{what} while the broker of {name} is paused (it does not reach a majority of "
            f"the controllers; seen: {p.seen}): it cannot be stopped and started with its peers. Restore the "
            f"network between {name} and its peers (it then resumes by itself), then re-run the deploy."
        )
    cookie_start = together and not away
    start = name in p.stopped and not together
    restart = (pending or rebind) and not cookie_start and not start and not away
    deferred = restart and not p.room
    # p.heal is empty while anybody is away (heal_after_partition); a restart for another cause clears it too
    heal = name in p.heal and not together and not restart
    return Steps(
        unstick=name in p.stuck,
        cookie_stop=together,
        cookie_start=cookie_start,
        start=start,
        rebind_alone=away and rebind and (together or not running),
        restart=restart and not deferred and name not in p.paused,
        deferred=deferred,
        wait=name in p.paused,
        join=name in p.joins,
        forget=p.forget if name == p.seed else (),
        heal=heal,
        definitions=name == p.seed,
    )
