"""RabbitMQ on every controller: one cluster, each node joined once, one at a time."""

from __future__ import annotations

import base64
import hashlib
import re
import shlex

from pyinfra import host
from pyinfra.api import deploy, operation
from pyinfra.facts.files import Sha1File

from config.defaults import DIST_PORT_OFFSET
from config.files import ERLANG_COOKIE
from facts.rabbitmq import RabbitmqCluster, RabbitmqDefinitions
from operations.common import (
    announce, files_of, once, one_at_a_time, secret_value, shell, site, turn, unit_log, wait_until,
)
from operations.before import facts_of_all_controllers, known_in_run, planned_fact, reach_of_all
from operations.maintenance import in_maintenance, marked
from operations.steps import clear_pending, consume, install_files, mark_pending, packages, secret_input, service

COOKIE = ERLANG_COOKIE
NODE_NAME = re.compile(r"rabbit@[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
CTL = "timeout 60 rabbitmqctl"
# A restart that has not finished in 120 s (a normal one takes ~6 s on the lab) is the boot hang
# of Debian 12's RabbitMQ 3.10.8 on Erlang 25 in `global` synchronisation (rabbitmq-server#6034,
# fixed in later 3.10.x): seen on the lab after power cuts and once in a first deploy. The node
# is killed and started once more; a second hang fails the run.
RESTART = (
    "timeout 120 systemctl restart rabbitmq-server || { "
    "echo \"$(hostname): rabbitmq-server did not start within 120 s (the boot hang of rabbitmq-server#6034?): "
    "killed and started once more\" >&2; systemctl kill -s KILL rabbitmq-server; sleep 2; "
    "timeout 300 systemctl restart rabbitmq-server; }"
)
# epmd's socket made again with its drop-in's listeners (config/files.py EPMD_SOCKET_DROPIN);
# the broker is stopped (RESTART starts it after).
EPMD_REBIND = ("systemctl daemon-reload && systemctl stop epmd.socket epmd.service && systemctl start epmd.socket && "
               + clear_pending("epmd.socket"))


def password_matches(password: str, password_hash: str) -> bool:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    try:
        raw = base64.b64decode(password_hash)
    except ValueError:
        return False
    salt, digest = raw[:4], raw[4:]
    return hashlib.sha256(salt + password.encode()).digest() == digest


def seed_node(states: dict[str, dict], order: list[str]) -> str:
    """The node others join: the first controller already clustered with another, else the first."""
    for name in order:
        st = states.get(name) or {}
        if st.get("running") and len(st.get("nodes", [])) > 1:
            return name
    return order[0]


def removed_members(seed_state: dict, names: list[str]) -> list[str]:
    """Cluster members the seed knows that are no controller of the inventory. Pure."""
    known = {f"rabbit@{n}" for n in names}
    # read from the node's own files, not from validated site data: only well-formed names
    return sorted(n for n in set((seed_state or {}).get("nodes", [])) - known if NODE_NAME.fullmatch(n))


@once
def cluster_states() -> tuple[str, dict]:
    order = [c.name for c in site().controllers]
    states = known_in_run(facts_of_all_controllers(RabbitmqCluster, port=site()["rabbitmq_port"]), "the RabbitMQ state")
    return seed_node(states, order), states


def cut_off(name: str) -> bool:
    """Whether controller `name` reaches (a connection accepted or refused on the Erlang
    distribution port, asked from it before the run) at most a minority of the controllers,
    itself counted; unknown reach counts as cut off (never restarted on a guess)."""
    s = site()
    mine = reach_of_all().get(name)
    if mine is None:
        return True
    port = s["rabbitmq_port"] + DIST_PORT_OFFSET
    reached = sum(1 for c in s.controllers if c.name == name or (mine.get(c.address) or {}).get(port) in ("open", "refused"))
    return 2 * reached <= len(s.controllers)


def stuck(states: dict) -> list[str]:
    """Nodes whose unit is active while the broker is not running (seen after a feature-flag
    sync error at boot: systemd says active, `rabbitmqctl` says the app is not running, and its
    peers wait for its tables). Pure."""
    return sorted(n for n, st in states.items() if st and st.get("running") and not st.get("broker"))


def tags_of(user: dict) -> set[str]:
    """A user's tags as export_definitions writes them: a list, or one comma-separated string."""
    tags = user.get("tags") or []
    return set(tags.split(",") if isinstance(tags, str) else tags) - {""}


def account_commands(name: str, secret: str, password: str, tags: str, users: dict, known: bool) -> list:
    """rabbitmqctl commands that make one account right: it exists with its password (read on
    stdin from a 0600 file, never on a command line) and exactly `tags`. Pure."""
    q = shlex.quote(name)
    upload, path = secret_input(secret, password)
    cmds = []
    if not known or name not in users:
        has_user = f"{CTL} list_users --silent </dev/null | cut -f1 | grep -qxF -- {q}"
        # the password file on the stdin of the command that reads it only: list_users would eat it
        cmds += [*upload, f"if {has_user}; then {CTL} change_password {q} < {path}; "
                          f"else {CTL} add_user {q} < {path}; fi; rc=$?; rm -f {path}; exit $rc"]
    elif not password_matches(password, users[name].get("password_hash", "")):
        cmds += [*upload, consume(f"{CTL} change_password {q}", path)]
    if not known or tags_of(users.get(name, {})) != set(tags.split()):
        cmds.append(f"{CTL} set_user_tags {q}{' ' + tags if tags else ''}")
    return cmds


def definition_commands(defs: dict, data: dict, passwords: dict) -> list:
    """rabbitmqctl commands that make users, vhost, permissions and policy right; none when
    they already are. `defs` is {} when RabbitMQ was not running before the run (a fresh
    node): then every command is emitted in a form that is safe to repeat. Pure.

    Least privilege: the OpenStack services' user has every permission on its vhost and no
    tag (no management API, no other vhost); the management administrator
    (rabbitmq_admin_user) has the administrator tag and no vhost permission at all."""
    user, vhost, admin = data["rabbitmq_user"], data["rabbitmq_vhost"], data["rabbitmq_admin_user"]
    qu, qv = shlex.quote(user), shlex.quote(vhost)
    known = not defs.get("error")
    users = {u["name"]: u for u in defs.get("users", [])}
    cmds = []
    if not known or vhost not in {v["name"] for v in defs.get("vhosts", [])}:
        cmds.append(f"{CTL} list_vhosts --silent | grep -qxF -- {qv} || {CTL} add_vhost {qv}")
    cmds += account_commands(user, "rabbitmq_password", passwords["rabbitmq_password"], "", users, known)
    cmds += account_commands(admin, "rabbitmq_admin_password", passwords["rabbitmq_admin_password"], "administrator", users, known)
    perms = [p for p in defs.get("permissions", []) if p.get("user") == user and p.get("vhost") == vhost]
    if not perms or (perms[0]["configure"], perms[0]["write"], perms[0]["read"]) != (".*", ".*", ".*"):
        cmds.append(f"{CTL} set_permissions -p {qv} {qu} '.*' '.*' '.*'")
    for p in defs.get("permissions", []):
        if p.get("user") == admin:
            cmds.append(f"{CTL} clear_permissions -p {shlex.quote(p['vhost'])} {shlex.quote(admin)}")
    if not known or "guest" in users:
        cmds.append(f"{CTL} list_users --silent | cut -f1 | grep -qxF guest && {CTL} delete_user guest || true")
    policies = {p["name"] for p in defs.get("policies", []) if p.get("vhost") == vhost}
    if data["rabbitmq_queue_type"] == "mirrored":
        if "ha-all" not in policies:
            cmds.append(f"{CTL} set_policy -p {qv} --apply-to queues ha-all '^(?!amq\\.).*' '{{\"ha-mode\":\"all\"}}'")
    elif "ha-all" in policies:
        cmds.append(f"{CTL} clear_policy -p {qv} ha-all")
    return cmds


@operation()
def definitions(run: bool = True):
    """The OpenStack user and vhost, the management administrator (passwords from the secrets,
    on stdin), no guest user, and the article's mirrored-queue policy when
    rabbitmq_queue_type is "mirrored".

    + run: False makes it a no-op (called on every host, it acts on one)
    """
    if run:
        passwords = {n: secret_value(n) for n in ("rabbitmq_password", "rabbitmq_admin_password")}
        yield from definition_commands(planned_fact(RabbitmqDefinitions), site().data, passwords)


@deploy("RabbitMQ")
def configure():
    """Same Erlang cookie everywhere, node name rabbit@<hostname>, listeners on the node's
    address. A broker found stuck (unit active, app not running) is restarted first, together
    with any other stuck one (they may wait for each other's tables); stopped brokers start
    together too. A cookie change stops every node that gets it, then they start together.
    Every start is bounded (RESTART: the boot hang is killed and started once more). A changed config restarts nodes one at
    a time; new nodes join the seed one at a time (a failed join leaves the node running
    standalone and says so); then the OpenStack user and vhost. Every step that restarts,
    stops or starts a broker, together or one at a time, is a turn(): skipped once a
    controller has failed earlier in this run. A controller in maintenance gets its files but
    no start, restart, enable or join (epmd's socket is made again there alone, its broker
    stopped); maintenance.py back starts it."""
    packages(name="rabbitmq: packages", names=["rabbitmq-server"])
    seed, states = cluster_states()
    started = wait_until(f"{CTL} await_startup", "rabbitmq to start", on_fail=unit_log("rabbitmq-server"))
    # A controller in maintenance keeps its broker stopped and disabled (maintenance.py back
    # starts it): no start, restart, join or enable here; its files are still written.
    away = marked()
    # A broker paused by pause_minority looks stuck too (unit active, no AMQP listener): one
    # that does not reach a majority of the controllers' distribution ports is paused, not
    # stuck, and resumes by itself when the partition heals: never restarted.
    paused = host.name in stuck(states) and cut_off(host.name)
    announce(paused and not away, f"leave rabbitmq-server alone, never restart it: its broker is not running and "
             f"{host.name} does not reach a majority of the controllers (paused by pause_minority; it resumes by itself "
             "when the partition heals)")
    unstick = host.name in stuck(states) and not away and not paused
    announce(unstick, "restart rabbitmq-server: its unit is active but its broker is not running (stuck nodes together)")
    turn(name="rabbitmq: restart a stuck broker", commands=[f"{RESTART} || {{ {unit_log('rabbitmq-server')}; exit 1; }}", started],
         run=unstick)

    cookie = next(f for f in files_of("rabbitmq") if f.path == COOKIE)
    new_cookie = planned_fact(Sha1File, path=COOKIE) != hashlib.sha1(cookie.content.encode()).hexdigest()
    running = (states.get(host.name) or {}).get("running")
    announce(new_cookie and bool(running), "stop rabbitmq-server: the Erlang cookie changes (every such node stops, "
             "then they start together)")
    # A running node cannot be stopped by rabbitmqctl once its cookie file changed.
    turn(name="rabbitmq: stop before the cookie changes", commands=["timeout 120 systemctl stop rabbitmq-server"], run=new_cookie)
    cookie_stopped = new_cookie
    new_cookie = new_cookie and not away  # stopped for the new cookie, not started with the others
    restart = mark_pending("rabbitmq-server", "rabbitmq")
    # epmd's new listeners take effect when its socket is made again, with no broker
    # registered in it (a broker outlives its epmd's restart unregistered): done in each
    # broker's stop-start below, never on its own.
    rebind = mark_pending("epmd.socket", "epmd")
    # The cookie only with its stop and start: a broker that kept running would keep the old
    # one in memory, and the next run restart it alone with the new one, away from its peers.
    install_files("rabbitmq", with_turns=(COOKIE,))
    install_files("epmd")
    up = [*([EPMD_REBIND] if rebind else []), f"{RESTART} || {{ {unit_log('rabbitmq-server')}; exit 1; }}", started,
          clear_pending("rabbitmq-server")]
    # Together, not one at a time: a node that was not the last to stop waits for its peers' tables.
    turn(name="rabbitmq: start together after the cookie change", commands=up, run=new_cookie)
    # Stopped brokers start together, not one at a time: one that was not the last to stop waits
    # for its peers' tables, and a start alone would time out (seen after the two-nodes-down drill).
    me = states.get(host.name) or {}
    stopped = bool(me.get("installed")) and not me.get("running") and not new_cookie and not away
    announce(stopped, "start rabbitmq-server (every stopped broker together: each waits for its peers' tables)")
    turn(name="rabbitmq: start stopped brokers together", commands=up, run=stopped)
    # In maintenance the broker stays stopped, so epmd's socket is made again on its own, now
    # (no broker registered in it, as the others' stop-start does); a broker still running there
    # (an interrupted maintenance out) is not stopped by the deploy: the marker stays pending.
    alone = away and rebind and (cookie_stopped or not me.get("running"))
    announce(alone, "make epmd's socket again (in maintenance: its broker stays stopped)")
    shell("rabbitmq: epmd's socket made again (in maintenance, broker stopped)", [EPMD_REBIND], when=alone)
    restart = (restart or rebind) and not new_cookie and not stopped and not away
    names = [c.name for c in site().controllers]
    # With controllers in maintenance, a rolling restart must still leave a majority of the
    # brokers running (quorum queues stop without one): else it waits, its pending marker kept,
    # for the first deploy after they are back.
    out = sorted(in_maintenance())
    left = len(names) - len(out) - 1
    deferred = restart and bool(out) and left < len(names) // 2 + 1
    announce(deferred, f"defer the restart of rabbitmq-server: {', '.join(out)} in maintenance, a restart now "
             f"would leave {left} of {len(names)} brokers running (quorum queues need a majority); the first deploy "
             "after maintenance back does it")
    restart = restart and not deferred
    announce(restart, "restart rabbitmq-server (one node at a time)" + (", epmd's socket made again while it is stopped" if rebind else ""))
    for name, mine in one_at_a_time(names):
        turn(
            name=f"rabbitmq: restart {name}",
            commands=[*(["timeout 120 systemctl stop rabbitmq-server"] if rebind else []), *up],
            run=mine and restart,
        )
    service(name="rabbitmq: running", unit="rabbitmq-server", skip=away)
    joins = host.name != seed and f"rabbit@{seed}" not in (states.get(host.name) or {}).get("nodes", []) and not away
    announce(joins, f"join the RabbitMQ cluster of rabbit@{seed} (one node at a time)")
    for name, mine in one_at_a_time([n for n in names if n != seed]):
        turn(
            name=f"rabbitmq: {name} joins the cluster of {seed}",
            commands=[
                f"{CTL} stop_app && {CTL} reset && timeout 120 rabbitmqctl join_cluster rabbit@{seed} "
                f"|| {{ echo '{host.name}: could not join rabbit@{seed}: left running standalone' >&2; "
                f"{CTL} start_app; {unit_log('rabbitmq-server')}; exit 1; }}",
                f"{CTL} start_app",
                started,
            ],
            run=mine and joins,
        )
    # A controller taken out of the inventory (stopped first) stays a cluster member, down,
    # until forgotten; forget_cluster_node refuses a node that still runs.
    gone = removed_members(states.get(seed), names)
    announce(host.name == seed and bool(gone), f"forget {', '.join(gone)} (no longer in the inventory)")
    shell(
        "rabbitmq: forget controllers removed from the inventory",
        [f"{CTL} forget_cluster_node {g} || {{ echo '{host.name}: could not forget {g}: if it still runs, "
         f"stop rabbitmq-server on it first' >&2; exit 1; }}" for g in gone],
        when=host.name == seed and bool(gone),
    )
    definitions(name="rabbitmq: user, vhost, policy", run=host.name == seed)
