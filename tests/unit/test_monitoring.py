"""Monitoring, offline (docs/monitoring.md): the alert rules tested like code with promtool,
every metric a rule names known to come from an exporter, the Prometheus and Alertmanager
configs checked by promtool and amtool, and the textfile collector's text.

promtool and amtool are Debian's (packages prometheus and prometheus-alertmanager, the
Makefile's HOST_PACKAGES). A missing tool fails these tests with the fix, never skips them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from config import monitoring as m
from config.defaults import DEFAULTS
from config.site import build_site
from facts.backup_manifest import Manifest, ManifestError
from health.metrics import METRICS, escape, node_textfile
from health.report import FAIL, OK, Check, Report
from unitkit import lab_data

CASES = Path(__file__).parent / "monitoring"
NOW = datetime(2026, 12, 6, 9, 0, tzinfo=timezone.utc)


def tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} not found: make host-packages (Debian's prometheus / prometheus-alertmanager)")
    return path


def site(**changes):
    hosts, group = lab_data()
    return build_site(hosts, {**group, "monitoring_enabled": True, "backup_enabled": True, **changes})


def run(*argv, cwd=None):
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)


# --- the rules ---------------------------------------------------------------------------------


def test_monitoring_is_off_by_default():
    assert DEFAULTS["monitoring_enabled"] is False


@pytest.mark.parametrize("changes", [{}, {"haproxy_tls": False, "external_vip": None, "firewall": False, "backup_enabled": False},
                                     {"backup_incremental_calendar": None, "backup_full_calendar": "weekly"}])
def test_rules_pass_promtool_check(tmp_path, changes):
    rules = tmp_path / "rules.yml"
    rules.write_text(m.render_rules(site(**changes)))
    out = run(tool("promtool"), "check", "rules", str(rules))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(m.alerts(site(**changes)))} rules found" in out.stdout


def test_optional_rules_follow_their_keys():
    names = lambda s: {a.name for a in m.alerts(s)}  # noqa: E731
    full = names(site())
    assert {"FirewallDrifted", "CertificateExpiresSoon", "BackupTooOld"} <= full
    off = names(site(haproxy_tls=False, external_vip=None, firewall=False, backup_enabled=False))
    assert full - off == {"FirewallDrifted", "CertificateExpiresSoon", "BackupTooOld"}


def test_each_alert_has_a_runbook_a_summary_and_a_severity():
    alerts = m.alerts(site())
    assert len({a.name for a in alerts}) == len(alerts)
    for a in alerts:
        assert a.severity in ("critical", "warning", "info"), a.name
        assert a.runbook.strip() and "\n" not in a.runbook and a.runbook.endswith("."), a.name
        assert a.summary.strip() and "\n" not in a.summary, a.name
    rendered = m.render_rules(site())
    assert rendered.count("runbook: '") == len(alerts)


def cases() -> dict[str, Path]:
    return {p.stem: p for p in sorted(CASES.glob("*.yml"))}


def test_every_alert_has_its_test_file_and_every_file_its_alert():
    alerts = {a.name for a in m.alerts(site())}
    assert set(cases()) == alerts, set(cases()) ^ alerts


@pytest.mark.parametrize("name", sorted(cases()))
def test_each_test_file_fires_its_alert_and_has_a_healthy_case(name):
    text = cases()[name].read_text()
    assert set(re.findall(r"alertname: (\S+)", text)) == {name}
    assert "exp_labels:" in text, f"{name}: no case makes it fire"
    assert "exp_alerts: []" in text, f"{name}: no case shows it silent on a healthy series"


def promtool_test(tmp_path: Path, rules: str, name: str):
    (tmp_path / "rules.yml").write_text(rules)
    shutil.copy(cases()[name], tmp_path / f"{name}.yml")
    return run(tool("promtool"), "test", "rules", f"{name}.yml", cwd=tmp_path)


@pytest.mark.parametrize("name", sorted(cases()))
def test_promtool_test_rules(tmp_path, name):
    out = promtool_test(tmp_path, m.render_rules(site()), name)
    assert out.returncode == 0, out.stdout + out.stderr


# A threshold changed makes its test file fail: the cases test the rendered values.
@pytest.mark.parametrize("name, changes", [
    ("CertificateExpiresSoon", {"monitoring_certificate_days": 7}),
    ("ControllerInMaintenanceTooLong", {"monitoring_maintenance_hours": 6}),
    ("GaleraFlowControlPaused", {"monitoring_flow_control_percent": 30}),
    ("BackupTooOld", {"monitoring_backup_schedules": 3}),
    ("MonitoringTextfileStale", {"monitoring_scrape_interval": 60}),
])
def test_a_changed_threshold_fails_its_case(tmp_path, name, changes):
    out = promtool_test(tmp_path, m.render_rules(site(**changes)), name)
    assert out.returncode != 0, f"{name}: still passes with {changes}"


def test_galera_size_follows_the_inventory():
    hosts, group = lab_data()
    five = hosts + [(f"node0{i}", {**hosts[0][1], "address": f"10.77.0.{10 + i}", "vrrp_priority": 100 + i}) for i in (4, 5)]
    s = build_site(five, {**group, "monitoring_enabled": True})
    (size,) = [a.expr for a in m.alerts(s) if a.name == "GaleraClusterSizeBelowInventory"]
    assert size.endswith("< 5")


def test_haproxy_rule_names_the_database_and_every_api():
    s = site()
    (expr,) = [a.expr for a in m.alerts(s) if a.name == "HaproxyBackendNoServerUp"]
    proxies = set(re.search(r'proxy=~"([^"]+)"', expr).group(1).split("|"))
    assert proxies == {svc.name for svc in s.services} and "mariadb" in proxies


# --- every metric a rule names is one an exporter produces ----------------------------------------


@pytest.mark.parametrize("expr, names", [
    ("up == 0", {"up"}),
    ('sum by (vip) (openstack_ha_vip_held{vip="a b"}) > 1', {"openstack_ha_vip_held"}),
    ("rate(x_total[5m]) / 1e9 > 0.1", {"x_total"}),
    ("a unless on (node) (b == 1)", {"a", "b"}),
    ('count(a == 3) < count(b) * (count(b) - 1)', {"a", "b"}),
    ('time() - m{file=~"o.*"} > 300', {"m"}),
    ("haproxy_up == 0 or haproxy_backend_up == 0", {"haproxy_up", "haproxy_backend_up"}),
])
def test_metric_names_of_an_expression(expr, names):
    assert m.metric_names(expr) == names


def test_every_metric_a_rule_names_is_known():
    known = m.known_metrics()
    used = m.rule_metrics(site())
    assert set(used) == {a.name for a in m.alerts(site())} and all(used.values())
    for name, metrics in used.items():
        unknown = metrics - known
        assert not unknown, f"{name}: {sorted(unknown)} come from no exporter of KNOWN_METRICS"


def test_the_dead_names_of_a_copied_rule_set_are_not_known():
    """The names a widely copied kolla rule set uses, which HAProxy's exporter never produces."""
    assert not {"haproxy_up", "haproxy_backend_up", "haproxy_server_up"} & m.known_metrics()


def test_every_textfile_metric_is_known():
    assert set(METRICS) <= m.known_metrics()


# --- Prometheus and Alertmanager configs -------------------------------------------------------


@pytest.mark.parametrize("webhooks", [[], ["http://192.0.2.9:5001/alerts", "https://hooks.example.org/x?token=abc"]])
def test_configs_pass_promtool_and_amtool(tmp_path, webhooks):
    s = site(monitoring_webhooks=webhooks)
    for c in s.controllers:
        rules = tmp_path / "rules.yml"
        rules.write_text(m.render_rules(s))
        prom = tmp_path / f"prometheus-{c.name}.yml"
        text = m.render_prometheus(s, c.name)
        assert f"'{m.RULES_FILE}'" in text
        prom.write_text(text.replace(m.RULES_FILE, str(rules)))
        out = run(tool("promtool"), "check", "config", str(prom))
        assert out.returncode == 0, out.stdout + out.stderr
        am = tmp_path / f"alertmanager-{c.name}.yml"
        am.write_text(m.render_alertmanager(s, c.name))
        out = run(tool("amtool"), "check-config", str(am))
        assert out.returncode == 0, out.stdout + out.stderr
        assert text.count("- targets: [") == len(m.JOBS) * len(s.controllers)
        assert all(f"'{u}'" in am.read_text() for u in webhooks)


def test_prometheus_scrapes_every_controller_on_its_node_address():
    s = site(monitoring_node_exporter_port=9111)
    text = m.render_prometheus(s, "node02")
    for c in s.controllers:
        assert f"['{c.address}:9111']" in text
        assert f"'{c.address}:{s['monitoring_alertmanager_port']}'" in text
    assert text.count("node: 'node01'") == len(m.JOBS)
    assert m.prometheus_args(s, "node02") == f"--web.listen-address={s.controller('node02').address}:9090"


def test_alertmanager_peers_are_the_other_controllers():
    s = site(monitoring_alertmanager_cluster_port=9194)
    args = m.alertmanager_args(s, "node01")
    me = s.controller("node01").address
    assert f"--cluster.listen-address={me}:9194" in args
    assert sorted(re.findall(r"--cluster\.peer=(\S+)", args)) == sorted(f"{c.address}:9194" for c in s.peers("node01"))
    assert f"--cluster.peer={me}:" not in args


def test_maintenance_inhibits_its_own_node_but_not_the_too_long_alert():
    text = m.render_alertmanager(site(), "node01")
    assert "source_matchers: ['alertname=\"ControllerInMaintenance\"']" in text
    assert "'alertname!=\"ControllerInMaintenanceTooLong\"'" in text and "equal: [node]" in text


@pytest.mark.parametrize("calendar, seconds", [
    ("daily", 86400), ("hourly", 3600), ("weekly", 604800),
    ("*-*-* 01:00:00", 86400), ("01:00", 86400), ("*-*-* *:30:00", 3600), ("*-*-* *:*:00", 60),
    ("*-*-* */6:00:00", 6 * 3600), ("*-*-* *:*/15:00", 900),
    ("Mon *-*-* 01:00:00", None), ("*-*-01 01:00:00", None), ("*-*-* 01,13:00:00", None),
])
def test_backup_period(calendar, seconds):
    assert m.backup_period_seconds(calendar) == seconds


def test_backup_max_age_is_schedules_times_the_period():
    s = site(backup_full_calendar="daily", backup_incremental_calendar="*-*-* */6:00:00", monitoring_backup_schedules=3)
    assert m.backup_max_age(s) == {"full": 3 * 86400, "incremental": 3 * 6 * 3600}
    assert m.backup_max_age(site(backup_incremental_calendar=None)) == {"full": 2 * 86400}
    # a shape it cannot read: a day
    assert m.backup_max_age(site(backup_full_calendar="Mon *-*-* 01:00:00", backup_incremental_calendar=None)) == {"full": 2 * 86400}


def test_yaml_quoted_refuses_a_second_line():
    assert m.yaml_quoted("it's") == "'it''s'"
    with pytest.raises(ValueError):
        m.yaml_quoted("a\nb")


# --- the textfile collector ----------------------------------------------------------------------


def facts(**changes):
    base = {
        "vip": {"holds_vip": True, "error": None},
        "external_vip": {"holds_vip": False, "error": None},
        "keepalived": {"active": "active", "vrrp_state": "MASTER",
                       "vrrp_states": {"internal_vip_77": "MASTER", "external_vip_78": "BACKUP"}, "error": None},
        "maintenance": {"out": False, "error": None},
        "rabbitmq": {"running_nodes": [], "partitions": [], "alarms": [], "error": None},
        "haproxy_tls": {"not_after": "2027-01-01T00:00:00Z", "error": None},
        "memcached": {"answering": True, "error": None},
    }
    return {**base, **changes}


def report(name="node01", rows=(Check("galera", OK, "Synced"), Check("firewall", OK, "ok"))):
    return Report(controllers=["node01", "node02", "node03"], hosts={name: list(rows)})


def parse(text: str) -> dict[tuple, float]:
    """{(metric, ((label, value), ...)): value} of the text format (no escaped quotes in values)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m_ = re.fullmatch(r'([a-z_:]+)(?:\{(.*)\})? (\S+)', line)
        assert m_, line
        labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m_.group(2) or "")))
        out[(m_.group(1), labels)] = float(m_.group(3))
    return out


def test_textfile_passes_promtool_check_metrics():
    manifests = []
    text = node_textfile(site(), "node01", facts(), report(), NOW, manifests)
    out = subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr + text


def test_textfile_values_follow_the_facts():
    s = site()
    values = parse(node_textfile(s, "node01", facts(), report(), NOW))
    assert values[("openstack_ha_vip_held", (("address", s["vip"]), ("vip", "internal")))] == 1
    assert values[("openstack_ha_vip_held", (("address", s["external_vip"]), ("vip", "external")))] == 0
    assert values[("openstack_ha_keepalived_vrrp_state", (("state", "MASTER"), ("vrrp_instance", "internal_vip_77")))] == 1
    assert values[("openstack_ha_keepalived_vrrp_state", (("state", "FAULT"), ("vrrp_instance", "internal_vip_77")))] == 0
    assert values[("openstack_ha_keepalived_vrrp_state", (("state", "BACKUP"), ("vrrp_instance", "external_vip_78")))] == 1
    assert values[("openstack_ha_keepalived_active", ())] == 1
    assert values[("openstack_ha_maintenance", ())] == 0
    assert values[("openstack_ha_health_check", (("check", "galera"), ("status", "ok")))] == 1
    assert values[("openstack_ha_health_check", (("check", "galera"), ("status", "FAIL")))] == 0
    assert values[("openstack_ha_health_ok", ())] == 1
    assert values[("openstack_ha_firewall_drifted", ())] == 0
    assert values[("openstack_ha_rabbitmq_partitions", ())] == 0
    assert values[("openstack_ha_memcached_up", ())] == 1
    assert values[("openstack_ha_tls_certificate_expiry_timestamp_seconds", (("path", s["haproxy_tls_pem_path"]),))] == \
        datetime(2027, 1, 1, tzinfo=timezone.utc).timestamp()
    assert values[("openstack_ha_collector_timestamp_seconds", ())] == NOW.timestamp()
    assert not [k for k in values if k[0] == "openstack_ha_backup_last_success_timestamp_seconds"]  # not the backup node


def test_textfile_faults():
    f = facts(keepalived={"active": "active", "vrrp_state": "FAULT", "vrrp_states": {"internal_vip_77": "FAULT"}, "error": None},
              maintenance={"out": True, "error": None},
              rabbitmq={"partitions": ["rabbit@node02"], "error": None},
              memcached={"answering": False, "error": "connection refused"})
    rows = (Check("firewall", FAIL, "flushed"), Check("haproxy", OK, "up"), Check("haproxy", FAIL, "a listener"))
    values = parse(node_textfile(site(), "node01", f, report(rows=rows), NOW))
    assert values[("openstack_ha_keepalived_vrrp_state", (("state", "FAULT"), ("vrrp_instance", "internal_vip_77")))] == 1
    assert values[("openstack_ha_maintenance", ())] == 1
    assert values[("openstack_ha_firewall_drifted", ())] == 1
    assert values[("openstack_ha_rabbitmq_partitions", ())] == 1
    assert values[("openstack_ha_memcached_up", ())] == 0
    assert values[("openstack_ha_health_ok", ())] == 0
    # two rows of one check: the worse one is its status
    assert values[("openstack_ha_health_check", (("check", "haproxy"), ("status", "FAIL")))] == 1
    assert values[("openstack_ha_health_check", (("check", "haproxy"), ("status", "ok")))] == 0


def test_a_fact_that_cannot_be_read_gives_no_series():
    f = facts(vip={"error": "ip: timed out"}, keepalived={"error": "no answer"}, rabbitmq={"error": "stopped"})
    f.pop("maintenance")
    f.pop("memcached")  # not collected: no series (collected with an error: 0, test_textfile_faults)
    keys = {k[0] for k in parse(node_textfile(site(), "node01", f, report(), NOW))}
    assert not keys & {"openstack_ha_keepalived_active", "openstack_ha_keepalived_vrrp_state", "openstack_ha_maintenance",
                       "openstack_ha_rabbitmq_partitions", "openstack_ha_memcached_up"}
    values = parse(node_textfile(site(), "node01", f, report(), NOW))
    assert ("openstack_ha_vip_held", (("address", site()["vip"]), ("vip", "internal"))) not in values
    assert ("openstack_ha_vip_held", (("address", site()["external_vip"]), ("vip", "external"))) in values


def manifest(kind: str, finished: str, status="ok", verified=True):
    at = datetime.strptime(finished, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return Manifest(id=f"{kind}-{finished}", kind=kind, parent="p" if kind == "incremental" else None, node="node03",
                    started=at, finished=at, status=status, error=None, galera_uuid=None, galera_seqno=None, lsn_from=None,
                    lsn_to=None, artifact=None, artifact_bytes=None, datadir_bytes=None, sha256=None, tables=(),
                    verified=verified, verify_note="")


def test_backup_age_is_the_newest_good_backup_of_each_kind():
    ms = [manifest("full", "2026-12-05T01:00:00Z"), manifest("full", "2026-12-06T01:00:00Z", status="failed"),
          manifest("full", "2026-12-04T01:00:00Z"), manifest("incremental", "2026-12-06T08:30:00Z", verified=False)]
    ms.append(ManifestError("x.manifest.json", "not JSON"))  # unreadable: not a success
    values = parse(node_textfile(site(), "node03", facts(), report("node03"), NOW, ms))
    key = "openstack_ha_backup_last_success_timestamp_seconds"
    assert values[(key, (("kind", "full"),))] == datetime(2026, 12, 5, 1, tzinfo=timezone.utc).timestamp()
    assert values[(key, (("kind", "incremental"),))] == 0  # its only one failed verification


def test_label_values_are_escaped():
    assert escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    rows = (Check('odd "name"\\', OK, "x"),)
    text = node_textfile(site(), "node01", facts(), report(rows=rows), NOW)
    assert 'check="odd \\"name\\"\\\\"' in text
    out = subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


# --- preflight -------------------------------------------------------------------------------------


def problems(**changes):
    from config.preflight import check
    from unitkit import FAKE_SECRETS

    hosts, group = lab_data()
    report = check(hosts, {**group, **changes}, FAKE_SECRETS)
    return [(p.level, p.key, p.message) for p in report.problems if p.key.startswith("monitoring_")]


def test_preflight_says_a_monitoring_key_does_nothing_while_off():
    assert problems() == []
    (said,) = problems(monitoring_certificate_days=14)
    assert said[:2] == ("warning", "monitoring_certificate_days") and "monitoring_enabled is False" in said[2]


def test_preflight_says_monitoring_is_not_installed_yet():
    assert [p[:2] for p in problems(monitoring_enabled=True)] == [("warning", "monitoring_enabled")]


@pytest.mark.parametrize("key, port, other", [
    ("monitoring_prometheus_port", 3306, "MariaDB"),
    ("monitoring_node_exporter_port", 9094, "the Alertmanager cluster"),
    ("monitoring_rabbitmq_exporter_port", 4567, "Galera replication"),
])
def test_preflight_refuses_a_monitoring_port_another_daemon_holds(key, port, other):
    errors = [p for p in problems(monitoring_enabled=True, **{key: port}) if p[0] == "error"]
    assert [(p[1], other in p[2]) for p in errors] == [(key, True)]
    assert not [p for p in problems(**{key: port}) if p[0] == "error"]  # off: the port is not held


def test_preflight_refuses_a_bad_webhook():
    errors = [p for p in problems(monitoring_enabled=True, monitoring_webhooks=["ftp://x/y"]) if p[0] == "error"]
    assert [p[1] for p in errors] == ["monitoring_webhooks"]
