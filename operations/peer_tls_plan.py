"""TLS between the controllers (galera_tls, rabbitmq_tls) switched on a running cluster: what the
deploy does, and what it refuses. Pure; tested as a table (tests/unit/test_peer_tls.py).

Members with and without TLS cannot talk, in either cluster: a Galera node with socket.ssl_*
and one without never form a component, an Erlang node with `-proto_dist inet_tls` and one
without never connect. A rolling restart (one node at a time, the others keeping quorum) would
therefore take the first restarted node out of its cluster for good. So the switch is a
whole-cluster operation:

- RabbitMQ: every broker of the cluster stops, the files change, then every broker starts
  together (the Erlang cookie's own path, operations/rabbitmq_plan.py steps()): AMQP is out
  for the stop and the start (~10-20 s on the lab), no message of a quorum queue is lost
  (each node keeps its log). Refused when a --limit leaves out a broker that runs the other
  protocol (it would stay on its own), or a paused broker cannot be stopped with its peers.
- Galera: refused while any member runs with the other setting. A deploy that stops every
  database server would take every OpenStack service's writes down for the length of a
  bootstrap and the joins; that is the operator's decision, with its own window, not a side
  effect of a changed key. The fix is named: stop mariadb on every controller, the writer
  last (it then holds the last commit), and run the deploy again: with every controller
  stopped it bootstraps the most advanced with the new setting and the others join it (by
  state transfer, over TLS when it is on).

A running server whose state is unknown (it did not answer) counts as neither: the Galera plan
waits for it, and a broker whose process could not be read is said in `seen`.
"""

from __future__ import annotations

RUNNING = ("tls", "plain")


class PeerTlsRefused(Exception):
    """The deploy refuses a switch it cannot make safely: nothing was changed; the message says
    what each controller runs and the fix."""


def seen(states: dict, key: str, order: list[str]) -> str:
    """Each controller's reading in a few words, for refusals: `node01 tls; node02 plain`."""
    return "; ".join(f"{n} {((states.get(n) or {}).get(key)) or 'not read'}" for n in order)


def differing(states: dict, key: str, want: bool, order: list[str]) -> list[str]:
    """The controllers whose server runs with TLS when `want` is False, or without when True. Pure."""
    return [n for n in order if (states.get(n) or {}).get(key) in RUNNING and (states[n][key] == "tls") != want]


def galera_switch(states: dict, want: bool, order: list[str], writer: str) -> None:
    """None when the run may go on: no running member has the other setting (a new cluster, one
    stopped entirely, or one already switched). Else PeerTlsRefused, naming each member and the
    whole-cluster stop that makes the switch. Pure.

    + states: {name: GaleraTls fact}; None where it could not be read
    + want: galera_tls
    + order: the inventory's controllers
    + writer: the database writer (stopped last: it holds the last commit)
    """
    wrong = differing(states, "galera", want, order)
    if not wrong:
        return None
    setting, other = ("on", "without") if want else ("off", "with")
    stop_order = [n for n in reversed(order) if n != writer] + [writer]
    raise PeerTlsRefused(
        f"galera_tls is {setting} and mariadb runs {other} TLS on {', '.join(wrong)} (seen: {seen(states, 'galera', order)}). "
        "Members with and without TLS cannot form one cluster, so a rolling restart would split it: the switch is "
        "a whole-cluster stop. Fix: in a maintenance window, stop mariadb on every controller, the writer last "
        f"({' then '.join(stop_order)}: `systemctl stop mariadb` on each), then re-run the deploy: it bootstraps the "
        f"most advanced with galera_tls {setting} and the others join it. Or set galera_tls back to {not want}."
    )


def rabbitmq_switch(states: dict, want: bool, order: list[str], in_run: set | frozenset | None = None) -> bool:
    """Whether this run switches the Erlang distribution of running brokers (every broker then
    stops and they start together); PeerTlsRefused when a running broker with the other
    protocol is left out of the run (--limit): it would stay alone. Pure.

    + states: {name: RabbitmqTls fact}; None where it could not be read
    + want: rabbitmq_tls
    + order: the inventory's controllers
    + in_run: the controllers of this run (None: all)
    """
    wrong = differing(states, "rabbitmq", want, order)
    if not wrong:
        return False
    out = [n for n in order if in_run is not None and n not in in_run and (states.get(n) or {}).get("rabbitmq") in RUNNING]
    if out:
        raise PeerTlsRefused(
            f"rabbitmq_tls is {'on' if want else 'off'} and the brokers' Erlang distribution changes (seen: "
            f"{seen(states, 'rabbitmq', order)}): every broker stops and they start together, and --limit leaves out "
            f"{', '.join(out)}, whose broker runs. Fix: run the deploy without --limit (or with every controller)."
        )
    return True
