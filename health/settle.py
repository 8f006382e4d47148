"""Which HAProxy servers are about to change state: the rule of verify's settle loop.

HAProxy sees a recovered server only after `rise` checks (and a failed one after `fall`): a
report read in between would blame a server its node already reports ready. lagging() names
the critical servers worth waiting for; operations/verify.py re-reads them, bounded.
"""

from __future__ import annotations

import re

from health.haproxy import CRITICAL_LISTENERS
from health.report import problem
from facts.galera_rules import serving

TRANSITIONAL = re.compile(r"^(UP|DOWN) \d+/\d+$")  # "UP 1/5": going down; "DOWN 1/2": going up


def service_ready(listener: str, node: str, results: dict) -> bool:
    """Whether `node`'s own facts say the service behind a critical listener is ready:
    Galera serving (facts.galera_rules.serving: Primary, Synced, ready) for mariadb, the node among its own running RabbitMQ members for rabbitmq_management."""
    facts = results.get(node) or {}
    if listener == "mariadb":
        return not problem(facts, "galera") and serving(facts["galera"])
    if listener == "rabbitmq_management":
        return not problem(facts, "rabbitmq") and f"rabbit@{node}" in (facts["rabbitmq"].get("running_nodes") or [])
    return False


def lagging(name: str, results: dict) -> list[str]:
    """Critical servers in `name`'s HAProxy whose state is about to change: transitional
    ("UP 1/5", "DOWN 1/2"), or not UP although their node reports the service ready; never a
    server in MAINT (a controller in maintenance)."""
    listeners = ((results.get(name) or {}).get("haproxy_servers") or {}).get("listeners") or {}
    found = []
    for listener in CRITICAL_LISTENERS:
        for server, v in (listeners.get(listener) or {}).items():
            status = v.get("status") or ""
            if status.startswith("MAINT"):
                continue  # set by the runtime API (maintenance): checks do not change it
            if TRANSITIONAL.match(status) or (status != "UP" and service_ready(listener, server, results)):
                found.append(f"{listener}/{server} {status}")
    return found
