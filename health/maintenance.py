"""The rows of a controller in maintenance (maintenance.py out): what is expected of it is not
a failure, what would let traffic reach it is. Pure.

Its `maintenance` fact (facts.host.Maintenance) says 1. Then: the VIP must not be on it;
keepalived in FAULT is what its marker does (BACKUP or MASTER means the marker is not tracked);
RabbitMQ stopped is expected (running means an interrupted `out`); Galera and memcached are
judged as usual (MariaDB keeps running as a Synced member). On every HAProxy its servers must
be in MAINT (health.haproxy).
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


def vip_keepalived_rows(site: Site, facts: dict) -> list[Check]:
    """`vip` and `keepalived` of a controller in maintenance."""
    rows = []
    if problem(facts, "vip"):
        rows.append(Check("vip", FAIL, problem(facts, "vip")))
    elif facts["vip"].get("holds_vip"):
        rows.append(Check("vip", FAIL, f"in maintenance but holds {site['vip']}: {RERUN}"))
    else:
        rows.append(Check("vip", OK, f"in maintenance, does not hold {site['vip']}"))
    k = facts.get("keepalived") or {}
    if problem(facts, "keepalived"):
        rows.append(Check("keepalived", FAIL, problem(facts, "keepalived")))
    elif k.get("active") == "active" and k.get("vrrp_state") in ("MASTER", "BACKUP"):
        rows.append(Check("keepalived", FAIL, f"VRRP {k.get('vrrp_state')} though in maintenance: it could take the "
                                              "VIP (keepalived does not track the marker: deploy keepalived.conf)"))
    else:
        rows.append(Check("keepalived", INFO, f"keepalived {k.get('active')}, VRRP {k.get('vrrp_state')}: "
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
