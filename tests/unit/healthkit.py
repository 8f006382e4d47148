"""Helpers of the health tests: captured outputs (captures/), the lab's site, fact sets.

capture("galera", "synced") runs captures/galera/synced.txt through GaleraNode.process();
host_facts("captured_holder") builds one controller's facts from captures/hosts/<case>.json;
healthy(site) is every controller of the lab healthy (node01 the VIP holder).
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from config.site import build_site
from types import SimpleNamespace

from facts import backup as _backup, firewall as _firewall, galera as _galera, galera_rules as _galera_rules, haproxy as _haproxy, host as _host
from facts import keepalived as _keepalived, memcached as _memcached, monitoring as _monitoring, probe as _probe
from facts import rabbitmq as _rabbitmq

# Every fact and probe helper by name (the facts live in one module per component).
F = SimpleNamespace(**{k: v for m in (_backup, _probe, _host, _firewall, _galera, _galera_rules, _haproxy, _keepalived, _memcached,
                                      _monitoring, _rabbitmq)
                       for k, v in vars(m).items() if not k.startswith("_")})

CAPTURES = Path(__file__).resolve().parent / "captures"

# The fact behind each key of a controller's facts (operations/verify.py's collect_facts()).
FACT_OF = {
    "vip": F.VipHolder,
    "keepalived": F.KeepalivedState,
    "haproxy_info": F.HaproxyInfo,
    "haproxy_servers": F.HaproxyServers,
    "galera": F.GaleraNode,
    "rabbitmq": F.RabbitmqMembers,
    "memcached": F.MemcachedStats,
    "maintenance": F.Maintenance,
    "firewall": F.FirewallState,
    "haproxy_tls": F.HaproxyCertificate,
    "amqp_tls": F.AmqpTls,
    "backup": F.BackupManifests,
    "prometheus": F.PrometheusTargets,
    "alertmanager": F.AlertmanagerCluster,
}

NAMES = ("node01", "node02", "node03")


def lines(text: str) -> list[str]:
    """The output as pyinfra hands it to process(): its lines; \\r\\n endings (memcached) keep the \\r."""
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def capture_text(key: str, case: str) -> str:
    """captures/<key>/<case>.txt, byte for byte."""
    with open(CAPTURES / key / f"{case}.txt", newline="") as f:
        return f.read()


def capture(key: str, case: str) -> dict:
    """A captured output through its fact's process()."""
    return FACT_OF[key]().process(lines(capture_text(key, case)))


def host_facts(case: str) -> dict:
    """One controller's facts from captures/hosts/<case>.json (capture names are processed)."""
    spec = json.loads((CAPTURES / "hosts" / f"{case}.json").read_text())
    return {key: capture(key, value) if isinstance(value, str) else value for key, value in spec.items()}


def lab_site():
    return build_site(
        [(n, {"address": f"10.77.0.{11 + i}", "vrrp_priority": 150 - 10 * i}) for i, n in enumerate(NAMES)],
        {"internal_network": "10.77.0.0/24", "vip": "10.77.0.100", "vip_interface": "enp8s0f0"},
    )


def servers(site, down=(), status=None):
    """A HaproxyServers result: every catalogue listener, all servers UP unless named."""
    status = status or {}
    listeners = {}
    for listener in site.listeners:
        listeners[listener.name] = {
            n: {
                "status": status.get((listener.name, n), "DOWN" if (listener.name, n) in down else "UP"),
                "backup": listener.name == "mariadb" and n != "node01",
                "check": None,
            }
            for n in NAMES
        }
    return {"listeners": listeners, "backends": {}, "error": None}


def api_down(site):
    """The normal state of this project: OpenStack API servers DOWN, ours UP."""
    return {
        (lst.name, n)
        for lst in site.listeners
        if lst.name not in ("mariadb", "rabbitmq_management")
        for n in NAMES
    }


def healthy(site, holder="node01"):
    """Every controller's facts, all healthy (captures/hosts/healthy.json), `holder` holding
    the VIP (keepalived MASTER there), the API servers DOWN as usual."""
    node = host_facts("healthy")
    node["haproxy_tls"] = certificate(days=400)
    node["backup"] = capture("backup", "lab")  # read on the backup node only (backup_enabled)
    # rabbitmq_amqp_tls: its listener answers TLS 1.3 with a certificate that verifies; off: nothing listens
    node["amqp_tls"] = capture("amqp_tls", "tls13" if site.data["rabbitmq_amqp_tls"] else "refused")
    results = {}
    for n in NAMES:
        results[n] = copy.deepcopy(node)
        results[n]["vip"]["holds_vip"] = n == holder
        results[n]["keepalived"]["vrrp_state"] = "MASTER" if n == holder else "BACKUP"
        results[n]["haproxy_servers"] = servers(site, down=api_down(site))
        if site["monitoring_enabled"]:
            results[n].update(watched(site))
    return results


def targets(site, down=(), health="down") -> dict:
    """A PrometheusTargets result: every job of every controller up, but the (job, node) in `down`."""
    from config.monitoring import JOBS

    return {"answering": True, "error": None,
            "targets": [{"job": job, "node": c.name, "instance": f"{c.address}:1", "health": health if (job, c.name) in down else "up",
                         "last_error": "connection refused" if (job, c.name) in down else ""}
                        for job, _, _ in JOBS for c in site.controllers]}


def peers(site, names=None, status="ready") -> dict:
    """An AlertmanagerCluster result: `names` (default every controller; an address as is) its peers."""
    address = {c.name: c.address for c in site.controllers}
    names = [c.name for c in site.controllers] if names is None else names
    return {"answering": True, "status": status, "peers": sorted(address.get(n, n) for n in names), "error": None}


def watched(site) -> dict:
    """One controller's monitoring facts, all healthy (monitoring_enabled)."""
    return {"prometheus": targets(site), "alertmanager": peers(site)}


def certificate(days: float, now: datetime | None = None) -> dict:
    """A HaproxyCertificate result: a certificate that expires `days` after `now` (the clock)."""
    until = (now or datetime.now(timezone.utc)) + timedelta(days=days)
    return {"not_after": until.strftime("%Y-%m-%dT%H:%M:%SZ"), "error": None}


def statuses(report, host):
    return {c.name: c.status for c in report.hosts[host]}


def row(report, host, name):
    """The row `name` of `host` (StopIteration when there is none: no row is a failure too)."""
    return next(c for c in report.hosts[host] if c.name == name)


def cluster(report, name):
    return next(c for c in report.cluster if c.name == name)


class FakeHost:
    """A pyinfra host that answers one fact class from canned results, one per call (the last
    repeats); its calls are kept as (fact name, arguments)."""

    name = "node01"

    def __init__(self, fact, answers):
        self.fact, self.answers, self.calls = fact, list(answers), []

    def get_fact(self, fact, **kwargs):
        self.calls.append((fact.__name__, kwargs))
        assert fact is self.fact and kwargs.pop("_ignore_errors") is True
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
