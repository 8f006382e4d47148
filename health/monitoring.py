"""Monitoring in the health report (monitoring_enabled only; docs/monitoring.md): this
controller's Prometheus answers and scrapes every controller's exporters, each up; its
Alertmanager's cluster is the controllers. Pure.

    monitoring_rows(site, facts, up) -> [Check]     (facts: PrometheusTargets and AlertmanagerCluster
                                                     under "prometheus" and "alertmanager")
    lagging_targets(name, results) -> [str]         (verify's settle loop)
    settling(name, results) -> [str]                (the same, for Alertmanager's cluster)

What fails and what warns: the deploy awaits each daemon's /-/ready, so one that does not
answer is a FAIL, as is a Prometheus without a target the site's prometheus.yml lists (its
configuration is not the deploy's) and an Alertmanager peer that is no controller (another
cluster joined through the gossip port: one side's notifications swallowed as the other's
duplicates). A target down on a controller up, a cluster still settling or missing a
controller are WARN: they are what the alerts are for (and a target restarted by the run is
down until its next scrape: the settle loop waits for it first), the HA layer serves through them.
"""

from __future__ import annotations

from config.monitoring import JOBS
from config.site import Site
from health.report import FAIL, OK, WARN, Check, problem
from health.settle import service_ready

SHOWN = 6  # targets named in a row at most (the rest counted)


def prometheus_rows(site: Site, facts: dict, up: list[str]) -> list[Check]:
    """`prometheus`: it answers, lists a target per job and controller, each up (the targets
    of controllers not verified are only named)."""
    if problem(facts, "prometheus"):
        return [Check("prometheus", FAIL, problem(facts, "prometheus"))]
    got = {(t.get("job"), t.get("node")): t for t in facts["prometheus"].get("targets") or []}
    wanted = [(job, c.name) for job, _, _ in JOBS for c in site.controllers]
    missing = [f"{job}/{node}" for job, node in wanted if (job, node) not in got]
    if missing:
        return [Check("prometheus", FAIL, f"no target {_some(missing)}: its prometheus.yml is not the deploy's")]
    down = [(job, node) for job, node in wanted if got[(job, node)].get("health") != "up"]
    ours = [f"{job}/{node} {got[(job, node)].get('health')}" + _why(got[(job, node)]) for job, node in down if node in up]
    others = sorted({node for _, node in down if node not in up})
    aside = f"; targets of {', '.join(others)} (not verified) not up" if others else ""
    if ours:
        return [Check("prometheus", WARN, f"{len(wanted) - len(down)}/{len(wanted)} targets up; not: {_some(ours)}{aside}")]
    return [Check("prometheus", OK, f"{len(wanted) - len(down)}/{len(wanted)} targets up{aside}")]


def alertmanager_rows(site: Site, facts: dict, up: list[str]) -> list[Check]:
    """`alertmanager`: it answers, its cluster is ready and its peers (itself included) are
    the controllers up, no other."""
    if problem(facts, "alertmanager"):
        return [Check("alertmanager", FAIL, problem(facts, "alertmanager"))]
    a = facts["alertmanager"]
    names = {c.address: c.name for c in site.controllers}
    peers = a.get("peers") or []
    strangers = [p for p in peers if p not in names]
    if strangers:
        return [Check("alertmanager", FAIL, f"peers that are no controller: {', '.join(strangers)}: another cluster "
                                            "joined through the gossip port would swallow notifications as duplicates")]
    seen = sorted(names[p] for p in peers)
    missing = [c.name for c in site.controllers if c.name in up and c.address not in peers]
    status = a.get("status")
    detail = f"cluster {status}, peers: {', '.join(seen) or 'none'}"
    if status != "ready" or missing:
        return [Check("alertmanager", WARN, detail + (f"; missing: {', '.join(missing)} (each sends its own notifications)"
                                                      if missing else ""))]
    return [Check("alertmanager", OK, detail)]


def monitoring_rows(site: Site, facts: dict, up: list[str]) -> list[Check]:
    """The rows of one controller; none without monitoring_enabled."""
    if not site["monitoring_enabled"]:
        return []
    return prometheus_rows(site, facts, up) + alertmanager_rows(site, facts, up)


# --- the settle loop -------------------------------------------------------------------------

# Whether a job's exporter on `node` should answer, from that node's own facts: a target down
# although it should is one the last scrape missed (restarted by the run), worth waiting for.
def _job_ready(job: str, node: str, results: dict) -> bool:
    facts = results.get(node) or {}
    if not facts:
        return False  # not verified: nothing known
    if job == "rabbitmq":
        return service_ready("rabbitmq_management", node, results)
    if job == "haproxy":
        return not problem(facts, "haproxy_info") and bool(facts["haproxy_info"].get("alive"))
    if job in ("prometheus", "alertmanager"):
        return not problem(facts, job)
    return True  # node-exporter and mysqld_exporter: up whenever the node is


def lagging_targets(name: str, results: dict) -> list[str]:
    """Targets of `name`'s Prometheus not up (down, or not scraped yet) whose node's facts say
    their exporter should answer; or none listed at all: a Prometheus just (re)started answers
    /-/ready before its discovery hands over the static targets (up to 5 s later)."""
    facts = results.get(name) or {}
    if problem(facts, "prometheus"):
        return []
    if not facts["prometheus"].get("targets"):
        return ["no target listed yet (discovery after a start)"]
    return [f"{t.get('job')}/{t.get('node')} {t.get('health')}" for t in facts["prometheus"].get("targets") or []
            if t.get("health") != "up" and _job_ready(t.get("job"), t.get("node"), results)]


def settling(name: str, results: dict) -> list[str]:
    """`name`'s Alertmanager when its cluster is settling (its gossip after a start)."""
    facts = results.get(name) or {}
    if problem(facts, "alertmanager") or facts["alertmanager"].get("status") != "settling":
        return []
    return ["alertmanager settling"]


def _why(target: dict) -> str:
    return f" ({target['last_error'][:80]})" if target.get("last_error") else ""


def _some(items: list[str]) -> str:
    return ", ".join(items[:SHOWN]) + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")
