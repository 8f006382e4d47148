"""The rows of a controller in maintenance (maintenance.py out): what is expected of it is not
a failure, what would let traffic reach it is. Pure.

Its `maintenance` fact (facts.host.Maintenance) says 1. Then: no VIP (internal or external)
must be on it; keepalived in FAULT is what its marker does (BACKUP or MASTER means the marker
is not tracked); RabbitMQ stopped is expected (running means an interrupted `out`); Galera,
memcached, the certificate and the firewall are judged as usual (MariaDB keeps running as a
Synced member). On every HAProxy its servers must be in MAINT (health.haproxy).
"""

from __future__ import annotations

from config.site import Site
from health.report import FAIL, INFO, OK, Check, problem

RERUN = "re-run maintenance out (make maintenance-out NODE=...)"


def away(results: dict, collected: list[str]) -> list[str]:
    """The collected controllers whose marker says they are in maintenance."""
    return [n for n in collected if (results[n].get("maintenance") or {}).get("out")]


def marker_rows(facts: dict) -> list[Check]:
    """`maintenance`: a marker that cannot be read fails; one that says 1 is an INFO row."""
    if problem(facts, "maintenance"):
        return [Check("maintenance", FAIL, problem(facts, "maintenance"))]
    if facts["maintenance"].get("out"):
        return [Check("maintenance", INFO, "in maintenance: no traffic, no VIP "
                                           "(make maintenance-back NODE=... brings it back)")]
    return []


def vip_keepalived_rows(site: Site, facts: dict, keys: tuple[str, ...] = ("vip",)) -> list[Check]:
    """`vip` (and `external vip`: `keys`, health.checks.vip_keys) and `keepalived` of a
    controller in maintenance: it holds none of the VIPs, and no VRRP instance of it can take one
    (the marker is tracked by every instance: FAULT in each)."""
    rows = []
    for key in keys:
        name, vip = key.replace("_", " "), site[key]
        if problem(facts, key):
            rows.append(Check(name, FAIL, problem(facts, key)))
        elif facts[key].get("holds_vip"):
            rows.append(Check(name, FAIL, f"in maintenance but holds {vip}: {RERUN}"))
        else:
            rows.append(Check(name, OK, f"in maintenance, does not hold {vip}"))
    k = facts.get("keepalived") or {}
    states = k.get("vrrp_states") or {}
    taking = [f"{i} {st}" for i, st in states.items() if st in ("MASTER", "BACKUP")] if len(states) > 1 else \
        [st for st in [k.get("vrrp_state")] if st in ("MASTER", "BACKUP")]
    if problem(facts, "keepalived"):
        rows.append(Check("keepalived", FAIL, problem(facts, "keepalived")))
    elif k.get("active") == "active" and taking:
        rows.append(Check("keepalived", FAIL, f"VRRP {', '.join(taking)} though in maintenance: it could take the "
                                              "VIP (keepalived does not track the marker: deploy keepalived.conf)"))
    else:
        named = f" ({', '.join(f'{i} {st}' for i, st in states.items())})" if len(states) > 1 else ""
        rows.append(Check("keepalived", INFO, f"keepalived {k.get('active')}, VRRP {k.get('vrrp_state')}{named}: "
                                              "in maintenance, cannot take the VIP (as intended)"))
    return rows


def rabbitmq_rows(facts: dict) -> list[Check]:
    """`rabbitmq` of a controller in maintenance: stopped is expected."""
    if problem(facts, "rabbitmq"):
        return [Check("rabbitmq", INFO, "stopped (in maintenance)")]
    return [Check("rabbitmq", FAIL, f"in maintenance but its broker runs: {RERUN}")]


def server_problem(name: str, server: dict) -> str | None:
    """Why the server of controller `name`, in maintenance, can still take traffic; None in MAINT."""
    status = server.get("status") or "?"
    return None if status.startswith("MAINT") else f"{name} is {status} though in maintenance ({RERUN})"
