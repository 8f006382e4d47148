"""Maintenance of one controller (docs/operations.md "Maintenance"): the command's operations, and what the
deploy needs to keep a controller in maintenance out.

    pyinfra -y inventories/prod.py maintenance.py --data node=node02 --data action=out
    pyinfra -y inventories/prod.py maintenance.py --data node=node02 --data action=back

The decisions are operations/maintenance_plan.py's, taken from every controller's state read
before the command; this module reads it, refuses when the plan does, and runs the steps in
order (pyinfra runs each operation on every host before the next one).
"""

from __future__ import annotations

import os
import shlex

from pyinfra import host
from pyinfra.api import StringCommand, deploy

from config.files import HAPROXY_MAINT_FILE, MAINTENANCE_FILE
from operations.galera import synced_wait
from operations.maintenance_marker import in_maintenance, markers
from operations.rabbitmq import CTL, restart_command
from operations.steps import clear_pending, start_or_fail
from facts.galera import GaleraNode
from facts.haproxy_api import all_maint, api, maint_line, replay
from facts.host import Maintenance
from facts.keepalived import KeepalivedState, VipHolder, ready_check
from facts.rabbitmq import RabbitmqCluster
from operations.before import cluster_fact_args, facts_of_all_controllers
from operations.common import controllers_in_run, decided_once, once, shell, site, unit_log, wait_until
from operations.maintenance_plan import Decision, Refusal, back_commands, decide, out_commands

VIP_SECONDS = 60  # the VIP leaves a node in FAULT at once; another takes it after ~3 adverts
BACK_SECONDS = 300  # RabbitMQ back in the cluster, Galera Synced


def persist(line: str) -> str:
    """Shell: HAPROXY_MAINT_FILE holds `line` (HAProxy's unit replays it at start); removed when empty."""
    if not line:
        return f"rm -f {HAPROXY_MAINT_FILE}"
    return f"install -d {os.path.dirname(HAPROXY_MAINT_FILE)} && echo {shlex.quote(line)} > {HAPROXY_MAINT_FILE}"


def reapply(applied: bool):
    """The deploy, after HAProxy's reload or start (`applied`): a reload forgets the runtime
    API's states, so the servers of every controller in maintenance go to maint again, and the
    unit's replay file is rewritten from the markers. With a marker unknown (a controller not
    read) the replay file is kept and replayed as well: an unreachable controller in
    maintenance stays out. Nothing when none is, as far as can be told."""
    s = site()
    nodes = in_maintenance()
    complete = all(f is not None for f in markers().values())
    listeners = [lst.name for lst in s.listeners]
    line = maint_line(listeners, nodes)
    socket = s["haproxy_stats_socket"]
    # After a reload the old worker may still hold the socket for a moment: applied again until
    # the new one shows every such server in MAINT (bounded).
    check = " && ".join(all_maint(socket, n) for n in sorted(nodes)) or "true"
    kept = replay(socket, HAPROXY_MAINT_FILE) if not complete else "true"
    what = ", ".join(sorted(nodes)) or "no controller"
    shell(f"haproxy: keep {what} in maintenance (runtime API)",
          [persist(line)] * complete + [
           wait_until(f"{api(socket, line) if line else 'true'} && {kept} && sleep 1 && {check}",
                      f"HAProxy to hold the servers of {what} in maint", 30)],
          when=applied and (bool(nodes) or not complete))


# --- the command -------------------------------------------------------------------------


@once
def picture() -> dict:
    """Every controller's state for the decision: {name: {key: fact} or None}."""
    s = site()
    facts = {
        "maintenance": facts_of_all_controllers(Maintenance, path=MAINTENANCE_FILE),
        "galera": facts_of_all_controllers(GaleraNode),
        "rabbitmq": facts_of_all_controllers(RabbitmqCluster, **cluster_fact_args(s)),
        "keepalived": facts_of_all_controllers(KeepalivedState),
        "vip": facts_of_all_controllers(VipHolder, interface=s["vip_interface"], vip=s["vip"]),
    }
    return {c.name: {k: facts[k].get(c.name) for k in facts} for c in s.controllers}


@decided_once("", Refusal)
def decision() -> Decision:
    """What this run does (maintenance_plan.decide), shared by every host; a refusal ends the
    run before any change."""
    s = site()
    order = [c.name for c in s.controllers]
    node, action = str(host.data.get("node") or ""), str(host.data.get("action") or "")
    if set(order) - controllers_in_run():
        raise Refusal(f"maintenance {action} {node}: the command acts on every controller's HAProxy; "
                      "run it without --limit")
    return decide(action, node, order, picture(), writer=s.writer)


def marker(value: int) -> str:
    return f"install -d {os.path.dirname(MAINTENANCE_FILE)} && echo {value} > {MAINTENANCE_FILE}"


def vip_away(node: str, value: int = 1) -> list:
    """Shell, on `node`: the marker at `value` (keepalived: FAULT in every VRRP instance, the VIP
    leaves at once), then waited for on another controller, the external VIP, if any, for gone
    from this one (bounded). Also an upgrade turn's (value 2: operations/upgrade_plan.py AWAY)."""
    s = site()
    vip = shlex.quote(s["vip"])
    # Every VRRP instance tracks the marker: the external VIP (a site's second) leaves with the VIP.
    held = [(s["vip"], s["vip_interface"])] + ([(s["external_vip"], s.external_vip_interface)] if s["external_vip"] else [])
    gone = " && ".join(f"! ip -o -4 addr show dev {shlex.quote(i)} | grep -qw {shlex.quote(v)}" for v, i in held)
    return [
        marker(value),
        wait_until(f"{gone} && ping -c1 -W1 {vip}",
                   f"the VIP {s['vip']} to be held by another controller"
                   + (f" and the external VIP {s['external_vip']} gone from {node}" if s["external_vip"] else ""),
                   VIP_SECONDS,
                   on_fail=f"echo '{node}: is its keepalived.conf older than maintenance (no track_file "
                           "maintenance)? Run the deploy, then maintenance out again' >&2"),
    ]


def vip_ready(node: str) -> StringCommand:
    """Shell, on `node`: keepalived out of FAULT again in every VRRP instance (BACKUP or
    MASTER: this controller may take the VIP), waited for, bounded. After HAProxy restarts,
    check_alive must pass `rise` times in a row (keepalived_check_rise x _interval, 20 s by
    default) first: an upgrade turn that ended sooner would start the next turn with one
    controller fewer able to take the VIP (lab: the roll's last two controllers still in FAULT
    when the health report ran)."""
    s = site()
    seconds = s["keepalived_check_rise"] * s["keepalived_check_interval"] + VIP_SECONDS
    return wait_until(ready_check(), f"keepalived on {node} out of FAULT (check_alive passed again: it may take the VIP)", seconds,
                      on_fail=f"echo '{node}: keepalived stays in FAULT: HAProxy not serving, or check_alive failing "
                              "(journalctl -u keepalived)' >&2")


@deploy("Maintenance")
def run():
    """Take a controller out, or bring it back (see out() and back())."""
    d = decision()
    host.log(f"maintenance {d.action} {d.node}" + (" (converging: " + ("already out" if d.action == "out"
                                                   else "not marked out") + ")" if d.already else ""))
    (out if d.action == "out" else back)(d)


def out(d: Decision):
    """The marker first (keepalived: FAULT in every VRRP instance, the VIP leaves at once and
    is waited for on another controller, the external VIP, if any, for gone from this one); then on every HAProxy the database server to maint with its sessions
    shut, the API servers drained (bounded), then maint; then RabbitMQ stopped and disabled
    (its clients reconnect to the others; quorum queues keep their majority). MariaDB keeps
    running: it stays a Synced Galera member (the quorum and a donor stay as they were, its
    return needs no state transfer); only its clients are moved away."""
    s = site()
    mine = host.name == d.node
    shell(f"maintenance: {d.node} marked out, the VIP away from it", vip_away(d.node), when=mine)
    listeners = [lst.name for lst in s.listeners]
    shell(f"maintenance: {d.node}'s servers out of this HAProxy (runtime API)", [
        persist(maint_line(listeners, d.in_maintenance)),
        *out_commands(listeners, s.db_listener, d.node, s["haproxy_stats_socket"], s["maintenance_drain_seconds"]),
    ], when=True)
    shell(f"maintenance: RabbitMQ stopped and disabled on {d.node}", [
        f"timeout 120 systemctl stop rabbitmq-server || {{ {unit_log('rabbitmq-server')}; exit 1; }}",
        "systemctl disable -q rabbitmq-server",
    ], when=mine)


def back(d: Decision):
    """RabbitMQ enabled, started and a running member again, Galera Synced; then its servers
    ready on every HAProxy (the writer order restored: maintenance_plan.back_commands); the
    marker cleared last (with nopreempt the VIP does not move back by itself)."""
    s = site()
    mine = host.name == d.node
    running = 1 + sum(1 for n, st in picture().items() if n != d.node and st and (st["rabbitmq"] or {}).get("broker"))
    shell(f"maintenance: {d.node}'s RabbitMQ and Galera serving again", [
        "systemctl enable -q rabbitmq-server",
        start_or_fail("rabbitmq-server", f"systemctl is-active -q rabbitmq-server || {restart_command(s['rabbitmq_start_timeout'])}"),
        wait_until(f"{CTL} await_online_nodes {running}", f"{running} RabbitMQ nodes running, {d.node} among them",
                   BACK_SECONDS, on_fail=unit_log("rabbitmq-server")),
        clear_pending("rabbitmq-server"),
        synced_wait(),
    ], when=mine)
    listeners = [lst.name for lst in s.listeners]
    order = [c.name for c in s.controllers]
    socket = s["haproxy_stats_socket"]
    shell(f"maintenance: {d.node}'s servers ready on this HAProxy (runtime API)", [
        persist(maint_line(listeners, d.in_maintenance)),
        *back_commands(listeners, s.db_listener, d.node, order, socket, d.writer,
                       lambda check, what: wait_until(check, what, 60)),
    ], when=True)
    shell(f"maintenance: {d.node} marked back (may hold the VIP again)", [marker(0)], when=mine)

