"""Verification of the HA layer: facts after the deploy's changes, a health report, a verdict.

    pyinfra -y inventories/lab.py verify.py        # verification alone, changes nothing
    HA_VERIFY_JSON=/tmp/health.json pyinfra -y inventories/lab.py verify.py

deploy.py calls verify() last. Three operations, all yielding no command when all is well, so
they never count as a change and a no-op re-run stays a no-op:

1. `collect_health`: at execution time (not at queue time, when facts would still show the
   hosts as they were before the run) each controller reads its verification facts
   (operations/facts.py; pyinfra 3.10 does not cache facts, each read runs its command).
2. `settle_health`: HAProxy sees a recovered server only after `rise` checks; while a mariadb
   or rabbitmq_management server is transitional, or DOWN though its node reports the service
   ready, the host re-reads its HAProxy servers (every 2 s, at most 12 s).
3. `health_report`: in pyinfra's default mode every host has finished (1) and (2) before any
   host starts (3), so the first host there evaluates all controllers at once with evaluate(),
   prints the report (stderr, like pyinfra's own log; `--json` output stays clean), writes
   the JSON to $HA_VERIFY_JSON if set. Each host whose checks failed, or that a failed
   cluster-wide check names, then yields one command that fails: the host errors with the
   reasons in the log and pyinfra exits 1.
   With --serial or --no-wait, hosts reach (3) before the others have collected; each such
   host fails on its own checks only, and the last host to get there evaluates the whole
   cluster and fails on any failed cluster-wide check.

What passes: exactly one controller holds the VIP; on every controller HAProxy answers
`show info`, runs every listener of the site with a server line per controller, and the
servers of `mariadb` and `rabbitmq_management` are UP (OpenStack API servers DOWN are
informational: this project does not install the APIs); Galera is Primary, Synced, ready, of
size = the controllers up; RabbitMQ's running members = the controllers up, no partition, no
alarm; memcached answers `stats`. A controller that cannot be reached fails the run; one left
out with --limit is reported as not checked.

The JSON ($HA_VERIFY_JSON, written atomically) for monitoring: `ok`, `generated_at` (UTC),
`controllers`, `vip_holders`, `failures` (one line each), `hosts` {name: [{name, status
(ok|FAIL|info), detail, hosts}]}, `cluster` [same], `facts` {name: each fact's raw result,
and `collect_sec`, the time the host took to answer them}. No file is written when pyinfra cannot connect to any controller (the run stops before
verification): monitoring must treat an old `generated_at` as a failure.

evaluate() and the rendering are pure and tested offline (tests/unit/test_facts.py).
"""

from __future__ import annotations

import json
import os
import re
import time
import weakref
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import gevent
from pyinfra import host, logger, state
from pyinfra.api import FunctionCommand, deploy, operation

from config.site import Site, build_site, inventory_shape
from facts.galera import GaleraStatus, components
from facts.haproxy import HaproxyInfo, HaproxyServers
from facts.keepalived import KeepalivedState, VipHolder
from facts.memcached import MemcachedStats
from facts.rabbitmq import RabbitmqMembers

OK, FAIL, INFO = "ok", "FAIL", "info"

# Listeners whose servers must be UP: the services this layer deploys itself. The other
# listeners front OpenStack APIs that this project does not install: their servers being
# DOWN is reported, not failed.
CRITICAL_LISTENERS = ("mariadb", "rabbitmq_management")

JSON_ENV = "HA_VERIFY_JSON"
FACT_TIMEOUT = 60  # seconds for one fact command over SSH (the slowest, rabbitmqctl, takes ~2 s)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, FAIL or INFO
    detail: str
    # Cluster-wide checks: the hosts a failure is blamed on (they fail the run).
    hosts: tuple[str, ...] = ()


@dataclass
class Report:
    controllers: list[str]
    hosts: dict[str, list[Check]] = field(default_factory=dict)
    cluster: list[Check] = field(default_factory=list)
    vip_holders: list[str] = field(default_factory=list)
    generated_at: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures()

    def failures(self) -> list[str]:
        """Every failed check as one line: `host: check: detail` or `cluster: ...`."""
        lines = [f"{h}: {c.name}: {c.detail}" for h, checks in self.hosts.items() for c in checks if c.status == FAIL]
        lines += [f"cluster: {c.name}: {c.detail}" for c in self.cluster if c.status == FAIL]
        return lines

    def host_failures(self, name: str, cluster: bool = True) -> list[str]:
        """Why this host fails: its own failed checks, and failed cluster checks naming it."""
        own = [c for c in self.hosts.get(name, []) if c.status == FAIL]
        lines = [f"{c.name}: {c.detail}" for c in own]
        if cluster:
            # A cluster check the host's own row of the same name already explains is not repeated.
            said = {c.name for c in own}
            lines += [
                f"cluster {c.name}: {c.detail}"
                for c in self.cluster
                if c.status == FAIL and name in c.hosts and c.name not in said
            ]
        return lines

    def to_dict(self, facts: dict | None = None) -> dict:
        out = {
            "ok": self.ok,
            "generated_at": self.generated_at,
            "controllers": self.controllers,
            "vip_holders": self.vip_holders,
            "failures": self.failures(),
            "hosts": {h: [_check_dict(c) for c in checks] for h, checks in self.hosts.items()},
            "cluster": [_check_dict(c) for c in self.cluster],
        }
        if facts is not None:
            out["facts"] = facts
        return out

    def render(self) -> str:
        """Plain-text tables: one per controller, then the cluster-wide checks."""
        rows = [c for checks in self.hosts.values() for c in checks] + self.cluster
        width = max([len(c.name) for c in rows] + [5])
        out = []

        def table(title, checks):
            out.append(title)
            out.append(f"  {'CHECK':<{width}}  {'STATUS':<6}  DETAIL")
            for c in checks:
                out.append(f"  {c.name:<{width}}  {c.status:<6}  {c.detail}")
            out.append("")

        for name, checks in self.hosts.items():
            table(name + (" (VIP holder)" if name in self.vip_holders else ""), checks)
        table("cluster", self.cluster)
        failures = self.failures()
        out.append(
            "health: OK" if not failures else f"health: FAILED ({len(failures)} failed check{'s' * (len(failures) > 1)})"
        )
        return "\n".join(out)


def _check_dict(c: Check) -> dict:
    d = asdict(c)
    d["hosts"] = list(c.hosts)
    return d


def _err(fact: dict | None) -> str | None:
    if not isinstance(fact, dict):
        return "fact not collected"
    return fact.get("error")


def _server_text(name: str, server: dict) -> str:
    text = f"{name} {server.get('status') or '?'}"
    if server.get("backup"):
        text += " (backup)"
    return text


def _listener_checks(site: Site, name: str, holder: bool, servers_fact: dict) -> list[Check]:
    checks = []
    all_down: list[str] = []
    running = servers_fact.get("listeners", {})
    expected_servers = [c.name for c in site.controllers]
    if site.listeners and not any(listener.name in running for listener in site.listeners):
        return [
            Check(
                "haproxy backends",
                FAIL,
                f"none of the site's {len(site.listeners)} listeners runs in this HAProxy "
                "(the package's default config, or the deployed one not loaded)",
            )
        ]
    present = [lst for lst in site.listeners if lst.name in running]
    missing_of = {lst.name: [s for s in expected_servers if s not in running[lst.name]] for lst in present}
    # Controllers missing from every listener: one row (a config older than these controllers).
    everywhere = [s for s in expected_servers if all(s in m for m in missing_of.values())]
    if everywhere:
        checks.append(
            Check(
                "haproxy servers",
                FAIL,
                f"no server line for {', '.join(everywhere)} in any listener "
                "(HAProxy's config predates these controllers, or was not reloaded)",
            )
        )
    for listener in site.listeners:
        servers = running.get(listener.name)
        check_name = f"backend {listener.name}"
        if servers is None:
            checks.append(Check(check_name, FAIL, "listener missing from the running HAProxy (stale config?)"))
            continue
        missing = [s for s in missing_of[listener.name] if s not in everywhere]
        detail = ", ".join(_server_text(s, servers[s]) for s in servers)
        if missing:
            checks.append(Check(check_name, FAIL, f"{detail}; no server line for {', '.join(missing)}"))
            continue
        if not servers:
            continue
        down = [s for s, v in servers.items() if v.get("status") != "UP"]
        if not down:
            checks.append(Check(check_name, OK, detail))
        elif listener.name in CRITICAL_LISTENERS:
            why = "; ".join(f"{s}: {servers[s].get('check')}" for s in down if servers[s].get("check"))
            role = "VIP holder" if holder else "standby (takes over on failover)"
            checks.append(
                Check(check_name, FAIL, f"{detail} - must all be UP on the {role}" + (f" ({why})" if why else ""))
            )
        elif len(down) == len(servers):
            all_down.append(listener.name)
        else:
            checks.append(Check(check_name, INFO, f"{detail} (an OpenStack API: not installed by this project)"))
    if all_down:
        # One row for the OpenStack API listeners whose servers are all DOWN (the normal state
        # here: this project does not install the APIs); their servers are the controllers.
        checks.append(
            Check(
                "backends (APIs)",
                INFO,
                f"every server DOWN (OpenStack APIs not installed by this project) on {len(all_down)} "
                f"listener{'s' * (len(all_down) > 1)}: {', '.join(all_down)}",
            )
        )
    known = {listener.name for listener in site.listeners} | {"stats"}
    for extra in sorted(set(running) - known):
        checks.append(
            Check(f"backend {extra}", INFO, "not in the site's catalogue: " + ", ".join(
                _server_text(s, v) for s, v in running[extra].items()))
        )
    return checks


def evaluate(
    site: Site,
    results: dict[str, dict | None],
    generated_at: str = "",
    pending: tuple[str, ...] = (),
    skipped: tuple[str, ...] = (),
) -> Report:
    """The health report of a site from each controller's fact results.

    results: {host name: {"vip", "haproxy_info", "haproxy_servers", "galera", "rabbitmq",
    "memcached": the dict of the matching fact}}; a controller without results (unreachable,
    failed earlier in the run) is reported as not verified, a failure. "Up" controllers are
    the ones with results: Galera's cluster size and RabbitMQ's running members must match them. `pending`: controllers in the run that have not collected yet
    (--serial); they count as up, and are reported as pending, not as failures. `skipped`:
    controllers left out of the run (--limit); assumed up for the sizes, reported as not
    checked, never blamed.
    """
    names = [c.name for c in site.controllers]
    report = Report(controllers=names, generated_at=generated_at)
    up = [n for n in names if results.get(n) or n in pending or n in skipped]
    down = [n for n in names if n not in up]
    vip = site["vip"]

    holders = [n for n in names if results.get(n) and (results[n].get("vip") or {}).get("holds_vip")]
    report.vip_holders = holders

    for name in names:
        r = results.get(name)
        checks: list[Check] = []
        report.hosts[name] = checks
        if not r and name in pending:
            checks.append(Check("reachable", INFO, "pending: not collected yet"))
            continue
        if not r and name in skipped:
            checks.append(Check("reachable", INFO, "not in this run (--limit): not checked"))
            continue
        if not r:
            checks.append(Check("reachable", FAIL, "not verified: unreachable, or failed earlier in the run"))
            continue

        v = r.get("vip")
        if _err(v):
            checks.append(Check("vip", FAIL, _err(v)))
        elif v.get("holds_vip"):
            checks.append(Check("vip", OK, f"holds {vip} on {site['vip_interface']}"))
        else:
            checks.append(Check("vip", OK, f"standby (does not hold {vip})"))
        if "keepalived" in r:
            checks.append(_keepalived_check(site, r["keepalived"]))

        info = r.get("haproxy_info")
        if _err(info) or not info.get("alive"):
            checks.append(Check("haproxy", FAIL, _err(info) or "not alive"))
        else:
            checks.append(Check("haproxy", OK, f"HAProxy {info.get('version')} up {info.get('uptime_sec')}s"))
            servers = r.get("haproxy_servers")
            if _err(servers):
                checks.append(Check("haproxy backends", FAIL, _err(servers)))
            else:
                checks.extend(_listener_checks(site, name, name in holders, servers))

        g = r.get("galera")
        if _err(g):
            checks.append(Check("galera", FAIL, _err(g)))
        else:
            problems = []
            if g.get("cluster_status") != "Primary":
                problems.append(f"cluster status {g.get('cluster_status')}, not Primary")
            if g.get("local_state_comment") != "Synced":
                problems.append(f"local state {g.get('local_state_comment')}, not Synced")
            if g.get("ready") != "ON":
                problems.append(f"wsrep_ready {g.get('ready')}")
            if g.get("cluster_size") != len(up):
                problems.append(f"cluster size {g.get('cluster_size')}, expected {len(up)} (controllers up)")
            detail = f"size {g.get('cluster_size')}, {g.get('cluster_status')}, {g.get('local_state_comment')}"
            checks.append(Check("galera", FAIL if problems else OK, "; ".join(problems) if problems else detail))

        q = r.get("rabbitmq")
        if _err(q):
            checks.append(Check("rabbitmq", FAIL, _err(q)))
        else:
            running = set(q.get("running_nodes") or [])
            expected = {f"rabbit@{n}" for n in up}
            problems = []
            if running != expected:
                if expected - running:
                    problems.append("not running here: " + ", ".join(sorted(expected - running)))
                unreached = {f"rabbit@{n}" for n in down}
                if (running - expected) & unreached:
                    # RabbitMQ notices a dead peer only after net_ticktime (60 s by default).
                    problems.append(
                        "still listed as running though unreachable for this check: "
                        + ", ".join(sorted((running - expected) & unreached))
                    )
                if running - expected - unreached:
                    problems.append("unexpected members: " + ", ".join(sorted(running - expected - unreached)))
            if q.get("partitions"):
                problems.append("partitions: " + "; ".join(q["partitions"]))
            if q.get("alarms"):
                problems.append("alarms: " + "; ".join(q["alarms"]))
            detail = f"running {', '.join(sorted(running)) or 'none'}"
            checks.append(Check("rabbitmq", FAIL if problems else OK, "; ".join(problems) if problems else detail))

        m = r.get("memcached")
        if _err(m) or not m.get("answering"):
            checks.append(Check("memcached", FAIL, _err(m) or "not answering"))
        else:
            checks.append(
                Check("memcached", OK, f"{m.get('version')} up {m.get('uptime')}s, {m.get('curr_connections')} connections")
            )

    # --- cluster-wide checks ---
    unchecked = f" (not verified: {', '.join(down)})" if down else ""
    not_checked = f"; not in this run: {', '.join(skipped)}" if skipped else ""
    if down:
        report.cluster.append(
            Check("controllers up", FAIL, f"{len(up)}/{len(names)}; not verified: {', '.join(down)}{not_checked}",
                  tuple(down))
        )
    else:
        report.cluster.append(Check("controllers up", OK, f"{len(up)}/{len(names)}{not_checked}"))

    collected = [n for n in up if results.get(n)]
    vip_errors = [n for n in collected if _err(results[n].get("vip"))]
    if len(holders) == 1:
        report.cluster.append(Check("vip holder", OK, f"{holders[0]} holds {vip}"))
    elif not holders and skipped:
        report.cluster.append(
            Check("vip holder", INFO, f"no checked controller holds {vip}; not checked: {', '.join(skipped)}")
        )
    elif not holders:
        report.cluster.append(
            Check("vip holder", FAIL, f"no controller holds {vip}{unchecked}", tuple(n for n in up if n not in skipped))
        )
    else:
        report.cluster.append(
            Check("vip holder", FAIL, f"split brain: {vip} is held by {', '.join(holders)}", tuple(holders))
        )
    if vip_errors:
        report.cluster[-1] = Check(
            "vip holder",
            FAIL,
            report.cluster[-1].detail + f"; cannot read the interface on {', '.join(vip_errors)}",
            tuple(sorted(set(report.cluster[-1].hosts) | set(vip_errors))),
        )

    galera = {n: results[n].get("galera") or {} for n in collected}
    # Only Primary components name a cluster; a Disconnected node reports an empty uuid.
    answering = {n: g for n, g in galera.items() if not _err(g) and g.get("cluster_status") == "Primary"}
    uuids = {g.get("cluster_state_uuid") for g in answering.values()}
    bad = sorted(
        n
        for n, g in galera.items()
        if _err(g)
        or g.get("cluster_size") != len(up)
        or g.get("cluster_status") != "Primary"
        or g.get("local_state_comment") != "Synced"
        or g.get("ready") != "ON"
    )
    # The plan's rule: Primary nodes of one cluster whose member lists are disjoint are two
    # Primary components, each taking writes (operations.galera.components).
    comps = components({n: {f"wsrep_{k}": v for k, v in g.items()} for n, g in answering.items()}, names,
                       {c.name: c.address for c in site.controllers})
    if len(comps) > 1 and len(uuids) == 1:
        text = " and ".join(f"{{{', '.join(c.nodes)}}}" for c in comps)
        report.cluster.append(Check("galera", FAIL, f"split brain: {len(comps)} Primary components of one cluster: {text} "
                                    f"(the deploy repairs the minority with HA_GALERA_REPAIR=1)", tuple(sorted(answering))))
    elif len(uuids) > 1:
        groups = {}
        for n, g in answering.items():
            groups.setdefault(g.get("cluster_state_uuid"), []).append(n)
        text = "; ".join(f"{', '.join(ns)} in {u}" for u, ns in groups.items())
        report.cluster.append(Check("galera", FAIL, f"nodes are in different clusters: {text}", tuple(sorted(answering))))
    elif bad:
        report.cluster.append(
            Check("galera", FAIL, f"{len(collected) - len(bad)}/{len(collected)} nodes Primary, Synced, of size {len(up)}; "
                  f"not: {', '.join(bad)}", tuple(bad))
        )
    else:
        nodes = f"{len(collected)} node{'s' * (len(collected) != 1)}"
        report.cluster.append(Check("galera", OK, f"{nodes}, Primary, all Synced, size {len(up)}"))

    rabbit_bad = sorted(
        n for n in collected
        if _err(results[n].get("rabbitmq"))
        or set(results[n]["rabbitmq"].get("running_nodes") or []) != {f"rabbit@{x}" for x in up}
        or results[n]["rabbitmq"].get("partitions")
        or results[n]["rabbitmq"].get("alarms")
    )
    if rabbit_bad:
        report.cluster.append(
            Check("rabbitmq", FAIL, f"members incomplete, partitioned or alarmed on {', '.join(rabbit_bad)}",
                  tuple(rabbit_bad))
        )
    else:
        report.cluster.append(Check("rabbitmq", OK, f"{len(up)} running members seen by every checked node"))

    mc_bad = [n for n in collected if _err(results[n].get("memcached")) or not results[n]["memcached"].get("answering")]
    report.cluster.append(
        Check("memcached", FAIL if mc_bad else OK,
              f"answering on {len(collected) - len(mc_bad)}/{len(collected)}" + (f"; not on {', '.join(mc_bad)}" if mc_bad else ""),
              tuple(mc_bad))
    )
    return report


# --- pyinfra glue ------------------------------------------------------------------------

# Fact results per run (keyed by the State, so API users running several states are safe).
_RUNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@dataclass
class _Run:
    site: Site
    results: dict[str, dict] = field(default_factory=dict)
    reported: bool = False
    partial: bool = False  # a host reached the report before every host had collected


def site_from_inventory(inventory) -> Site:
    """The Site of a pyinfra inventory (the controllers group and its data)."""
    return build_site(*inventory_shape(inventory))


def _run_for(state) -> _Run:
    run = _RUNS.get(state)
    if run is None:
        run = _RUNS[state] = _Run(site=site_from_inventory(state.inventory))
    return run


TRANSITIONAL = re.compile(r"^(UP|DOWN) \d+/\d+$")
SETTLE_SECONDS = 12  # fall 5 x inter 2 s: the longest a server takes to settle
SETTLE_STEP = 2


def service_ready(listener: str, node: str, results: dict) -> bool:
    """Whether `node`'s own facts say the service behind a critical listener is ready."""
    r = results.get(node) or {}
    if listener == "mariadb":
        g = r.get("galera") or {}
        return not _err(g) and (g.get("cluster_status"), g.get("local_state_comment"), g.get("ready")) == (
            "Primary", "Synced", "ON")
    if listener == "rabbitmq_management":
        q = r.get("rabbitmq") or {}
        return not _err(q) and f"rabbit@{node}" in (q.get("running_nodes") or [])
    return False


def lagging(name: str, results: dict) -> list[str]:
    """Critical servers in `name`'s HAProxy whose state is about to change: transitional
    ("UP 1/5", "DOWN 1/2"), or not UP although their node reports the service ready (HAProxy
    sees a recovered server only after `rise` checks)."""
    listeners = ((results.get(name) or {}).get("haproxy_servers") or {}).get("listeners") or {}
    found = []
    for listener in CRITICAL_LISTENERS:
        for server, v in (listeners.get(listener) or {}).items():
            status = v.get("status") or ""
            if TRANSITIONAL.match(status) or (status != "UP" and service_ready(listener, server, results)):
                found.append(f"{listener}/{server} {status}")
    return found


def settle(host, site: Site, results: dict, sleep=None) -> int:
    """Re-read this host's HAProxy servers while some are lagging, bounded; seconds waited."""
    sleep = sleep or gevent.sleep
    waited = 0
    while lagging(host.name, results) and waited < SETTLE_SECONDS:
        sleep(SETTLE_STEP)
        waited += SETTLE_STEP
        fresh = read_fact(host, HaproxyServers, socket=site["haproxy_stats_socket"])
        results[host.name] = {**results[host.name], "haproxy_servers": fresh}
    results[host.name]["haproxy_servers"] = {**results[host.name]["haproxy_servers"], "settle_wait_sec": waited}
    return waited


def read_fact(host, fact, **args) -> dict:
    """host.get_fact, with every failure turned into the fact's default plus the cause.

    pyinfra catches timeouts, OSError and SSHException itself (`_ignore_errors` keeps the host
    in the run); a node that reboots mid-read can also make paramiko raise EOFError, which
    pyinfra 3.10 lets through and which would end the whole run with no report.
    """
    try:
        return host.get_fact(fact, _ignore_errors=True, **args)
    except Exception as exc:  # noqa: BLE001 - any failure of one read is that check's failure
        return {**fact.default(), "error": f"connection failed while reading ({type(exc).__name__}: {exc})"}


def _keepalived_check(site: Site, k: dict) -> Check:
    """keepalived running, and in a VRRP state that lets this node hold or take the VIP
    (MASTER or BACKUP). Who holds the VIP is read from the interface (the vip rows)."""
    if _err(k):
        return Check("keepalived", FAIL, _err(k))
    if k.get("active") != "active":
        return Check("keepalived", FAIL, f"keepalived {k.get('active')}: this node cannot hold the VIP")
    state = k.get("vrrp_state")
    d = site.data
    if state == "FAULT":
        return Check("keepalived", FAIL,
                     "VRRP FAULT: check_alive fails, or has not yet passed "
                     f"{d['keepalived_check_rise']} times in a row ({d['keepalived_check_rise'] * d['keepalived_check_interval']} s) "
                     "since HAProxy came back: this node cannot take the VIP")
    return Check("keepalived", OK if state in ("MASTER", "BACKUP") else FAIL, f"VRRP {state}")


def collect_facts(host, site: Site) -> dict:
    """Read every verification fact of one controller (one command each).

    `_ignore_errors`: a fact whose command fails at the connection (timeout, lost SSH) comes
    back as its default, an error the report shows, instead of pyinfra failing the host in
    the middle of the collection with no reason given.
    """
    d = site.data
    me = site.controller(host.name)

    def read(fact, **args):
        return read_fact(host, fact, **args)

    return {
        "vip": read(VipHolder, interface=d["vip_interface"], vip=d["vip"]),
        "keepalived": read(KeepalivedState),
        "haproxy_info": read(HaproxyInfo, socket=d["haproxy_stats_socket"]),
        "haproxy_servers": read(HaproxyServers, socket=d["haproxy_stats_socket"]),
        "galera": read(GaleraStatus),
        "rabbitmq": read(RabbitmqMembers),
        "memcached": read(MemcachedStats, address=me.address, port=d["memcached_port"]),
    }


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(report: Report, facts: dict, path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(report.to_dict(facts), f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def _fail_host(state, host, reasons):
    """A FunctionCommand body: log why this host fails verification, then fail it."""
    for reason in reasons:
        host.log_styled(f"verification failed: {reason}", fg="red", log_func=logger.error)
    return False


def _publish(run: _Run, report: Report) -> None:
    logger.info("--> Health report:")
    for line in report.render().splitlines():
        logger.info(line)
    path = os.environ.get(JSON_ENV)
    if path:
        write_json(report, run.results, path)
        logger.info(f"health report written to {path}")


def report_reasons(run: _Run, report: Report, name: str, active: set[str]) -> tuple[list[str], bool]:
    """(why host `name` fails, whether to publish the report now), given who has collected.

    Default mode: every active host has collected when the first one gets here; it publishes,
    and each host fails on its own checks plus the cluster checks that name it. --serial or
    --no-wait: a host that gets here before the others collected judges only its own checks;
    the host that completes the picture publishes and carries every failed cluster check.
    """
    complete = active <= set(run.results)
    if not complete:
        run.partial = True
        return report.host_failures(name, cluster=False), False
    publish = not run.reported
    run.reported = True
    reasons = report.host_failures(name)
    if publish and run.partial:
        reasons += [f"cluster {c.name}: {c.detail}" for c in report.cluster if c.status == FAIL and name not in c.hosts]
    return reasons, publish


@operation()
def collect_health():
    """Read this controller's verification facts once the deploy's changes are done.

    Yields no command: never a change.
    """
    if not state.is_executing:
        return  # queue time: facts would describe the hosts as they were before the run
    run = _run_for(state)
    if run.reported:  # verify() called a second time in one run: start a fresh report
        run.results, run.reported, run.partial = {}, False, False
    started = time.monotonic()
    facts = collect_facts(host, run.site)
    facts["collect_sec"] = round(time.monotonic() - started, 2)
    run.results[host.name] = facts
    yield from ()


@operation()
def settle_health():
    """Give HAProxy's checks time to catch up with what the controllers report (bounded).

    Runs once every host has collected (pyinfra's default mode): a mariadb or
    rabbitmq_management server that is transitional, or DOWN while its node reports the
    service ready, is re-read every 2 s for at most 12 s. Yields nothing: never a change.
    """
    if not state.is_executing:
        return
    run = _run_for(state)
    if host.name in run.results:
        settle(host, run.site, run.results)
    yield from ()


@operation()
def health_report():
    """Print the report once for all controllers; fail this host if a check blames it.

    Yields nothing when the host passes, one failing command when it does not.
    """
    if not state.is_executing:
        return
    run = _run_for(state)
    active = {h.name for h in state.inventory.get_active_hosts()}
    pending = tuple(sorted(active - set(run.results)))
    skipped = tuple(
        c.name for c in run.site.controllers
        if c.name not in run.results and not state.is_host_in_limit(state.inventory.get_host(c.name))
    )
    report = evaluate(run.site, run.results, generated_at=_now(), pending=pending, skipped=skipped)
    reasons, publish = report_reasons(run, report, host.name, active)
    if publish:
        _publish(run, report)
    if reasons:
        yield FunctionCommand(_fail_host, (reasons,), {})


@deploy("Verify the HA layer")
def verify():
    """Collect every controller's health facts after the changes; report; fail on a failed check."""
    # _timeout bounds each fact's command at the connection too (each also runs under
    # `timeout` on the host): a stalled SSH channel cannot hang the run.
    collect_health(name="Collect health facts", _timeout=FACT_TIMEOUT)
    settle_health(name="Let HAProxy's checks settle", _timeout=FACT_TIMEOUT)
    health_report(name="Health report")
