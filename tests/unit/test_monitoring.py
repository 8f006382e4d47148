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
from health.metrics import METRICS, escape, health_textfile, node_textfile
from health.report import FAIL, OK, WARN, Check, Report
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
    assert not [k for k in values if k[0].startswith("openstack_ha_health_")]  # the report's file: health_textfile
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
    text = health_textfile(report(rows=rows), "node01", NOW)
    assert 'check="odd \\"name\\"\\\\"' in text
    out = subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


# --- the health report's verdict (health_textfile, written by operations/verify.py) ---------------


def cluster_report(name="node01", rows=(Check("galera", OK, "Synced"), Check("haproxy", OK, "up"),
                                        Check("haproxy", FAIL, "a listener"), Check("tls certificate", WARN, "expires"))):
    r = report(name, rows)
    r.cluster = [Check("controllers up", OK, "3/3"), Check("vip holder", FAIL, "split brain", ("node02", "node03")),
                 Check("galera", FAIL, "not Synced: node01", ("node01",)), Check("memcached", OK, "answering on 3/3")]
    return r


def test_health_textfile_passes_promtool_check_metrics():
    text = health_textfile(cluster_report(), "node01", NOW)
    out = subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr + text


def test_health_textfile_is_the_verdict_per_check():
    values = parse(health_textfile(cluster_report(), "node01", NOW))
    check = lambda name, status: values[("openstack_ha_health_check", (("check", name), ("status", status)))]  # noqa: E731
    assert check("galera", "ok") == 1 and check("galera", "FAIL") == 0
    # two rows of one check: the worse one is its status; a WARN is a WARN
    assert check("haproxy", "FAIL") == 1 and check("haproxy", "ok") == 0
    assert check("tls certificate", "WARN") == 1
    # a cluster check fails on the controllers it names only
    assert check("cluster galera", "FAIL") == 1
    assert check("cluster vip holder", "FAIL") == 0 and check("cluster vip holder", "ok") == 1
    assert check("cluster controllers up", "ok") == 1
    # one-hot: every check has exactly one status
    checks = {dict(k[1])["check"] for k in values if k[0] == "openstack_ha_health_check"}
    for c in checks:
        assert sum(v for k, v in values.items() if k[0] == "openstack_ha_health_check" and dict(k[1])["check"] == c) == 1, c
    assert values[("openstack_ha_health_ok", ())] == 0
    assert values[("openstack_ha_health_report_timestamp_seconds", ())] == NOW.timestamp()


def test_health_textfile_blames_the_named_controller_only():
    r = cluster_report()
    r.hosts["node02"] = [Check("galera", OK, "Synced")]
    values = parse(health_textfile(r, "node02", NOW))
    assert values[("openstack_ha_health_check", (("check", "cluster vip holder"), ("status", "FAIL")))] == 1
    assert values[("openstack_ha_health_check", (("check", "cluster galera"), ("status", "ok")))] == 1
    assert values[("openstack_ha_health_ok", ())] == 0  # the split brain names it
    r.hosts["node04"] = [Check("galera", OK, "Synced")]
    assert parse(health_textfile(r, "node04", NOW))[("openstack_ha_health_ok", ())] == 1


def test_health_textfile_without_the_cluster_judges_the_host_alone():
    """A --serial run's host that reported before the others had collected judged no cluster check."""
    values = parse(health_textfile(cluster_report(rows=(Check("galera", OK, "Synced"),)), "node01", NOW, cluster=False))
    assert not [k for k in values if k[0] == "openstack_ha_health_check" and dict(k[1])["check"].startswith("cluster ")]
    assert values[("openstack_ha_health_ok", ())] == 1
    assert health_textfile(cluster_report(), "node09", NOW) == ""  # no rows: no file


def test_health_textfile_carries_no_detail():
    """Labels are check names and statuses: a detail (which may quote anything a fact said) never."""
    r = cluster_report(rows=(Check("galera", FAIL, "secret-looking detail s3cr3t"),))
    text = health_textfile(r, "node01", NOW)
    assert "s3cr3t" not in text and "split brain" not in text
    assert {k for v in parse(text) for k, _ in v[1]} == {"check", "status"}


def test_the_two_textfiles_never_write_one_metric():
    """node-exporter fails a scrape that reads one series from two files: the collector's file
    and the report's have no metric name in common."""
    node = {k[0] for k in parse(node_textfile(site(), "node03", facts(), cluster_report("node03"), NOW, []))}
    health = {k[0] for k in parse(health_textfile(cluster_report(), "node01", NOW))}
    assert health == {"openstack_ha_health_check", "openstack_ha_health_ok", "openstack_ha_health_report_timestamp_seconds"}
    assert not node & health
    assert m.HEALTH_TEXTFILE.rsplit("/", 1)[0] == m.TEXTFILE_DIR and m.HEALTH_TEXTFILE != m.TEXTFILE


# --- preflight -------------------------------------------------------------------------------------


def problems(**changes):
    """Preflight's monitoring problems of the lab site with `changes`; monitoring_enabled=False
    also drops the lab's other monitoring keys (a site that never set them)."""
    from config.preflight import check
    from unitkit import FAKE_SECRETS

    hosts, group = lab_data()
    if changes.get("monitoring_enabled") is False:
        group = {k: v for k, v in group.items() if not k.startswith("monitoring_")}
    report = check(hosts, {**group, **changes}, FAKE_SECRETS)
    return [(p.level, p.key, p.message) for p in report.problems if p.key.startswith("monitoring_")]


def test_preflight_says_a_monitoring_key_does_nothing_while_off():
    assert problems(monitoring_enabled=False) == []
    (said,) = problems(monitoring_enabled=False, monitoring_certificate_days=14)
    assert said[:2] == ("warning", "monitoring_certificate_days") and "monitoring_enabled is False" in said[2]


def test_preflight_takes_monitoring_on_as_it_is_and_warns_of_a_late_evaluation():
    assert problems(monitoring_enabled=True) == []
    (said,) = problems(monitoring_enabled=True, monitoring_evaluation_interval=61)
    assert said[:2] == ("warning", "monitoring_evaluation_interval")
    assert problems(monitoring_enabled=True, monitoring_evaluation_interval=60) == []  # 4 scrapes: the bound itself


def test_preflight_refuses_a_pin_of_a_monitoring_package_while_monitoring_is_off():
    from config.preflight import check
    from unitkit import FAKE_SECRETS

    hosts, group = lab_data()
    for on, errors in ((False, ["package_versions.prometheus"]), (True, [])):
        report = check(hosts, {**group, "monitoring_enabled": on, "package_versions": {"prometheus": "2.42.0+ds-5+deb12u1"}}, FAKE_SECRETS)
        assert [p.key for p in report.errors] == errors
        assert all("monitoring_enabled" in p.fix for p in report.errors)


@pytest.mark.parametrize("key, port, other", [
    ("monitoring_prometheus_port", 3306, "MariaDB"),
    ("monitoring_node_exporter_port", 9094, "the Alertmanager cluster"),
    ("monitoring_rabbitmq_exporter_port", 4567, "Galera replication"),
    ("monitoring_haproxy_exporter_port", 1984, "HAProxy stats"),
    ("monitoring_mysqld_exporter_port", 9200, "galera-clustercheck"),
    ("monitoring_alertmanager_cluster_port", 15672, "RabbitMQ management"),
])
def test_preflight_refuses_a_monitoring_port_another_daemon_holds(key, port, other):
    errors = [p for p in problems(monitoring_enabled=True, **{key: port}) if p[0] == "error"]
    assert [(p[1], other in p[2]) for p in errors] == [(key, True)]
    assert not [p for p in problems(monitoring_enabled=False, **{key: port}) if p[0] == "error"]  # off: the port is not held


def test_preflight_refuses_a_bad_webhook():
    errors = [p for p in problems(monitoring_enabled=True, monitoring_webhooks=["ftp://x/y"]) if p[0] == "error"]
    assert [p[1] for p in errors] == ["monitoring_webhooks"]


# --- installed (monitoring_enabled): the files, the binds, the firewall, the collector --------------

from config.files import FIREWALL_NFT, HAPROXY_CFG, expected_rules, managed_files  # noqa: E402
from config.firewall import rules as firewall_rules  # noqa: E402
from config.packages import PACKAGES  # noqa: E402
from unitkit import FAKE_SECRETS  # noqa: E402

MONITORING_PATHS = {*m.DEFAULT_FILES.values(), m.RULES_FILE, m.PROMETHEUS_YML, m.ALERTMANAGER_YML, m.COLLECTOR,
                    f"/etc/systemd/system/{m.COLLECTOR_UNIT}.service", f"/etc/systemd/system/{m.COLLECTOR_UNIT}.timer"}


def files_of(s, name="node01") -> dict[str, str]:
    return {f.path: f.content for f in managed_files(s, name, FAKE_SECRETS)}


def test_the_monitoring_files_only_with_monitoring_enabled():
    off = files_of(site(monitoring_enabled=False))
    on = files_of(site())
    # off, the lab's monitoring_networks changes nothing either (the firewall's set comes with monitoring)
    assert files_of(site(monitoring_enabled=False, monitoring_networks=None)) == off
    assert not MONITORING_PATHS & set(off)
    assert set(on) - set(off) == MONITORING_PATHS
    assert PACKAGES["monitoring"] == ("prometheus", "prometheus-alertmanager", "prometheus-node-exporter", "prometheus-mysqld-exporter")
    # off, the exporters' lines of HAProxy's and RabbitMQ's files are not there (a deploy of before changes nothing)
    assert "prometheus" not in off[HAPROXY_CFG] and "prometheus" not in off["/etc/rabbitmq/rabbitmq.conf"]
    assert off["/etc/rabbitmq/enabled_plugins"] == "[rabbitmq_management].\n"
    assert on["/etc/rabbitmq/enabled_plugins"] == "[rabbitmq_management,rabbitmq_prometheus].\n"


@pytest.mark.parametrize("name", ["node01", "node03"])
def test_every_daemon_listens_on_the_node_address_only(name):
    s = site()
    me = s.controller(name).address
    files = files_of(s, name)
    listens = []
    for unit, path in m.DEFAULT_FILES.items():
        (args,) = re.findall(r'^ARGS="([^"]*)"$', files[path], re.M)
        listens += re.findall(r"--(?:web|cluster)\.listen-address=(\S+)", args)
    haproxy = files[HAPROXY_CFG].split("\nfrontend prometheus\n", 1)[1].split("\n\n", 1)[0]
    listens += re.findall(r"bind (\S+)", haproxy)
    rabbit = files["/etc/rabbitmq/rabbitmq.conf"]
    listens.append(re.search(r"^prometheus\.tcp\.ip = (\S+)$", rabbit, re.M).group(1) + ":" +
                   re.search(r"^prometheus\.tcp\.port = (\d+)$", rabbit, re.M).group(1))
    ports = {f"{me}:{s[k]}" for k in ("monitoring_node_exporter_port", "monitoring_mysqld_exporter_port", "monitoring_prometheus_port",
                                     "monitoring_alertmanager_port", "monitoring_alertmanager_cluster_port",
                                     "monitoring_haproxy_exporter_port", "monitoring_rabbitmq_exporter_port")}
    assert sorted(listens) == sorted(ports)
    assert "use-service prometheus-exporter" in haproxy
    assert f'DATA_SOURCE_NAME="{m.EXPORTER_ACCOUNT}@unix({m.MYSQL_SOCKET})/"' in files[m.DEFAULT_FILES["prometheus-mysqld-exporter"]]
    assert f"--collector.textfile.directory={m.TEXTFILE_DIR}" in files[m.DEFAULT_FILES["prometheus-node-exporter"]]


def test_the_exporter_account_has_the_least_privileges_mysqld_exporter_needs():
    sql = m.account_sql()
    assert sql[0] == f"CREATE USER IF NOT EXISTS '{m.EXPORTER_ACCOUNT}'@'localhost' IDENTIFIED VIA unix_socket"
    grants = " ".join(sql[1:])
    assert "ALL" not in grants and "SUPER" not in grants and "ON *.* TO" in grants
    assert re.findall(r"GRANT (.*?) ON (\S+) TO", grants) == [("PROCESS, REPLICATION CLIENT", "*.*"), ("SELECT", "performance_schema.*")]


def test_haproxy_cfg_with_the_exporter_passes_haproxy_c(tmp_path):
    from unitkit import haproxy_check, render_inventory, variant

    out = tmp_path / "out"
    render_inventory(variant(tmp_path, monitoring_enabled=True, monitoring_haproxy_exporter_port=8406), out)
    cfg = out / "node01" / "etc/haproxy/haproxy.cfg"
    assert "bind 100.2.30.41:8406" in cfg.read_text()
    proc = haproxy_check(cfg)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the control: a service HAProxy does not know fails the same check
    cfg.write_text(cfg.read_text().replace("use-service prometheus-exporter", "use-service no-such-exporter"))
    assert haproxy_check(cfg).returncode != 0


def test_the_firewall_admits_monitoring_from_the_controllers_and_monitoring_networks_only(tmp_path):
    off = firewall_rules(site(monitoring_enabled=False, monitoring_networks=["192.0.2.0/24"]))
    assert off.monitoring_ports == () and off.cluster_udp_ports == () and 9094 not in off.cluster_ports and off.monitors == ()
    s = site(monitoring_networks=["192.0.2.0/24"])
    fw = firewall_rules(s)
    assert fw.monitoring_ports == tuple(sorted(s[k] for k in ("monitoring_prometheus_port", "monitoring_alertmanager_port",
                                                              "monitoring_node_exporter_port", "monitoring_mysqld_exporter_port",
                                                              "monitoring_haproxy_exporter_port", "monitoring_rabbitmq_exporter_port")))
    assert fw.monitors == ("192.0.2.0/24",)
    # the Alertmanagers' gossip: the controllers only, TCP and UDP
    assert s["monitoring_alertmanager_cluster_port"] in fw.cluster_ports and fw.cluster_udp_ports == (9094,)
    assert not set(fw.monitoring_ports) & set(fw.cluster_ports)
    for each in (s, site()):  # with and without monitoring_networks
        text = next(f.content for f in managed_files(each, "node01", FAKE_SECRETS) if f.path == FIREWALL_NFT)
        ports = ", ".join(map(str, firewall_rules(each).monitoring_ports))
        said = "ip saddr != @monitors ip saddr != @controllers drop" if each["monitoring_networks"] else "ip saddr != @controllers drop"
        assert f"tcp dport {{ {ports} }} {said}" in text
        assert "udp dport { 9094 } ip saddr != @controllers drop" in text
        path = tmp_path / "fw.nft"
        path.write_text(text)
        r = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    assert expected_rules(s) == expected_rules(site(monitoring_enabled=False)) + 2


# The collector, run here with stand-ins for the host's tools (ip, systemctl, keepalived, nft,
# curl, openssl on PATH), a local memcached stand-in and a keepalived stand-in process
# that writes its JSON dump on the signal `keepalived --signum=JSON` names.

STUBS = {
    "ip": "echo '2: eth0    inet 10.77.0.11/24 brd 10.77.0.255 scope global eth0'; echo '2: eth0    inet {vip}/32 scope global eth0'",
    "systemctl": "echo active",
    "keepalived": "echo 12",  # SIGUSR2
    "nft": 'if [ "$1" = list ]; then echo "table inet openstack_ha"; else cat {nft_json}; fi',
    "curl": "echo \"$@\" >{tmp}/curl.args; echo '{nodes}'",  # the management API's /api/nodes
    "openssl": "echo 'notAfter=Jan  1 00:00:00 2027 GMT'",
}


def run_collector(tmp_path, s, partitions="{}", rules=None, maintenance="1", name="node01", manifests=None):
    import json
    import socket
    import threading

    script = files_of(s, name)[m.COLLECTOR]
    c = eval(re.search(r"^C = (.*)$", script, re.M).group(1))  # the dict the template wrote (repr)
    expected = c["firewall"][1]
    nft_json = tmp_path / "nft.json"
    nft_json.write_text(json.dumps({"nftables": [{"metainfo": {}}] + [{"rule": {"chain": "input"}}] * (expected if rules is None else rules)}))
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    for name, body in STUBS.items():
        nodes = json.dumps([{"name": n, "partitions": p} for n, p in json.loads(partitions).items()])
        (bin_ / name).write_text("#!/bin/sh\n" + body.format(vip=s["vip"], nft_json=nft_json, nodes=nodes, tmp=tmp_path) + "\n")
        (bin_ / name).chmod(0o755)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer():
        conn, _ = server.accept()
        conn.recv(100)
        conn.sendall(b"STAT pid 1\r\nEND\r\n")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    dump = tmp_path / "keepalived.json"
    states = [{"data": {"iname": "internal_vip_77", "state": 2}}, {"data": {"iname": "external_vip_78", "state": 1}}]
    keepalived = subprocess.Popen(["python3", "-c", "import json, signal, sys, time\n"
                                   f"signal.signal(signal.SIGUSR2, lambda *a: open({str(dump)!r}, 'w').write({json.dumps(states)!r}))\n"
                                   "print('ready', flush=True)\ntime.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert keepalived.stdout.readline().strip() == "ready"
        (tmp_path / "pid").write_text(str(keepalived.pid))
        (tmp_path / "maintenance").write_text(maintenance)
        c.update(memcached=["127.0.0.1", server.getsockname()[1]], keepalived_pid=str(tmp_path / "pid"),
                 keepalived_json=str(dump), maintenance_file=str(tmp_path / "maintenance"))
        if manifests is not None:
            from facts.backup_manifest import to_dict

            assert c["backup"], f"{name} is not the backup node"
            c["backup"][0] = str(tmp_path / "backups")
            (tmp_path / "backups").mkdir()
            for i, one in enumerate(manifests):
                text = json.dumps(to_dict(one)) if isinstance(one, Manifest) else one
                (tmp_path / "backups" / f"{i}{c['backup'][1]}").write_text(text)
        (tmp_path / "collector").write_text(re.sub(r"^C = .*$", lambda _: f"C = {c!r}", script, count=1, flags=re.M))
        out = tmp_path / "openstack_ha.prom"
        r = subprocess.run(["python3", str(tmp_path / "collector"), str(out)], capture_output=True, text=True, timeout=60,
                           env={"PATH": f"{bin_}:/usr/bin:/bin"})
        assert r.returncode == 0 and not r.stderr, r.stderr
        return out.read_text()
    finally:
        keepalived.kill()
        server.close()


def test_the_collector_writes_what_the_rules_read(tmp_path):
    s = site()
    text = run_collector(tmp_path, s)
    out = subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr + text
    values = parse(text)
    assert {name for name, _ in values} <= set(METRICS)
    assert values[("openstack_ha_vip_held", (("address", s["vip"]), ("vip", "internal")))] == 1
    assert values[("openstack_ha_vip_held", (("address", s["external_vip"]), ("vip", "external")))] == 0
    assert values[("openstack_ha_keepalived_active", ())] == 1
    assert values[("openstack_ha_keepalived_vrrp_state", (("state", "MASTER"), ("vrrp_instance", "internal_vip_77")))] == 1
    assert values[("openstack_ha_keepalived_vrrp_state", (("state", "BACKUP"), ("vrrp_instance", "external_vip_78")))] == 1
    assert values[("openstack_ha_keepalived_vrrp_state", (("state", "MASTER"), ("vrrp_instance", "external_vip_78")))] == 0
    assert values[("openstack_ha_maintenance", ())] == 1
    assert values[("openstack_ha_memcached_up", ())] == 1
    assert values[("openstack_ha_rabbitmq_partitions", ())] == 0
    assert values[("openstack_ha_firewall_drifted", ())] == 0
    assert values[("openstack_ha_tls_certificate_expiry_timestamp_seconds", (("path", s["haproxy_tls_pem_path"]),))] == \
        datetime(2027, 1, 1, tzinfo=timezone.utc).timestamp()
    # every textfile series a rule of the site reads is written (the backup's on the backup node: below)
    read = {n for names in m.rule_metrics(s).values() for n in names if n.startswith("openstack_ha_")}
    assert read - {name for name, _ in values} == {"openstack_ha_backup_last_success_timestamp_seconds"}


def test_the_collector_on_the_backup_node_writes_the_newest_good_backup_of_each_kind(tmp_path):
    """As health/metrics.py does from the same manifests (test_backup_age_is_the_newest_good_backup_of_each_kind)."""
    ms = [manifest("full", "2026-12-05T01:00:00Z"), manifest("full", "2026-12-06T01:00:00Z", status="failed"),
          manifest("full", "2026-12-04T01:00:00Z"), manifest("incremental", "2026-12-06T08:30:00Z", verified=False),
          "not JSON"]
    s = site()
    assert s["backup_enabled"] and m.collector_values(s, "node01", None)["backup"] is None  # node03 takes them
    values = parse(run_collector(tmp_path, s, name="node03", manifests=ms))
    key = "openstack_ha_backup_last_success_timestamp_seconds"
    assert values[(key, (("kind", "full"),))] == datetime(2026, 12, 5, 1, tzinfo=timezone.utc).timestamp()
    assert values[(key, (("kind", "incremental"),))] == 0


def test_the_collector_reports_faults(tmp_path):
    text = run_collector(tmp_path, site(), partitions='{"rabbit@node01": ["rabbit@node02"], "rabbit@node03": []}',
                         rules=3, maintenance="0")
    values = parse(text)
    assert values[("openstack_ha_rabbitmq_partitions", ())] == 1  # the nodes that report one
    # from the node's own management API as the monitoring account, no Erlang VM
    args = (tmp_path / "curl.args").read_text()
    assert f"-K {m.RABBITMQ_MONITOR_CURLRC}" in args and "http://10.77.0.11:15672/api/nodes?columns=name,partitions" in args
    assert values[("openstack_ha_firewall_drifted", ())] == 1
    assert values[("openstack_ha_maintenance", ())] == 0


def test_the_collector_formats_as_health_metrics_does():
    """The script's render() (a copy: the hosts have no project code) writes what health/metrics.py's does."""
    s = site()
    script = files_of(s)[m.COLLECTOR]
    namespace = {"__name__": "collector"}
    exec(compile(script, m.COLLECTOR, "exec"), namespace)
    rows = __import__("health.metrics", fromlist=["samples"]).samples(s, "node01", facts(), report(), NOW, [])
    assert namespace["render"](rows) == node_textfile(s, "node01", facts(), report(), NOW, [])
