"""Verification of the HA layer: facts after the deploy's changes, a health report, a verdict.

    pyinfra -y inventories/lab.py verify.py        # verification alone, changes nothing
    HA_VERIFY_JSON=/tmp/health.json pyinfra -y inventories/lab.py verify.py

deploy.py calls verify() last. Three operations, all yielding no command when all is well, so
they never count as a change and a no-op re-run stays a no-op:

1. `collect_health`: at execution time (not at queue time, when facts would still show the
   hosts as they were before the run) each controller reads its verification facts
   (facts/; pyinfra 3.10 does not cache facts, each read runs its command).
2. `settle_health`: HAProxy sees a recovered server only after `rise` checks; while a mariadb
   or rabbitmq_management server is transitional, or DOWN though its node reports the service
   ready, the host re-reads its HAProxy servers (every 2 s, at most 12 s). With monitoring on,
   likewise its Prometheus' targets while one is not up though its node's facts say it should
   be (restarted by the run, not scraped since): every 3 s, at most a scrape interval + 5 s;
   and its Alertmanager while its cluster is settling (at most 15 s).
3. `health_report`: in pyinfra's default mode every host has finished (1) and (2) before any
   host starts (3), so the first host there evaluates all controllers at once with
   health.checks.evaluate(),
   prints the report (stderr, like pyinfra's own log; `--json` output stays clean), writes
   the JSON to $HA_VERIFY_JSON if set. Each host whose checks failed, or that a failed
   cluster-wide check names, then yields one command that fails: the host errors with the
   reasons in the log and pyinfra exits 1.
   With --serial or --no-wait, hosts reach (3) before the others have collected; each such
   host fails on its own checks only, and the last host to get there evaluates the whole
   cluster and fails on any failed cluster-wide check.

What passes (the rules live in the health/ package, one function per check): exactly one
controller holds the VIP (and one the external VIP, when the site has one); keepalived runs in
MASTER or BACKUP (each VRRP instance) on every controller; HAProxy answers `show info`, runs
every listener of the site with a server line per controller, and the servers of `mariadb` and
`rabbitmq_management` are UP (OpenStack API servers DOWN are informational: this project does
not install the APIs); Galera is Primary, Synced, ready, of
size = the controllers up; RabbitMQ's running members = the controllers up, no partition, no
alarm; memcached answers `stats`; with haproxy_tls the installed certificate is readable and
not expired (within haproxy_tls_expiry_warn_days of its expiry: a warning, the report stays
OK); with monitoring on, Prometheus and Alertmanager answer, Prometheus lists every controller's
targets and its Alertmanager's peers are controllers (a target down, a cluster settling or
missing a controller: a warning; health/monitoring.py). A fact missing or in error fails its check. A controller
that cannot be reached fails the run; one left out with --limit is reported as not checked.

With monitoring_enabled, each host also writes its verdict at (3) for node-exporter's textfile
collector (config.monitoring.HEALTH_TEXTFILE, health.metrics.health_textfile: a check per
series, `health_ok`, when): over the host's connection, not as an operation's command, so it
is no change either; a failed write is a warning, never a failed verification.

The JSON ($HA_VERIFY_JSON, written atomically) for monitoring: `ok`, `generated_at` (UTC),
`controllers`, `vip_holders`, `external_vip_holders` (with an external VIP), `failures` (one
line each), `warnings` (the same), `hosts` {name: [{name, status (ok|WARN|FAIL|info), detail,
hosts}]}, `cluster` [same], `facts` {name: each fact's raw result, and `collect_sec`, the time
the host took to answer them}. No file is written when pyinfra
cannot connect to any controller (the run stops before verification): monitoring must treat an
old `generated_at` as a failure.

This module is the pyinfra glue only: reading the facts on the hosts, the settle loop,
publishing, failing hosts. The model (health/) is pure and tested offline from captured
outputs (tests/unit/test_health.py); this glue through pyinfra's API (tests/unit/test_verify.py).
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import gevent
from pyinfra import host, logger, state
from pyinfra.api import FunctionCommand, StringCommand, deploy, operation

from config.monitoring import HEALTH_TEXTFILE
from config.site import Site, build_site, inventory_shape
from facts.bundle import Bundle, fact_class
from health.checks import evaluate
from health.metrics import health_textfile
from health.report import FAIL, Report, write_json
from health.monitoring import lagging_targets, settling
from health.settle import lagging
from operations.before import health_parts, read_before_run
from operations.common import inventory_file
from operations.runstate import this_run
from facts.haproxy import HaproxyServers
from facts.monitoring import AlertmanagerCluster, PrometheusTargets

JSON_ENV = "HA_VERIFY_JSON"
FACT_TIMEOUT = 60  # seconds for one fact command over SSH (the slowest, rabbitmqctl, takes ~2 s)
METRICS_TIMEOUT = 30  # seconds for writing the verdict's textfile on a host


@dataclass
class _Run:
    site: Site
    results: dict[str, dict] = field(default_factory=dict)
    reported: bool = False
    partial: bool = False  # a host reached the report before every host had collected
    unchanged: bool | None = None  # nothing_changed(), once it is final for this run


def site_from_inventory(inventory) -> Site:
    """The Site of a pyinfra inventory (the controllers group and its data)."""
    return build_site(*inventory_shape(inventory, inventory_file()))


def _run_for(state) -> _Run:
    """This run's report state, one for every host, kept with the run's State
    (operations/runstate.py): the site is built before the one atomic setdefault (building it
    may yield to another host's greenlet, which must not get a second _Run: each would report
    on a part of the controllers)."""
    store = this_run()
    run = store.get(_Run)
    if run is None:
        site = site_from_inventory(state.inventory)
        run = store.setdefault(_Run, _Run(site=site))
    return run


SETTLE_SECONDS = 12  # fall 5 x inter 2 s: the longest a server takes to settle
SETTLE_STEP = 2
TARGETS_STEP = 3  # seconds between two reads of Prometheus' targets
TARGETS_MARGIN = 5  # seconds beyond one scrape interval: a target's next scrape and its answer
CLUSTER_SECONDS = 15  # an Alertmanager just started settles its gossip in about 10 s


def settle(host, site: Site, results: dict, sleep=None) -> int:
    """Re-read this host's HAProxy servers while some are lagging, bounded; seconds waited.
    Then, with monitoring on, its Prometheus' targets the same way (settle_targets)."""
    waited = _settle_fact(host, results, "haproxy_servers", lagging, SETTLE_SECONDS, SETTLE_STEP, sleep,
                          lambda: read_fact(host, HaproxyServers, socket=site["haproxy_stats_socket"]))
    return waited + settle_targets(host, site, results, sleep) + settle_cluster(host, site, results, sleep)


def settle_targets(host, site: Site, results: dict, sleep=None) -> int:
    """Re-read this host's Prometheus targets while some are lagging (health.monitoring: not up
    although their node's facts say they should be: restarted by the run, not scraped since),
    for at most one scrape interval and TARGETS_MARGIN; seconds waited."""
    if "prometheus" not in results[host.name]:
        return 0
    me = site.controller(host.name).address
    return _settle_fact(host, results, "prometheus", lagging_targets, site["monitoring_scrape_interval"] + TARGETS_MARGIN,
                        TARGETS_STEP, sleep,
                        lambda: read_fact(host, PrometheusTargets, address=me, port=site["monitoring_prometheus_port"]))


def settle_cluster(host, site: Site, results: dict, sleep=None) -> int:
    """Re-read this host's Alertmanager cluster while it is settling (gossip with its peers
    after a start, about 10 s), for at most CLUSTER_SECONDS; seconds waited."""
    if "alertmanager" not in results[host.name]:
        return 0
    me = site.controller(host.name).address
    return _settle_fact(host, results, "alertmanager", settling, CLUSTER_SECONDS, TARGETS_STEP, sleep,
                        lambda: read_fact(host, AlertmanagerCluster, address=me, port=site["monitoring_alertmanager_port"]))


def _settle_fact(host, results: dict, key: str, lags, seconds: int, step: int, sleep, reread) -> int:
    """Re-read fact `key` of this host (reread()) every `step` s while lags(host, results)
    names something, for at most `seconds`; the wait is kept in the fact as settle_wait_sec."""
    sleep = sleep or gevent.sleep
    waited = 0
    while lags(host.name, results) and waited < seconds:
        sleep(step)
        waited += step
        results[host.name] = {**results[host.name], key: reread()}
    results[host.name][key] = {**results[host.name][key], "settle_wait_sec": waited}
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


def collect_facts(host, site: Site) -> dict:
    """Read every verification fact of one controller in one round trip (facts.bundle: the
    commands run side by side, each bounded by FACT_TIMEOUT; the slowest sets the time).

    A part that timed out or failed comes back as its fact's default with the cause; a bundle
    that failed at the connection (timeout, lost SSH) gives every fact that error, instead of
    pyinfra failing the host in the middle of the collection with no reason given.
    """
    parts = health_parts(site, host.name)
    got = read_fact(host, Bundle, parts=tuple(parts.values()), limit=FACT_TIMEOUT)
    return health_facts(parts, got)


def health_facts(parts: dict[str, tuple], got: dict) -> dict:
    """The report's facts {key: result} from a bundle's answer to `parts`; a part it lacks is
    its fact's default with the cause (timed out on the host, the bundle's error)."""
    answers, status = got.get("parts") or [], got.get("status") or []
    out = {}
    for i, (key, (name, _)) in enumerate(parts.items()):
        cls = fact_class(name)
        result = answers[i] if i < len(answers) else None
        if result is None:
            rc = status[i] if i < len(status) else "cut"
            why = (f"no answer within {FACT_TIMEOUT} s (timed out on the host)" if rc == "124"
                   else got.get("error") or f"its command failed (exit status {rc})")
            result = {**cls.default(), "error": why}
        out[key] = result
    return out


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _fail_host(state, host, reasons):
    """A FunctionCommand body: log why this host fails verification, then fail it."""
    for reason in reasons:
        host.log_styled(f"verification failed: {reason}", fg="red", log_func=logger.error)
    return False


def _publish(run: _Run, report: Report) -> None:
    logger.info("--> Health report:")
    for line in report.render().splitlines():
        logger.info(line)
    for line in report.warnings():
        logger.warning(f"health warning: {line}")
    path = os.environ.get(JSON_ENV)
    if path:
        write_json(report, run.results, path)
        logger.info(f"health report written to {path}")


def textfile_command(path: str, text: str) -> str:
    """One shell command writing `text` to `path` atomically: a temporary file in the same
    directory (a dot file: node-exporter reads *.prom only) renamed over it."""
    directory, base = path.rsplit("/", 1)
    return (f"tmp=$(mktemp {shlex.quote(f'{directory}/.{base}.XXXXXX')}) && printf '%s' {shlex.quote(text)} > \"$tmp\" "
            f"&& chmod 644 \"$tmp\" && mv -f \"$tmp\" {shlex.quote(path)} || {{ rm -f \"$tmp\"; exit 1; }}")


def write_health_metrics(host, report: Report, now: datetime, cluster: bool) -> bool:
    """Write this host's verdict (health.metrics.health_textfile) to its textfile directory.

    Through the connection directly, not as an operation's command: a command would count as
    a change on every run (the text carries the report's time), and the deploy must stay a
    no-op on a second run. A failure (the directory not there yet, a lost connection) is a
    warning: the verdict of the HA layer does not depend on monitoring's file.
    """
    text = health_textfile(report, host.name, now, cluster=cluster)
    if not text:
        return False
    try:
        ok, output = host.run_shell_command(StringCommand(textfile_command(HEALTH_TEXTFILE, text)),
                                            _timeout=METRICS_TIMEOUT)
        why = "" if ok else " ".join(output.stderr_lines[-3:]) or "failed"
    except Exception as exc:  # noqa: BLE001 - any failure is this warning, never the run's
        ok, why = False, f"{type(exc).__name__}: {exc}"
    if not ok:
        host.log_styled(f"health metrics not written to {HEALTH_TEXTFILE}: {why}", fg="yellow", log_func=logger.warning)
    return ok


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
        run.results, run.reported, run.partial, run.unchanged = {}, False, False, None
    started = time.monotonic()
    before = read_before_run(host, run.site) if nothing_changed(run) else None
    if before is not None:
        # The run changed nothing on any host: the state read before it (with the plan's, in
        # the same round trip) is the state now; no second round trip.
        facts = health_facts(health_parts(run.site, host.name), before)
        facts["read_before_run"] = True
    else:
        facts = collect_facts(host, run.site)
    facts["collect_sec"] = round(time.monotonic() - started, 2)
    run.results[host.name] = facts
    yield from ()


def nothing_changed(run: _Run) -> bool:
    """No operation before this one executed a command or failed, on any host (with -y
    pyinfra does not count planned changes: the operations' outcomes are read).

    Walked once per run: the answer is kept once it is final, that is a change (it stays one),
    or every earlier operation complete on every host still in the run (pyinfra's default
    mode, where every host finishes an operation before any starts the next). With --serial
    or --no-wait a host can get here before the others ran theirs: walked again then.
    """
    if run.unchanged is None:
        changed, final = outcomes_before(host.current_op_hash)
        if changed or final:
            run.unchanged = not changed
        return not changed
    return run.unchanged


def outcomes_before(current: str | None) -> tuple[bool, bool]:
    """(whether an operation before `current` executed a command or failed on some host,
    whether every such operation is complete on every host still in the run)."""
    order = state.get_op_order()
    earlier = order[:order.index(current)] if current in order else order
    final = True
    for h in state.inventory:
        for op_hash in earlier:
            try:
                meta = state.get_op_data_for_host(h, op_hash).operation_meta
            except KeyError:  # an operation this host does not have
                continue
            if not meta.is_complete():
                final = final and h in state.failed_hosts
            elif meta.executed or not meta.did_succeed():
                return True, True
    return False, final


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
    now = _now()
    report = evaluate(run.site, run.results, generated_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"), pending=pending,
                      skipped=skipped, now=now)
    complete = active <= set(run.results)
    reasons, publish = report_reasons(run, report, host.name, active)
    if publish:
        _publish(run, report)
    if run.site["monitoring_enabled"] and host.name in run.results:
        write_health_metrics(host, report, now, cluster=complete)
    if reasons:
        yield FunctionCommand(_fail_host, (reasons,), {})


@deploy("Verify the HA layer")
def verify():
    """Collect every controller's health facts after the changes; report; fail on a failed check."""
    # _timeout bounds the collection at the connection too (each fact also runs under `timeout`
    # on the host, FACT_TIMEOUT): a stalled SSH channel cannot hang the run.
    collect_health(name="Collect health facts", _timeout=FACT_TIMEOUT + 10)
    settle_health(name="Let HAProxy's checks settle", _timeout=FACT_TIMEOUT)
    health_report(name="Health report")
