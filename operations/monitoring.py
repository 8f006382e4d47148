"""Monitoring on every controller (monitoring_enabled; docs/monitoring.md): Debian's
Prometheus, Alertmanager, node-exporter and mysqld_exporter, and the project's textfile collector.

HAProxy's exporter (a frontend of haproxy.cfg) and RabbitMQ's (the rabbitmq_prometheus plugin)
are their own components' files, applied by their own operations; the firewall rows are
config/firewall.py's. Every file here is config/monitoring.py's, rendered by config/files.py.
"""

import shlex

from pyinfra import host
from pyinfra.api import deploy

from config import monitoring as m
from config.packages import PACKAGES
from facts.galera import MysqlAccounts
from operations.before import planned_fact
from operations.common import announce, one_at_a_time, shell, site, turn, unit_log, wait_until
from operations.galera import cluster_plan
from operations.steps import clear_pending, daemon_reload, install_files, mark_pending, mark_reload, packages, pending, service, will_change

TIMER = f"{m.COLLECTOR_UNIT}.timer"
COLLECTOR_UNITS = (f"/etc/systemd/system/{m.COLLECTOR_UNIT}.service", f"/etc/systemd/system/{TIMER}")
# Each daemon's config files (a change is a reload; None: it has none, a restart) beside its /etc/default.
CONFIGS = {
    "prometheus-node-exporter": (),
    "prometheus-mysqld-exporter": (),
    "prometheus": (m.PROMETHEUS_YML, m.RULES_FILE),
    "prometheus-alertmanager": (m.ALERTMANAGER_YML,),
}
# Restarted one controller at a time, each awaited: the cluster keeps two of its Alertmanagers
# (their silences and notification log) and two Prometheus evaluating the rules.
ROLLING = {"prometheus": "monitoring_prometheus_port", "prometheus-alertmanager": "monitoring_alertmanager_port"}


def account_missing(accounts: dict) -> bool:
    """Whether mysqld_exporter's MariaDB account must be created (unknown state: yes, it is idempotent)."""
    return bool(accounts.get("error")) or f"{m.EXPORTER_ACCOUNT}@localhost" not in accounts.get("users", {})


def validation() -> dict:
    """The real binaries check each config before it replaces the old one: promtool the rules
    and the prometheus.yml (which loads the rules file in place: installed first), amtool the
    alertmanager.yml."""
    return {
        m.RULES_FILE: "promtool check rules {path}",
        m.PROMETHEUS_YML: "promtool check config {path}",
        m.ALERTMANAGER_YML: "amtool check-config {path}",
    }


def ready(unit: str) -> str:
    """The bounded wait until a restarted Prometheus or Alertmanager answers /-/ready on its address."""
    url = f"http://{site().controller(host.name).address}:{site()[ROLLING[unit]]}/-/ready"
    probe = "python3 -c " + shlex.quote(f"import urllib.request; urllib.request.urlopen({url!r}, timeout=3)")
    return wait_until(probe, f"{unit} to answer on {url}", seconds=120, on_fail=unit_log(unit))


# A reloaded Prometheus has applied its configuration once its last successful reload is no older
# than its config files. Until then its /api/v1/targets waits (the reload stops the scrape pools
# of the targets it drops, each waiting for its scrape in flight: 30 s on the lab after a
# controller was removed powered off), and the report's read of it would time out.
APPLIED = """import os, sys, urllib.request
written = max(int(os.stat(p).st_mtime) for p in sys.argv[2:])
lines = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().splitlines()
done = [float(l.split()[1]) for l in lines if l.startswith("prometheus_config_last_reload_success_timestamp_seconds ")]
sys.exit(0 if done and done[0] >= written else 1)
"""


def applied(unit: str) -> str:
    """The bounded wait until a reloaded Prometheus has applied its new configuration (APPLIED)."""
    url = f"http://{site().controller(host.name).address}:{site()[ROLLING[unit]]}/metrics"
    probe = f"python3 -c {shlex.quote(APPLIED)} {shlex.quote(url)} {' '.join(shlex.quote(p) for p in CONFIGS[unit])}"
    return wait_until(probe, f"{unit} to apply its new configuration", seconds=180, on_fail=unit_log(unit))


@deploy("Monitoring")
def configure():
    """Packages (Debian 12's; nothing from outside its archive), mysqld_exporter's own MariaDB
    account (unix_socket, created once on a node of the Primary component: Galera replicates
    it), the files (each config checked by promtool or amtool on the host first), then each
    daemon: a changed /etc/default (its command line) is a restart, a changed config a
    reload; Prometheus and Alertmanager restart one controller at a time, each awaited until
    ready. The collector's timer runs the script every scrape interval."""
    if not site()["monitoring_enabled"]:
        return
    packages(name="monitoring: packages", names=list(PACKAGES["monitoring"]))

    anchor = host.name == cluster_plan().anchor
    create = anchor and account_missing(planned_fact(MysqlAccounts))
    shell("monitoring: mysqld_exporter's MariaDB account (unix_socket, no password)",
          [f"timeout 30 mysql -e {shlex.quote('; '.join(m.account_sql()))}"], when=create)

    # Before any file: which unit restarts (its command line changed, or an earlier run left a
    # marker) and which reloads (its config changed).
    restart, reload = {}, {}
    for unit, configs in CONFIGS.items():
        args = m.DEFAULT_FILES[unit]
        restart[unit] = will_change("monitoring", (args,)) or pending(unit)
        reload[unit] = mark_pending(unit, "monitoring", paths=(args, *configs)) and not restart[unit]
    units_changed = will_change("monitoring", COLLECTOR_UNITS)
    units_reload = mark_reload("monitoring", COLLECTOR_UNITS)

    install_files("monitoring", validate=validation())
    daemon_reload("monitoring: reload systemd units (the collector's)", "monitoring", units_reload)

    for unit in CONFIGS:
        rolling = unit in ROLLING
        announce(restart[unit], f"restart {unit}" + (" (one controller at a time)" if rolling else ""))
        announce(reload[unit], f"reload {unit}")
        service(name=f"monitoring: {unit} running", unit=unit, reloaded=reload[unit],
                restarted=restart[unit] and not rolling, keep_pending=restart[unit] and rolling)
        if unit == "prometheus":
            shell(f"monitoring: {unit} has applied its configuration", [applied(unit)], when=reload[unit])
        if rolling:
            for name, mine in one_at_a_time([c.name for c in site().controllers]):
                turn(name=f"monitoring: restart {unit} on {name}",
                     commands=[f"timeout 120 systemctl restart {unit} || {{ {unit_log(unit)}; exit 1; }}", ready(unit),
                               clear_pending(unit)],
                     run=mine and restart[unit])
    service(name=f"monitoring: {TIMER} running", unit=TIMER, restarted=units_changed)
