"""HAProxy's rows: alive, and each listener of the site with a server line per controller.

Facts used: `haproxy_info` (HaproxyInfo) and `haproxy_servers` (HaproxyServers). The servers
of CRITICAL_LISTENERS must be UP on every controller, the VIP holder and the standbys alike
(a standby carries the traffic after a failover); the other listeners front OpenStack APIs
that this project does not install, whose servers being DOWN is informational.
"""

from __future__ import annotations

from config.site import Site
from health import maintenance
from health.report import FAIL, INFO, OK, Check, problem

# Listeners whose servers must be UP: the services this layer deploys itself.
CRITICAL_LISTENERS = ("mariadb", "rabbitmq_management")


def server_text(name: str, server: dict) -> str:
    """`node02 UP (backup)`: one server as the rows show it."""
    text = f"{name} {server.get('status') or '?'}"
    if server.get("backup"):
        text += " (backup)"
    return text


def haproxy_rows(site: Site, name: str, holder: bool, facts: dict, away: tuple = (), backing_up: tuple = ()) -> list[Check]:
    """`haproxy`: HAProxy answers `show info`; then, only when it does, its listeners' rows
    (a dead HAProxy has no servers to judge: its own row says why)."""
    info = facts.get("haproxy_info")
    if problem(facts, "haproxy_info") or not info.get("alive"):
        return [Check("haproxy", FAIL, problem(facts, "haproxy_info") or "not alive")]
    rows = [Check("haproxy", OK, f"HAProxy {info.get('version')} up {info.get('uptime_sec')}s")]
    if problem(facts, "haproxy_servers"):
        return rows + [Check("haproxy backends", FAIL, problem(facts, "haproxy_servers"))]
    return rows + listener_rows(site, holder, facts["haproxy_servers"], away, backing_up)


def listener_rows(site: Site, holder: bool, servers_fact: dict, away: tuple = (), backing_up: tuple = ()) -> list[Check]:
    """The rows of the site's listeners in one HAProxy's `show stat`.

    - none of the site's listeners runs: one FAIL row (the package's default config);
    - controllers missing from every listener: one FAIL row `haproxy servers`;
    - per listener: missing (FAIL), a server line missing (FAIL), all UP (OK), a critical
      server not UP (FAIL, with HAProxy's check text), some API servers DOWN (INFO);
    - API listeners with every server DOWN: one INFO row `backends (APIs)`;
    - listeners the catalogue does not know: one INFO row each;
    - `away` (controllers in maintenance): their servers must be in MAINT (FAIL otherwise),
      and are then left out of the rest;
    - `backing_up` (controllers their own backup desyncs): their database listener's server is
      DOWN by design while it runs (the Galera check answers 503), left out, one INFO row.
    """
    running = servers_fact.get("listeners") or {}
    listeners = site.listeners  # built from the site on each access: once here
    if listeners and not any(listener.name in running for listener in listeners):
        return [Check("haproxy backends", FAIL,
                      f"none of the site's {len(listeners)} listeners runs in this HAProxy "
                      "(the package's default config, or the deployed one not loaded)")]
    expected = [c.name for c in site.controllers]
    missing_of = {lst.name: [s for s in expected if s not in running[lst.name]]
                  for lst in listeners if lst.name in running}
    # Controllers missing from every listener: one row (a config older than these controllers).
    everywhere = [s for s in expected if all(s in m for m in missing_of.values())]
    rows = []
    if everywhere:
        rows.append(Check("haproxy servers", FAIL,
                          f"no server line for {', '.join(everywhere)} in any listener "
                          "(HAProxy's config predates these controllers, or was not reloaded)"))
    all_down: list[str] = []
    taking = []  # servers of controllers in maintenance that could still take traffic
    desynced = []  # database servers DOWN while their node's backup runs
    for listener in listeners:
        servers = running.get(listener.name)
        if servers is None:
            rows.append(Check(f"backend {listener.name}", FAIL, "listener missing from the running HAProxy (stale config?)"))
            continue
        taking += [f"{listener.name}: {why}" for n in away if n in servers
                   for why in [maintenance.server_problem(n, servers[n])] if why]
        servers = {n: v for n, v in servers.items() if n not in away}
        if listener.name == site.db_listener:
            desynced += [n for n in backing_up if (servers.get(n) or {}).get("status", "UP") != "UP"]
            servers = {n: v for n, v in servers.items() if n not in desynced}
        missing = [s for s in missing_of[listener.name] if s not in everywhere]
        row = listener_row(listener.name, servers, missing, holder)
        if row is None and servers and listener.name not in CRITICAL_LISTENERS:
            all_down.append(listener.name)
        elif row is not None:
            rows.append(row)
    if all_down:
        # The normal state here: this project does not install the APIs.
        rows.append(Check("backends (APIs)", INFO,
                          f"every server DOWN (OpenStack APIs not installed by this project) on {len(all_down)} "
                          f"listener{'s' * (len(all_down) > 1)}: {', '.join(all_down)}"))
    if desynced:
        rows.append(Check("backup servers", INFO, f"{site.db_listener}: {', '.join(desynced)} DOWN while "
                          "its own backup runs (desynced: the Galera check answers 503 until it ends)"))
    if away:
        rows.append(Check("maintenance servers", FAIL if taking else INFO, "; ".join(taking) if taking else
                          f"{', '.join(away)} in MAINT on every listener (in maintenance)"))
    return rows + unknown_listener_rows(site, running)


def listener_row(listener: str, servers: dict, missing: list[str], holder: bool) -> Check | None:
    """The row of one running listener; None for an empty listener, or for an API listener
    whose servers are all DOWN (listener_rows() sums those up in one row)."""
    name = f"backend {listener}"
    detail = ", ".join(server_text(s, servers[s]) for s in servers)
    if missing:
        return Check(name, FAIL, f"{detail}; no server line for {', '.join(missing)}")
    if not servers:
        return None
    down = [s for s, v in servers.items() if v.get("status") != "UP"]
    if not down:
        return Check(name, OK, detail)
    if listener in CRITICAL_LISTENERS:
        why = "; ".join(f"{s}: {servers[s].get('check')}" for s in down if servers[s].get("check"))
        role = "VIP holder" if holder else "standby (takes over on failover)"
        return Check(name, FAIL, f"{detail} - must all be UP on the {role}" + (f" ({why})" if why else ""))
    if len(down) == len(servers):
        return None
    return Check(name, INFO, f"{detail} (an OpenStack API: not installed by this project)")


def unknown_listener_rows(site: Site, running: dict) -> list[Check]:
    """An INFO row per running listener the site's catalogue does not know (stats aside)."""
    known = {listener.name for listener in site.listeners} | {"stats"}
    return [
        Check(f"backend {extra}", INFO,
              "not in the site's catalogue: " + ", ".join(server_text(s, v) for s, v in running[extra].items()))
        for extra in sorted(set(running) - known)
    ]
