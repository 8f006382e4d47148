"""RabbitMQ on every controller: one cluster, each node joined once, one at a time."""

from __future__ import annotations

import hashlib
import shlex

from pyinfra import host
from pyinfra.api import deploy, operation
from pyinfra.facts.files import Sha1File

from config.files import ERLANG_COOKIE
from config.packages import PACKAGES
from facts.rabbitmq import RabbitmqCluster, RabbitmqDefinitions, RabbitmqTls
from operations.common import (
    Refused, announce, controllers_in_run, decided_once, files_of, once, one_at_a_time, secret_value, shell, site, turn,
    unit_log, wait_until,
)
from operations.before import (
    cluster_fact_args, definitions_args, facts_of_all_controllers, known_in_run, members_of_all, planned_fact,
)
from operations.maintenance_marker import in_maintenance, marked
from operations.peer_tls_plan import PeerTlsRefused, rabbitmq_switch
from operations.rabbitmq_plan import Plan, RabbitmqStateError, Steps, plan, steps
from operations.steps import clear_pending, consume, daemon_reload, install_files, mark_pending, mark_reload, packages, secret_input, service, start_or_fail

COOKIE = ERLANG_COOKIE
CTL = "timeout 60 rabbitmqctl"


def restart_command(bound: int) -> str:
    """A bounded restart of the broker (`bound`: rabbitmq_start_timeout, 120 s by default; a
    normal one takes ~6 s on the lab). A restart not finished by then is the boot hang of Debian
    12's RabbitMQ 3.10.8 on Erlang 25 in `global` synchronisation (rabbitmq-server#6034, fixed in
    later 3.10.x): seen on the lab after power cuts and once in a first deploy. The node is killed
    and started once more, that try bounded by twice as long, 300 s at least: systemd's own bound
    (the same as the first try's) ends a second hang first, with the stop of the hung broker after
    it; a second failure fails the run. systemd bounds every start the same way (the unit's
    drop-in, config/paths.py RABBITMQ_UNIT_DROPIN), also the starts no deploy makes. Pure."""
    return (
        f"timeout {bound} systemctl restart rabbitmq-server || {{ "
        f"echo \"$(hostname): rabbitmq-server did not start within {bound} s (the boot hang of rabbitmq-server#6034?): "
        "killed and started once more\" >&2; systemctl kill -s KILL rabbitmq-server; sleep 2; "
        f"timeout {max(300, 2 * bound)} systemctl restart rabbitmq-server; }}"
    )


def heal_command(name: str, restart: str, controllers: list[str]) -> str:
    """Controller `name`'s restart to clear a partition that outlived the network's heal, its
    decision re-checked on the node when it executes: its own partition record still non-empty
    and every controller's broker running (asked from this node's broker, one Erlang eval: an
    RPC to each, whatever the views say), else no restart: nothing recorded any more is done
    (exit 0); anything else refuses (exit 1), naming what it saw and what to run."""
    nodes = ", ".join(f'list_to_atom("rabbit@{n}")' for n in controllers)  # validated names
    probe = ("timeout 60 rabbitmqctl -q eval 'io:format(\"~b ~b~n\", [length(rabbit_node_monitor:partitions()), "
             f"length([N || N <- [{nodes}], rpc:call(N, rabbit, is_running, [], 10000) =:= true])]).' 2>/dev/null | head -1")
    return (
        f"seen=$({probe}); set -- $seen; "
        f"if [ \"$1\" = 0 ]; then echo '{name}: no partition recorded any more: not restarted'; exit 0; fi; "
        f"if ! [ \"$1\" -gt 0 ] 2>/dev/null || ! [ \"$2\" -ge {len(controllers)} ] 2>/dev/null; then "
        f"echo \"{name}: not restarted: its partition record and {len(controllers)} running brokers were expected, "
        "the broker said '$seen' (records, running brokers); run the deploy again once every broker runs\" >&2; exit 1; fi; "
        f"{restart}"
    )


# epmd's socket made again with its drop-in's listeners (config/files.py EPMD_SOCKET_DROPIN);
# the broker is stopped (restart_command() starts it after).
EPMD_REBIND = ("systemctl daemon-reload && systemctl stop epmd.socket epmd.service && systemctl start epmd.socket && "
               + clear_pending("epmd.socket"))


@once
def cluster_states() -> dict:
    """Every controller's RabbitmqCluster fact, also of controllers a --limit leaves out; a
    controller of this run whose state is unknown stops the run (known_in_run)."""
    s = site()
    return known_in_run(facts_of_all_controllers(RabbitmqCluster, **cluster_fact_args(s)), "the RabbitMQ state")


@decided_once("rabbitmq: ", RabbitmqStateError)
def cluster_plan() -> Plan:
    """The plan of this run, shared by every host (operations/rabbitmq_plan.py)."""
    s = site()
    return plan(cluster_states(), [c.name for c in s.controllers], {c.name: c.address for c in s.controllers},
                away=in_maintenance(), partition_handling=s["rabbitmq_partition_handling"], members=members_of_all())


@decided_once("rabbitmq: ", PeerTlsRefused)
def tls_switch() -> bool:
    """Whether this run switches the brokers' Erlang distribution to or from TLS (every broker
    stops, then they start together); a refusal ends the run before any change
    (operations/peer_tls_plan.py)."""
    s = site()
    return rabbitmq_switch(facts_of_all_controllers(RabbitmqTls), s["rabbitmq_tls"], [c.name for c in s.controllers],
                           controllers_in_run())


def node_steps(p: Plan, running: bool, new_cookie: bool, pending: bool = False, rebind: bool = False) -> Steps:
    """This host's steps (rabbitmq_plan.steps); its refusal ends the run before any change."""
    try:
        return steps(p, host.name, running, new_cookie, pending=pending, rebind=rebind, tls_switch=tls_switch())
    except RabbitmqStateError as exc:
        raise Refused(f"rabbitmq: {exc}") from None


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
    elif users[name].get("password_ok") is not True:
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
    (rabbitmq_admin_user) has the administrator tag and no vhost permission at all; the health
    report's account (rabbitmq_monitor_user) has the monitoring tag (GET /api/nodes needs it:
    node-level data) and no vhost permission (no messaging, no queue contents)."""
    user, vhost, admin = data["rabbitmq_user"], data["rabbitmq_vhost"], data["rabbitmq_admin_user"]
    monitor = data["rabbitmq_monitor_user"]
    qu, qv = shlex.quote(user), shlex.quote(vhost)
    known = not defs.get("error")
    users = {u["name"]: u for u in defs.get("users", [])}
    cmds = []
    if not known or vhost not in {v["name"] for v in defs.get("vhosts", [])}:
        cmds.append(f"{CTL} list_vhosts --silent | grep -qxF -- {qv} || {CTL} add_vhost {qv}")
    cmds += account_commands(user, "rabbitmq_password", passwords["rabbitmq_password"], "", users, known)
    cmds += account_commands(admin, "rabbitmq_admin_password", passwords["rabbitmq_admin_password"], "administrator", users, known)
    cmds += account_commands(monitor, "rabbitmq_monitor_password", passwords["rabbitmq_monitor_password"], "monitoring", users, known)
    perms = [p for p in defs.get("permissions", []) if p.get("user") == user and p.get("vhost") == vhost]
    if not perms or (perms[0]["configure"], perms[0]["write"], perms[0]["read"]) != (".*", ".*", ".*"):
        cmds.append(f"{CTL} set_permissions -p {qv} {qu} '.*' '.*' '.*'")
    for p in defs.get("permissions", []):
        if p.get("user") in (admin, monitor):
            cmds.append(f"{CTL} clear_permissions -p {shlex.quote(p['vhost'])} {shlex.quote(p['user'])}")
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
    """The OpenStack user and vhost, the management administrator, the health report's
    monitoring account (passwords from the secrets, on stdin), no guest user, and the article's mirrored-queue policy when
    rabbitmq_queue_type is "mirrored".

    + run: False makes it a no-op (called on every host, it acts on one)
    """
    if run:
        passwords = {n: secret_value(n) for n in ("rabbitmq_password", "rabbitmq_admin_password", "rabbitmq_monitor_password")}
        yield from definition_commands(planned_fact(RabbitmqDefinitions, **definitions_args(site(), host.name)),
                                       site().data, passwords)


@deploy("RabbitMQ")
def configure():
    """Same Erlang cookie everywhere, node name rabbit@<hostname>, listeners on the node's
    address. The decisions are operations/rabbitmq_plan.py's, taken once from every controller's
    state; this carries them out. A broker found stuck (unit active, app not running) is
    restarted first, together with any other stuck one (they may wait for each other's
    tables); one paused by pause_minority (cut off while a majority runs) is waited for, never
    restarted, started or joined; stopped brokers start
    together too. A cookie change stops every node that gets it, then they start together.
    Every start is bounded (rabbitmq_start_timeout, restart_command(): the boot hang is killed and
    started once more), by systemd too (the unit's drop-in, written before any start of the run:
    a change of it is a daemon-reload, never a restart). A changed config restarts nodes one at
    a time; new nodes join the seed one at a time (a failed join leaves the node running
    standalone and says so); then the OpenStack user and vhost. Every step that restarts,
    stops or starts a broker, together or one at a time, is a turn(): skipped once a
    controller has failed earlier in this run. A controller in maintenance gets its files but
    no start, restart, enable or join (epmd's socket is made again there alone, its broker
    stopped); maintenance.py back starts it."""
    packages(name="rabbitmq: packages", names=list(PACKAGES["rabbitmq"]))
    p = cluster_plan()
    tls_switch()
    seed = p.seed
    started = wait_until(f"{CTL} await_startup", "rabbitmq to start", on_fail=unit_log("rabbitmq-server"))
    # A controller in maintenance keeps its broker stopped and disabled (maintenance.py back
    # starts it): no start, restart, join or enable here; its files are still written.
    away = marked()  # also stops the run when this controller's marker could not be read
    cookie = next(f for f in files_of("rabbitmq") if f.path == COOKIE)
    new_cookie = planned_fact(Sha1File, path=COOKIE) != hashlib.sha1(cookie.content.encode()).hexdigest()
    running = bool((cluster_states().get(host.name) or {}).get("running"))
    announce(host.name in p.paused, f"wait for rabbitmq-server on {host.name}: its broker is paused (pause_minority: it does "
             "not reach a majority of the controllers, which run theirs); it resumes by itself when it reaches them "
             "again: not restarted, started or joined")
    # restart, pending and rebind are only known once the files are planned below: steps()
    # is taken again there with them; the steps before the files depend on none of them.
    first = node_steps(p, running, new_cookie)
    # systemd's bound on every start (TimeoutStartSec, the boot hang of rabbitmq-server#6034),
    # before any start of this run: its own component, never a restart trigger (a new bound
    # applies to the next start; rolling every broker for it would be a restart for nothing).
    bounded = start_or_fail("rabbitmq-server", restart_command(site()["rabbitmq_start_timeout"]))
    reload = mark_reload("rabbitmq_unit")
    install_files("rabbitmq_unit")
    daemon_reload("rabbitmq: reload systemd units (rabbitmq-server's drop-in)", "rabbitmq_unit", reload)
    announce(first.unstick, "restart rabbitmq-server: its unit is active but its broker is not running (stuck nodes together)")
    turn(name="rabbitmq: restart a stuck broker", commands=[bounded, started],
         run=first.unstick)

    why = "the Erlang cookie changes" if new_cookie else "the Erlang distribution switches TLS (rabbitmq_tls)"
    announce(first.cookie_stop and running, f"stop rabbitmq-server: {why} (every such node stops, "
             "then they start together)")
    # A running node cannot be stopped by rabbitmqctl once its cookie file changed.
    turn(name="rabbitmq: stop before the cookie changes", commands=["timeout 120 systemctl stop rabbitmq-server"],
         run=first.cookie_stop)
    restart = mark_pending("rabbitmq-server", "rabbitmq")
    # epmd's new listeners take effect when its socket is made again, with no broker
    # registered in it (a broker outlives its epmd's restart unregistered): done in each
    # broker's stop-start below, never on its own.
    rebind = mark_pending("epmd.socket", "epmd")
    mine = node_steps(p, running, new_cookie, pending=restart, rebind=rebind)
    # The cookie only with its stop and start: a broker that kept running would keep the old
    # one in memory, and the next run restart it alone with the new one, away from its peers.
    install_files("rabbitmq", with_turns=(COOKIE,))
    install_files("epmd")
    up = [*([EPMD_REBIND] if rebind else []), bounded, started,
          clear_pending("rabbitmq-server")]
    # Together, not one at a time: a node that was not the last to stop waits for its peers' tables.
    turn(name="rabbitmq: start together after the cookie change", commands=up, run=mine.cookie_start)
    # Stopped brokers start together, not one at a time: one that was not the last to stop waits
    # for its peers' tables, and a start alone would time out (seen after the two-nodes-down drill).
    announce(mine.start, "start rabbitmq-server (every stopped broker together: each waits for its peers' tables)")
    turn(name="rabbitmq: start stopped brokers together", commands=up, run=mine.start)
    # In maintenance the broker stays stopped, so epmd's socket is made again on its own, now
    # (no broker registered in it, as the others' stop-start does); a broker still running there
    # (an interrupted maintenance out) is not stopped by the deploy: the marker stays pending.
    announce(mine.rebind_alone, "make epmd's socket again (in maintenance: its broker stays stopped)")
    shell("rabbitmq: epmd's socket made again (in maintenance, broker stopped)", [EPMD_REBIND], when=mine.rebind_alone)
    names = [c.name for c in site().controllers]
    # With controllers in maintenance, a rolling restart must still leave a majority of the
    # brokers running (quorum queues stop without one): else it waits, its pending marker kept,
    # for the first deploy after they are back.
    announce(mine.deferred, f"defer the restart of rabbitmq-server: {', '.join(sorted(p.away))} in maintenance, a restart now "
             f"would leave {p.left} of {len(names)} brokers running (quorum queues need a majority); the first deploy "
             "after maintenance back does it")
    announce(mine.restart, "restart rabbitmq-server (one node at a time)" + (", epmd's socket made again while it is stopped" if rebind else ""))
    for name, turn_mine in one_at_a_time(names):
        turn(
            name=f"rabbitmq: restart {name}",
            commands=[*(["timeout 120 systemctl stop rabbitmq-server"] if rebind else []), *up],
            run=turn_mine and mine.restart,
        )
    # A partition that outlived the network's heal (every broker running, the partition still
    # recorded: pause_minority acts only while cut off): its minority restarted, one at a time.
    announce(mine.heal, f"restart rabbitmq-server: a partition outlived the network's heal and {host.name} is its "
             "minority side (RabbitMQ's partitions guide; one node at a time, re-checked on the node first)")
    for name, turn_mine in one_at_a_time(list(p.heal)):
        turn(
            name=f"rabbitmq: restart {name}, the minority of a partition kept after the heal",
            commands=[heal_command(name, bounded, names), started],
            run=turn_mine and mine.heal,
        )
    service(name="rabbitmq: running", unit="rabbitmq-server", skip=away)
    announce(mine.join, f"join the RabbitMQ cluster of rabbit@{seed} (one node at a time)")
    for name, turn_mine in one_at_a_time([n for n in names if n != seed]):
        turn(
            name=f"rabbitmq: {name} joins the cluster of {seed}",
            commands=[
                f"{CTL} stop_app && {CTL} reset && timeout 120 rabbitmqctl join_cluster rabbit@{seed} "
                f"|| {{ echo '{host.name}: could not join rabbit@{seed}: left running standalone' >&2; "
                f"{CTL} start_app; {unit_log('rabbitmq-server')}; exit 1; }}",
                f"{CTL} start_app",
                started,
            ],
            run=turn_mine and mine.join,
        )
    # A controller taken out of the inventory (stopped first) stays a cluster member, down,
    # until forgotten; forget_cluster_node refuses a node that still runs.
    gone = mine.forget
    announce(bool(gone), f"forget {', '.join(gone)} (no longer in the inventory)")
    shell(
        "rabbitmq: forget controllers removed from the inventory",
        [f"{CTL} forget_cluster_node {g} || {{ echo '{host.name}: could not forget {g}: if it still runs, "
         f"stop rabbitmq-server on it first' >&2; exit 1; }}" for g in gone],
        when=bool(gone),
    )
    definitions(name="rabbitmq: user, vhost, policy", run=mine.definitions)
    # The health report's login (facts.rabbitmq RabbitmqMembers, curl -K), on every controller,
    # also one in maintenance: its own component, so a new password never restarts the broker.
    install_files("rabbitmq_monitor")
