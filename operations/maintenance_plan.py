"""Maintenance of one controller, pure: whether to refuse (from the whole picture) and the
HAProxy runtime-API requests that take its servers out and bring them back.

The picture is every controller's state before the command, read in parallel
(operations/maintenance.py): {name: {"maintenance": Maintenance, "galera": GaleraNode,
"rabbitmq": RabbitmqCluster, "keepalived": KeepalivedState, "vip": VipHolder}}; a controller
that could not be read maps to None. Tested as a table (tests/unit/test_maintenance.py).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from facts.galera_rules import serving
from facts.haproxy_api import api, requests, server_up, sessions

ACTIONS = ("out", "back")
PICTURE = ("maintenance", "galera", "rabbitmq", "keepalived", "vip")
USAGE = "pyinfra INVENTORY maintenance.py --data node=NODE --data action=out|back (or make maintenance-out NODE=NODE)"


class Refusal(Exception):
    """The command refuses: nothing was changed; the message names the node and the fix."""


@dataclass(frozen=True)
class Decision:
    action: str
    node: str
    already: bool  # out: the node was already (partly) out; back: it was not out (converging)
    holds_vip: bool  # out: the VIP must move away first
    writer: bool  # the database listener's first server: its return restores the writer order
    in_maintenance: tuple  # every controller in maintenance once the command is done


def majority(count: int) -> int:
    return count // 2 + 1


def marked(st: dict | None) -> bool:
    return bool(st and (st.get("maintenance") or {}).get("out"))


def decide(action: str, node: str, order: list[str], picture: dict[str, dict | None], *, writer: str) -> Decision:
    """What the command does, or a Refusal. Pure.

    + action: "out" or "back"
    + node: the controller named by the operator
    + order: the inventory's controllers, in order
    + picture: see the module's docstring
    + writer: the database listener's active server (config.site.Site.writer)
    """
    if action not in ACTIONS:
        raise Refusal(f"maintenance: action {action!r} is neither 'out' nor 'back': {USAGE}")
    if node not in order:
        raise Refusal(f"maintenance: {node!r} is not a controller of this inventory ({', '.join(order)}): "
                      f"name one of them: {USAGE}")
    unread = [n for n in order if not picture.get(n) or any(picture[n].get(k) is None for k in PICTURE)]
    if unread:
        raise Refusal(
            f"maintenance {action} {node}: {', '.join(unread)} could not be read (unreachable, or a fact failed): "
            "with a partial picture nothing is changed. Bring it back and re-run; if it is down, repair it first "
            f"(pyinfra INVENTORY deploy.py --limit {unread[0]}), or remove it from the inventory if it is lost for good.")
    others = [n for n in order if n != node]
    out_after = sorted(n for n in order if (marked(picture[n]) and not (action == "back" and n == node))
                       or (action == "out" and n == node))
    if action == "out":
        need = majority(len(order))
        _enough(node, "Galera members serving", [n for n in others if n not in out_after and serving(picture[n]["galera"])],
                need, order, out_after)
        _enough(node, "RabbitMQ brokers running", [n for n in others if n not in out_after and picture[n]["rabbitmq"].get("broker")],
                need, order, out_after)
        holds = bool(picture[node]["vip"].get("holds_vip"))
        takers = [n for n in others if n not in out_after and picture[n]["keepalived"].get("active") == "active"
                  and picture[n]["keepalived"].get("vrrp_state") in ("BACKUP", "MASTER")]
        if holds and not takers:
            seen = ", ".join(f"{n} {picture[n]['keepalived'].get('vrrp_state') or picture[n]['keepalived'].get('active')}"
                             for n in others)
            raise Refusal(f"maintenance out {node}: {node} holds the VIP and no other controller can take it "
                          f"(keepalived: {seen}): the VIP would be held by nobody. Repair keepalived/HAProxy on "
                          "another controller first (the health report says what fails).")
        return Decision("out", node, marked(picture[node]), holds, node == writer, tuple(out_after))
    return Decision("back", node, not marked(picture[node]), False, node == writer, tuple(out_after))


def _enough(node: str, what: str, left: list[str], need: int, order: list[str], out_after: list[str]) -> None:
    if len(left) < need:
        away = [n for n in out_after if n != node]
        fix = (f"bring {', '.join(away)} back first (make maintenance-back NODE={away[0]})" if away else
               "repair the others first (pyinfra INVENTORY deploy.py; the health report says what fails)")
        raise Refusal(f"maintenance out {node}: it would leave {len(left)} of {len(order)} {what} "
                      f"({', '.join(left) or 'none'}), fewer than a majority ({need}); "
                      f"in maintenance already: {', '.join(away) or 'none'}. Not taking {node} out: {fix}.")


# --- taking a controller's servers out and back (HAProxy's runtime API: facts/haproxy_api.py) ---


def out_commands(listeners: list[str], db: str, node: str, socket: str, drain_seconds: int) -> list[str]:
    """Shell, on one controller: take `node`'s servers out of its HAProxy. Pure.

    The database listener first and at once: maint, then its sessions shut, in one line. Not
    drain: a drained writer takes no new sessions (they go to the next server) while its open
    ones keep writing, two writers for the whole drain time. The order on one CLI line keeps
    it to the moment between two requests, as HAProxy's own `on-marked-down shutdown-sessions`.
    The HTTP listeners: drain (open sessions finish, new ones go to the others), wait until
    none is left or drain_seconds passed, then maint and what is left shut."""
    others = [lst for lst in listeners if lst != db]
    wait = (f"for i in $(seq {int(drain_seconds)}); do [ \"$({sessions(socket, node, db)})\" = 0 ] && break; sleep 1; done"
            if drain_seconds else "true")
    return [
        api(socket, requests([db], node, "state maint", "shutdown sessions")),
        api(socket, requests(others, node, "state drain")),
        f"test ! -S {shlex.quote(socket)} || {{ {wait}; }}",
        api(socket, requests(others, node, "state maint", "shutdown sessions")),
    ]


def back_commands(listeners: list[str], db: str, node: str, order: list[str], socket: str, writer: bool,
                  wait) -> list[str]:
    """Shell, on one controller: `node`'s servers ready again. Pure but for `wait` (a bounded
    wait builder: wait(check, what) -> shell).

    When `node` is the database writer by the configured order, HAProxy sends new sessions to
    it once its check passes again while the sessions opened meanwhile stay on the next server:
    two writers. So, as `on-marked-up shutdown-backup-sessions` does after a failure, once it is
    UP the other servers' sessions are shut: the writer order restored at once, clients
    reconnect (to it) once, never two writers for longer than between two requests."""
    cmds = [api(socket, requests(listeners, node, "state ready"))]
    if writer:
        cmds += [f"test ! -S {shlex.quote(socket)} || {{ {wait(server_up(socket, db, node), f'{db}/{node} UP in HAProxy')}; }}",
                 api(socket, "; ".join(requests([db], n, "shutdown sessions") for n in order if n != node))]
    return cmds
