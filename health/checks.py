"""The health rules: each controller's facts in, the report's rows out. Pure: no pyinfra.

`facts` is one controller's dict as operations/verify.py's collect_facts() reads it:

    {"vip": VipHolder, "external_vip": VipHolder (only with an external VIP),
     "keepalived": KeepalivedState, "haproxy_info": HaproxyInfo, "haproxy_servers": HaproxyServers,
     "galera": GaleraNode, "rabbitmq": RabbitmqMembers, "memcached": MemcachedStats,
     "firewall": FirewallState, "haproxy_tls": HaproxyCertificate (haproxy_tls only),
     "amqp_tls": AmqpTls (openssl s_client to the AMQP over TLS port),
     "backup": BackupManifests (backup_node only, with backup_enabled),
     "prometheus": PrometheusTargets, "alertmanager": AlertmanagerCluster (monitoring_enabled only),
     "collect_sec": float}

(each value the processed dict of that fact of facts/). Every rule below is one
check and returns its rows. A fact that is missing, or that carries an error, makes its check
FAIL with the reason (report.problem()): it is never skipped.

"Up" controllers are the ones with facts, plus those pending (--serial) or left out of the run
(--limit): Galera's cluster size and RabbitMQ's running members must match them.
"""

from __future__ import annotations

from datetime import datetime, timezone

from config.files import expected_rules
from config.firewall import TABLE, rules
from config.site import Site
from health import maintenance
from health.backup import backup_rows
from health.haproxy import haproxy_rows
from health.monitoring import monitoring_rows
from health.tls import amqp_tls_rows, certificate_rows
from health.report import FAIL, INFO, OK, WARN, Check, Report, problem
from facts.galera import SOCKET_UNITS
from facts.galera_rules import components, desynced_by_backup, in_primary, not_serving
from facts.probe import as_int
from facts.rabbitmq_rules import minority


# --- one controller --------------------------------------------------------------------------


def reachable_rows(name: str, pending: tuple, skipped: tuple) -> list[Check]:
    """The one row of a controller without facts: pending (--serial), not in the run (--limit),
    or not verified (unreachable, or failed earlier in the run: a failure)."""
    if name in pending:
        return [Check("reachable", INFO, "pending: not collected yet")]
    if name in skipped:
        return [Check("reachable", INFO, "not in this run (--limit): not checked")]
    return [Check("reachable", FAIL, "not verified: unreachable, or failed earlier in the run")]


def vip_rows(site: Site, facts: dict, key: str = "vip") -> list[Check]:
    """`vip` (or `external vip`, key "external_vip"): the interface is readable; whether this
    node holds that VIP (either is OK here: exactly one holder is the cluster's holder row)."""
    name, vip = key.replace("_", " "), site[key]
    if problem(facts, key):
        return [Check(name, FAIL, problem(facts, key))]
    if facts[key].get("holds_vip"):
        interface = site.external_vip_interface if key == "external_vip" else site["vip_interface"]
        return [Check(name, OK, f"holds {vip} on {interface}")]
    return [Check(name, OK, f"standby (does not hold {vip})")]


def vip_keys(site: Site) -> tuple[str, ...]:
    """The report keys of the site's VIPs: "vip", and "external_vip" when it has one."""
    return ("vip", "external_vip") if site["external_vip"] else ("vip",)


def keepalived_rows(site: Site, facts: dict) -> list[Check]:
    """`keepalived`: running, and in a VRRP state that lets this node hold or take the VIP
    (MASTER or BACKUP). Who holds the VIP is read from the interface (the vip rows)."""
    if problem(facts, "keepalived"):
        return [Check("keepalived", FAIL, problem(facts, "keepalived"))]
    k = facts["keepalived"]
    if k.get("active") != "active":
        return [Check("keepalived", FAIL, f"keepalived {k.get('active')}: this node cannot hold the VIP")]
    state, d = k.get("vrrp_state"), site.data
    states = k.get("vrrp_states") or {}
    named = ""
    if len(states) > 1:  # an instance per VIP (the external one): the worst decides, each named
        bad = [s for s in states.values() if s not in ("MASTER", "BACKUP")]
        state = "FAULT" if "FAULT" in bad else bad[0] if bad else state
        named = f" ({', '.join(f'{i} {s}' for i, s in states.items())})"
    if state == "FAULT":
        rise, interval = d["keepalived_check_rise"], d["keepalived_check_interval"]
        return [Check("keepalived", FAIL,
                      f"VRRP FAULT{named}: check_alive fails, or has not yet passed "
                      f"{rise} times in a row ({rise * interval} s) "
                      "since HAProxy came back: this node cannot take the VIP")]
    return [Check("keepalived", OK if state in ("MASTER", "BACKUP") else FAIL, f"VRRP {state}{named}")]


def galera_problems(g: dict, up: int) -> list[str]:
    """Why a readable GaleraNode is not a healthy member: mariadb not running or not
    answering, Galera's serving rule unmet (facts.galera_rules.SERVING, the rule the deploy's plan
    and the clustercheck use too), or a cluster size other than the `up` controllers."""
    if not g.get("installed"):
        return ["MariaDB not installed"]
    if g.get("mysqld") != "running":
        return [f"mariadb not running (unit {'active' if g.get('active') else 'inactive'})"]
    if g.get("query") != "ok":
        return ["mariadb runs but did not answer (starting, in a state transfer, or hung)"]
    if not g.get("wsrep_cluster_status"):
        return ["mariadb answers without Galera (no wsrep status)"]
    # desynced by its own running backup: not a problem (a row says it, galera_rows)
    problems = [] if desynced_by_backup(g) else not_serving(g)
    size = as_int(g.get("wsrep_cluster_size"))
    if size != up:
        problems.append(f"cluster size {size}, expected {up} (controllers up)")
    return problems


def galera_rows(facts: dict, up: list[str]) -> list[Check]:
    """`galera`: this node serves (Primary, Synced, ready), in a cluster of the controllers up;
    WARN while it serves with a socket activation unit enabled (it would not start at the next
    boot), and while its own backup desyncs it (facts.galera_rules.desynced_by_backup: out of
    HAProxy's database servers until the backup ends)."""
    if problem(facts, "galera"):
        return [Check("galera", FAIL, problem(facts, "galera"))]
    g = facts["galera"]
    problems = galera_problems(g, len(up))
    if problems:
        return [Check("galera", FAIL, "; ".join(problems))]
    serving = f"size {g.get('wsrep_cluster_size')}, {g.get('wsrep_cluster_status')}, {g.get('wsrep_local_state_comment')}"
    if desynced_by_backup(g):
        return [Check("galera", WARN, f"{serving}: desynced by its own backup, running now (the Galera check answers "
                                      "503 until it ends, then it is Synced again)")]
    if g.get("sockets") == "enabled":
        return [Check("galera", WARN, f"{serving}; {' or '.join(SOCKET_UNITS)} is enabled: at the next boot it takes "
                                      "3306 and mariadb fails to start; deploy again (it disables them)")]
    return [Check("galera", OK, serving)]


def rabbitmq_problems(rabbitmq: dict, up: list[str], down: list[str]) -> list[str]:
    """Why a readable RabbitmqMembers is not healthy: running members other than the
    controllers up, a partition, an alarm."""
    running = set(rabbitmq.get("running_nodes") or [])
    expected = {f"rabbit@{n}" for n in up}
    unreached = {f"rabbit@{n}" for n in down}
    problems = []
    if expected - running:
        problems.append("not running here: " + ", ".join(sorted(expected - running)))
    if (running - expected) & unreached:
        # RabbitMQ notices a dead peer only after net_ticktime (60 s by default).
        problems.append("still listed as running though unreachable for this check: "
                        + ", ".join(sorted((running - expected) & unreached)))
    if running - expected - unreached:
        problems.append("unexpected members: " + ", ".join(sorted(running - expected - unreached)))
    if rabbitmq.get("partitions"):
        problems.append("partitions: " + "; ".join(rabbitmq["partitions"]))
    if rabbitmq.get("alarms"):
        problems.append("alarms: " + "; ".join(rabbitmq["alarms"]))
    return problems


def rabbitmq_rows(facts: dict, up: list[str], down: list[str]) -> list[Check]:
    """`rabbitmq`: this node's running members are the controllers up; no partition, no alarm;
    the members not running (controllers down or in maintenance) named."""
    if problem(facts, "rabbitmq"):
        return [Check("rabbitmq", FAIL, problem(facts, "rabbitmq"))]
    problems = rabbitmq_problems(facts["rabbitmq"], up, down)
    if problems:
        return [Check("rabbitmq", FAIL, "; ".join(problems))]
    running = sorted(set(facts["rabbitmq"].get("running_nodes") or []))
    # members of the cluster that are not running (controllers down or away, not expected):
    # named, the missing member is what an operator looks for
    stopped = sorted(set(facts["rabbitmq"].get("disk_nodes") or []) - set(running))
    others = f"; members not running: {', '.join(stopped)}" if stopped else ""
    return [Check("rabbitmq", OK, f"running {', '.join(running) or 'none'}{others}")]


def memcached_problem(facts: dict) -> str | None:
    """Why memcached is not healthy here (its fact's error, or not answering); None if it is."""
    return problem(facts, "memcached") or (None if facts["memcached"].get("answering") else "not answering")


def memcached_rows(facts: dict) -> list[Check]:
    """`memcached`: it answers `stats`."""
    if memcached_problem(facts):
        return [Check("memcached", FAIL, memcached_problem(facts))]
    m = facts["memcached"]
    return [Check("memcached", OK, f"{m.get('version')} up {m.get('uptime')}s, {m.get('curr_connections')} connections")]


def firewall_rows(site: Site, facts: dict) -> list[Check]:
    """`firewall` (firewall True only): the project's table is loaded in the kernel and admits
    exactly this site's controllers (and VIP) to the cluster ports."""
    if not site["firewall"]:
        return []
    if problem(facts, "firewall"):
        return [Check("firewall", FAIL, problem(facts, "firewall"))]
    fw = facts["firewall"]
    if not fw.get("loaded"):
        return [Check("firewall", FAIL, f"table inet {TABLE} not loaded: the cluster ports are open to any host")]
    want = set(rules(site).controllers)
    have = set(fw.get("controllers") or [])
    if have != want:
        extra, missing = sorted(have - want), sorted(want - have)
        said = "; ".join(x for x in (f"admits {', '.join(extra)} (not a controller)" if extra else "",
                                     f"does not admit {', '.join(missing)}" if missing else "") if x)
        return [Check("firewall", FAIL, f"cluster ports: {said}: run the deploy")]
    if fw.get("rules") is not None and fw["rules"] != expected_rules(site):
        return [Check("firewall", FAIL, f"table inet {TABLE} holds {fw['rules']} of its {expected_rules(site)} rules "
                                        "(flushed or changed by hand): run the deploy")]
    return [Check("firewall", OK, f"cluster ports for the {len(site.controllers)} controllers only")]


def host_rows(site: Site, name: str, facts: dict, up: list[str], down: list[str], holders: list[str],
              now: datetime, away: tuple = (), backing_up: tuple = ()) -> list[Check]:
    """Every row of one controller that answered, in the report's order; `away`: the
    controllers in maintenance (health.maintenance: a controller in maintenance has its own
    vip, keepalived and rabbitmq rows; its certificate, Galera, memcached and firewall are
    judged as usual); `backing_up`: the controllers their own backup desyncs (backing_up())."""
    if name in away:
        vips = maintenance.vip_keepalived_rows(site, facts, vip_keys(site))
        rabbitmq = maintenance.rabbitmq_rows(facts)
    else:
        vips = [row for key in vip_keys(site) for row in vip_rows(site, facts, key)] + keepalived_rows(site, facts)
        rabbitmq = rabbitmq_rows(facts, [n for n in up if n not in away], [*down, *away])
    return (maintenance.marker_rows(facts) + vips
            + haproxy_rows(site, name, name in holders and name not in away, facts, away, backing_up)
            + certificate_rows(site, facts, now)
            + galera_rows(facts, up) + rabbitmq + ([] if name in away else amqp_tls_rows(site, name, facts))
            + memcached_rows(facts)
            + firewall_rows(site, facts) + backup_rows(site, name, facts, now) + monitoring_rows(site, facts, up))


# --- the cluster -----------------------------------------------------------------------------


def controllers_up_row(names: list[str], up: list[str], down: list[str], skipped: tuple) -> Check:
    """`controllers up`: every controller answered (or is pending, or out of this run)."""
    not_checked = f"; not in this run: {', '.join(skipped)}" if skipped else ""
    if down:
        return Check("controllers up", FAIL, f"{len(up)}/{len(names)}; not verified: {', '.join(down)}{not_checked}",
                     tuple(down))
    return Check("controllers up", OK, f"{len(up)}/{len(names)}{not_checked}")


def vip_holder_row(site: Site, results: dict, holders: list[str], up: list[str], down: list[str],
                   skipped: tuple, key: str = "vip") -> Check:
    """`vip holder` (or `external vip holder`, key "external_vip"): exactly one controller
    holds that VIP. None is a failure of every host checked (unless some were left out of the
    run), two or more a split brain blamed on the holders; a host whose interface cannot be
    read is blamed as well."""
    name, vip = f"{key.replace('_', ' ')} holder", site[key]
    if len(holders) == 1:
        row = Check(name, OK, f"{holders[0]} holds {vip}")
    elif not holders and skipped:
        row = Check(name, INFO, f"no checked controller holds {vip}; not checked: {', '.join(skipped)}")
    elif not holders:
        unchecked = f" (not verified: {', '.join(down)})" if down else ""
        row = Check(name, FAIL, f"no controller holds {vip}{unchecked}", tuple(n for n in up if n not in skipped))
    else:
        row = Check(name, FAIL, f"split brain: {vip} is held by {', '.join(holders)}", tuple(holders))
    unreadable = [n for n in up if results.get(n) and problem(results[n], key)]
    if unreadable:
        row = Check(name, FAIL, row.detail + f"; cannot read the interface on {', '.join(unreadable)}",
                    tuple(sorted(set(row.hosts) | set(unreadable))))
    return row


def vip_holders(results: dict, collected: list[str], key: str = "vip") -> list[str]:
    """The controllers checked whose interface holds that VIP."""
    return [n for n in collected if (results[n].get(key) or {}).get("holds_vip")]


def galera_cluster_row(site: Site, results: dict, collected: list[str], up: list[str],
                       backing: tuple[str, ...] = ()) -> Check:
    """`galera`: one Primary component (facts.galera_rules.components: Primary nodes of one
    cluster whose member lists are disjoint are two components, a split brain), one cluster
    UUID, every node Primary, Synced, ready, of the size of the controllers up; WARN naming
    `backing` (backing_up(): nodes their own running backup desyncs) when all else holds."""
    names = [c.name for c in site.controllers]
    # Only Primary components name a cluster; a Disconnected node reports an empty uuid.
    answering = {n: results[n]["galera"] for n in collected
                 if not problem(results[n], "galera") and in_primary(results[n]["galera"])}
    uuids = {g.get("wsrep_cluster_state_uuid") for g in answering.values()}
    comps = components(answering, names, {c.name: c.address for c in site.controllers})
    if len(comps) > 1 and len(uuids) == 1:
        text = " and ".join(f"{{{', '.join(c.nodes)}}}" for c in comps)
        return Check("galera", FAIL, f"split brain: {len(comps)} Primary components of one cluster: {text} "
                     f"(the deploy repairs the minority with HA_GALERA_REPAIR=1)", tuple(sorted(answering)))
    if len(uuids) > 1:
        groups: dict[str, list[str]] = {}
        for n, g in answering.items():
            groups.setdefault(g.get("wsrep_cluster_state_uuid"), []).append(n)
        text = "; ".join(f"{', '.join(ns)} in {u}" for u, ns in groups.items())
        return Check("galera", FAIL, f"nodes are in different clusters: {text}", tuple(sorted(answering)))
    bad = sorted(n for n in collected
                 if problem(results[n], "galera") or galera_problems(results[n]["galera"], len(up)))
    if bad:
        return Check("galera", FAIL, f"{len(collected) - len(bad)}/{len(collected)} nodes Primary, Synced, of size "
                     f"{len(up)}; not: {', '.join(bad)}", tuple(bad))
    nodes = f"{len(collected)} node{'s' * (len(collected) != 1)}"
    if backing:  # backing_up(), read once by evaluate()
        return Check("galera", WARN, f"{nodes}, Primary, size {len(up)}; {', '.join(backing)} desynced by "
                     "its own backup, running now (Synced again when it ends)", backing)
    return Check("galera", OK, f"{nodes}, Primary, all Synced, size {len(up)}")


def backing_up(results: dict, collected: list[str]) -> tuple[str, ...]:
    """The controllers checked that their own running backup desyncs (facts.galera_rules.desynced_by_backup)."""
    return tuple(n for n in collected if not problem(results[n], "galera") and desynced_by_backup(results[n]["galera"]))


def partition_minority(results: dict, collected: list[str], up: list[str]) -> list[str]:
    """The controllers to restart after a partition that outlived the network's heal
    (facts/rabbitmq_rules.py minority()), when every controller up was checked and its
    members read; otherwise none (the picture is partial, nothing to name)."""
    if sorted(collected) != sorted(up) or any(problem(results[n], "rabbitmq") for n in collected):
        return []
    return minority({n: results[n]["rabbitmq"] for n in collected}, up)


def rabbitmq_cluster_row(results: dict, collected: list[str], up: list[str], down: list[str]) -> Check:
    """`rabbitmq`: every node checked sees the controllers up as its running members, with no
    partition and no alarm."""
    bad = sorted(n for n in collected
                 if problem(results[n], "rabbitmq") or rabbitmq_problems(results[n]["rabbitmq"], up, down))
    if bad:
        named = partition_minority(results, collected, up)
        # every controller up: the deploy's plan restarts them (operations/rabbitmq_plan.py)
        by_deploy = not down
        fix = (f"; a partition outlived the network's heal (pause_minority leaves one that was noticed only "
               f"after it): restart rabbitmq-server on {', '.join(named)}, the minority side, one node at a "
               "time (RabbitMQ's partitions guide" + ("; the deploy does it" if by_deploy else "") + ")") if named else ""
        return Check("rabbitmq", FAIL, f"members incomplete, partitioned or alarmed on {', '.join(bad)}{fix}", tuple(bad))
    return Check("rabbitmq", OK, f"{len(up)} running members seen by every checked node")


def memcached_cluster_row(results: dict, collected: list[str]) -> Check:
    """`memcached`: it answers on every node checked."""
    bad = [n for n in collected if memcached_problem(results[n])]
    return Check("memcached", FAIL if bad else OK,
                 f"answering on {len(collected) - len(bad)}/{len(collected)}" + (f"; not on {', '.join(bad)}" if bad else ""),
                 tuple(bad))


# --- the report ------------------------------------------------------------------------------


def evaluate(
    site: Site,
    results: dict[str, dict | None],
    generated_at: str = "",
    pending: tuple[str, ...] = (),
    skipped: tuple[str, ...] = (),
    now: datetime | None = None,
) -> Report:
    """The health report of a site from each controller's facts.

    results: {host name: facts (see the module's docstring)}; a controller without facts
    (unreachable, failed earlier in the run) is reported as not verified, a failure.
    `pending`: controllers in the run that have not collected yet (--serial); they count as
    up, and are reported as pending, not as failures. `skipped`: controllers left out of the
    run (--limit); assumed up for the sizes, reported as not checked, never blamed. `now`: the
    time the certificate's expiry is judged at (default: the clock).
    """
    now = now or datetime.now(timezone.utc)
    names = [c.name for c in site.controllers]
    up = [n for n in names if results.get(n) or n in pending or n in skipped]
    down = [n for n in names if n not in up]
    collected = [n for n in up if results.get(n)]
    holders = vip_holders(results, collected)
    external = vip_holders(results, collected, "external_vip") if site["external_vip"] else None
    out = tuple(maintenance.away(results, collected))
    backing = backing_up(results, collected)
    report = Report(controllers=names, generated_at=generated_at, vip_holders=holders,
                    external_vip_holders=external)
    for name in names:
        report.hosts[name] = (host_rows(site, name, results[name], up, down, holders, now, out, backing)
                              if results.get(name)
                              else reachable_rows(name, pending, skipped))
    report.cluster = [
        controllers_up_row(names, up, down, skipped),
        vip_holder_row(site, results, holders, up, down, skipped),
        *([vip_holder_row(site, results, external, up, down, skipped, "external_vip")] if external is not None else []),
        galera_cluster_row(site, results, collected, up, backing),
        rabbitmq_cluster_row(results, [n for n in collected if n not in out], [n for n in up if n not in out],
                             [*down, *out]),
        memcached_cluster_row(results, collected),
    ]
    return report
