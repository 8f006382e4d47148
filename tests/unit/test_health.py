"""The health model (health/), offline: facts in, rows out.

Facts come from captured outputs (captures/<fact>/<case>.txt through the fact's process(),
whole hosts from captures/hosts/<case>.json) or from the healthy fixture with one fact
broken. Every check must fail on a fact that is missing or in error: no row is never an answer.
The cluster-wide rows and the report's text and JSON are in test_health_cluster.py.
"""

from __future__ import annotations

import ast
from datetime import datetime, timezone
from pathlib import Path

import pytest
from healthkit import (
    FACT_OF, NAMES, api_down, capture, cluster, healthy, host_facts, lab_site, row, servers, statuses,
)

from health import checks
from health.checks import evaluate
from health.report import FAIL, INFO, OK, WARN
from health.settle import lagging
from health.tls import certificate_rows
from healthkit import F

CAPTURED_AT = datetime(2026, 11, 27, 8, 38, 51, tzinfo=timezone.utc)  # when captures/haproxy_tls/ were made

# The row each fact of a controller answers for.
ROW_OF = {
    "vip": "vip",
    "keepalived": "keepalived",
    "haproxy_info": "haproxy",
    "haproxy_servers": "haproxy backends",
    "galera": "galera",
    "rabbitmq": "rabbitmq",
    "memcached": "memcached",
    "maintenance": "maintenance",
    "firewall": "firewall",
    "haproxy_tls": "tls certificate",
    "amqp_tls": "amqp tls",
    "backup": "backup",
    "prometheus": "prometheus",
    "alertmanager": "alertmanager",
}


def site_for(key: str, name: str):
    """The lab's site, with backups taken on `name` when the key is the backups' (their row is
    the backup node's only), with monitoring on for its facts'."""
    site = lab_site()
    if key == "backup":
        site.data.update(backup_enabled=True, backup_node=name)
    if key in ("prometheus", "alertmanager"):
        site.data.update(monitoring_enabled=True)
    return site


def test_the_model_imports_no_pyinfra():
    for path in Path(checks.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] == "pyinfra" or n == "operations.verify"], path


# --- a missing or errored fact is a failed row, never no row ------------------------------------


def test_every_fact_has_its_row():
    assert set(ROW_OF) == set(FACT_OF)


@pytest.mark.parametrize("key", sorted(ROW_OF))
def test_a_missing_fact_is_a_failed_row_naming_it(key):
    site = site_for(key, "node02")
    results = healthy(site)
    del results["node02"][key]
    report = evaluate(site, results)
    failed = row(report, "node02", ROW_OF[key])
    assert (failed.status, failed.detail) == (FAIL, f"fact '{key}' not collected")
    assert f"{ROW_OF[key]}: fact '{key}' not collected" in report.host_failures("node02")
    assert not report.ok
    # The other controllers are judged as usual.
    assert report.host_failures("node01") == [] and report.host_failures("node03") == []


@pytest.mark.parametrize("key", sorted(ROW_OF))
def test_a_fact_that_is_not_a_result_is_a_failed_row(key):
    site = site_for(key, "node03")
    results = healthy(site)
    results["node03"][key] = None
    assert row(evaluate(site, results), "node03", ROW_OF[key]).status == FAIL


@pytest.mark.parametrize("rule, key", [
    (lambda f: checks.vip_rows(lab_site(), f), "vip"),
    (lambda f: checks.keepalived_rows(lab_site(), f), "keepalived"),
    (lambda f: checks.haproxy_rows(lab_site(), "node01", True, f), "haproxy_info"),
    (lambda f: checks.galera_rows(f, list(NAMES)), "galera"),
    (lambda f: checks.rabbitmq_rows(f, list(NAMES), []), "rabbitmq"),
    (lambda f: checks.memcached_rows(f), "memcached"),
    (lambda f: certificate_rows(lab_site(), f, CAPTURED_AT), "haproxy_tls"),
])
def test_each_rule_alone_fails_without_its_fact(rule, key):
    (only,) = rule({"collect_sec": 0.5})
    assert (only.name, only.status, only.detail) == (ROW_OF[key], FAIL, f"fact '{key}' not collected")


def test_a_host_with_no_fact_at_all_fails_every_check():
    site = lab_site()
    results = healthy(site)
    results["node02"] = {"collect_sec": 0.1}
    report = evaluate(site, results)
    assert statuses(report, "node02") == {"maintenance": FAIL, "vip": FAIL, "keepalived": FAIL, "haproxy": FAIL,
                                          "tls certificate": FAIL, "galera": FAIL, "rabbitmq": FAIL, "amqp tls": FAIL,
                                          "memcached": FAIL, "firewall": FAIL}
    for name in ("vip holder", "galera", "rabbitmq", "memcached"):
        assert "node02" in cluster(report, name).hosts, name
    # No facts at all: the controller was not verified.
    results["node02"] = {}
    assert statuses(evaluate(site, results), "node02") == {"reachable": FAIL}


@pytest.mark.parametrize("key, case", [
    ("vip", "no_device"),
    ("haproxy_info", "no_socket"),
    ("haproxy_info", "refused"),
    ("haproxy_info", "unknown_command"),
    ("haproxy_servers", "refused"),
    ("rabbitmq", "refused"),  # broker down, or its app not running: the management listener is gone
    ("rabbitmq", "unauthorized"),
    ("rabbitmq", "no_login_file"),
    ("memcached", "refused"),
    ("haproxy_tls", "missing"),
    ("haproxy_tls", "not_pem"),
])
def test_a_captured_failure_is_its_row_with_the_fact_error(key, case):
    site = lab_site()
    results = healthy(site)
    fact = capture(key, case)
    results["node02"][key] = fact
    failed = row(evaluate(site, results), "node02", ROW_OF[key])
    assert failed.status == FAIL and failed.detail.endswith(fact["error"])


@pytest.mark.parametrize(
    "key, fact",
    [
        ("haproxy_info", F.HaproxyInfo.default()),
        ("haproxy_servers", F.HaproxyServers.default()),
        ("galera", F.GaleraNode.default()),
        ("rabbitmq", F.RabbitmqMembers.default()),
        ("memcached", F.MemcachedStats().process(["__missing=bash"])),
        ("vip", capture("vip", "no_device")),
        ("keepalived", F.KeepalivedState.default()),
        ("haproxy_tls", F.HaproxyCertificate.default()),
        ("haproxy_tls", F.HaproxyCertificate().process(["__missing=openssl"])),
    ],
)
def test_missing_tool_or_no_output_fails_the_host(key, fact):
    site = lab_site()
    results = healthy(site)
    results["node02"][key] = fact
    report = evaluate(site, results)
    assert not report.ok
    assert report.host_failures("node02"), key
    assert fact["error"] in " ".join(report.host_failures("node02"))


# --- from captured hosts -------------------------------------------------------------------------


def test_report_from_real_outputs_end_to_end():
    # The captured outputs through process() and evaluate(): mariadb node03 DOWN fails node01.
    site = lab_site()
    results = {n: host_facts("captured_holder" if n == "node01" else "captured_standby") for n in NAMES}
    report = evaluate(site, results)
    assert report.vip_holders == ["node01"]
    assert cluster(report, "galera").status == OK and cluster(report, "rabbitmq").status == OK
    assert cluster(report, "vip holder").detail == "node01 holds 10.77.0.100"
    assert statuses(report, "node01")["keepalived"] == OK and row(report, "node02", "keepalived").detail == "VRRP BACKUP"
    assert row(report, "node01", "haproxy").detail == "HAProxy 2.6.12-1+deb12u4 up 4s"
    assert row(report, "node01", "memcached").detail == "1.6.18 up 5120s, 2 connections"
    # The captured HAProxy has only two listeners: the others are missing, mariadb node03 DOWN.
    reasons = report.host_failures("node01")
    assert any("backend mariadb" in r and "node03 DOWN (backup)" in r for r in reasons)
    assert any("backend nova_api: listener missing" in r for r in reasons)
    assert row(report, "node01", "backend mariadb").detail == (
        "node01 UP, node02 UP (backup), node03 DOWN (backup) - must all be UP on the VIP holder "
        "(node03: Layer4 connection problem: Connection refused)")
    assert "health: FAILED" in report.render()


def test_lab_captures_of_a_healthy_cluster():
    # Outputs captured on the lab (node01 the VIP holder); its HAProxy servers as deployed.
    site = lab_site()
    results = {n: host_facts("lab_node01") for n in NAMES}
    for n in NAMES:
        results[n]["haproxy_servers"] = servers(site, down=api_down(site))
    for n in ("node02", "node03"):
        results[n]["vip"] = {**results[n]["vip"], "holds_vip": False}
        results[n]["keepalived"] = capture("keepalived", "backup")
    report = evaluate(site, results, now=CAPTURED_AT)
    assert report.ok, report.failures()
    assert row(report, "node01", "tls certificate").detail == "expires 2029-03-01 08:38 UTC (825 days)"
    assert row(report, "node01", "vip").detail == "holds 10.77.0.100 on enp8s0f0"
    assert row(report, "node02", "galera").detail == "size 3, Primary, Synced"
    assert row(report, "node02", "rabbitmq").detail == "running rabbit@node01, rabbit@node02, rabbit@node03"
    assert cluster(report, "galera").detail == "3 nodes, Primary, all Synced, size 3"
    # The lab's galera capture is one Primary component of the three controllers.
    assert "split brain" not in cluster(report, "galera").detail


def test_haproxy_with_the_package_default_config_fails_in_one_row():
    site = lab_site()
    results = healthy(site)
    results["node01"]["haproxy_servers"] = capture("haproxy_servers", "default_config")
    assert evaluate(site, results).host_failures("node01") == [
        "haproxy backends: none of the site's 15 listeners runs in this HAProxy "
        "(the package's default config, or the deployed one not loaded)"
    ]


# --- keepalived --------------------------------------------------------------------------------


@pytest.mark.parametrize("node, keepalived, expected", [
    ("node02", {"active": "inactive", "vrrp_state": None, "error": None}, "keepalived inactive: this node cannot hold the VIP"),
    ("node02", {"active": "active", "vrrp_state": "FAULT", "error": None}, "VRRP FAULT: check_alive fails"),
    ("node02", {"active": "active", "vrrp_state": "STOP", "error": None}, "VRRP STOP"),
    ("node03", {"active": None, "vrrp_state": None, "error": "no answer from the host"}, "no answer from the host"),
])
def test_keepalived_that_cannot_take_the_vip_fails_that_node(node, keepalived, expected):
    site = lab_site()
    results = healthy(site)
    results[node]["keepalived"] = keepalived
    report = evaluate(site, results)
    assert statuses(report, node)["keepalived"] == FAIL
    (failure,) = report.host_failures(node)
    assert failure.startswith(f"keepalived: {expected}"), failure
    assert not report.ok


def test_keepalived_fault_names_the_rise_time():
    site = lab_site()
    results = healthy(site)
    results["node03"]["keepalived"]["vrrp_state"] = "FAULT"
    (failure,) = evaluate(site, results).host_failures("node03")
    assert "10 times in a row (20 s)" in failure  # rise 10 x interval 2 s, the article's values


# --- HAProxy's listeners -------------------------------------------------------------------------


def test_healthy_cluster_passes_with_api_backends_informational():
    site = lab_site()
    report = evaluate(site, healthy(site))
    assert report.ok, report.failures()
    assert report.vip_holders == ["node01"]
    st = statuses(report, "node02")
    assert st["backend mariadb"] == OK and st["backend rabbitmq_management"] == OK
    apis = row(report, "node02", "backends (APIs)")
    assert apis.status == INFO
    assert apis.detail.startswith("every server DOWN (OpenStack APIs not installed by this project) on 13 listeners: ")
    assert "keystone_internal" in apis.detail and "mariadb" not in apis.detail
    # An API listener with some servers UP gets its own row, still informational.
    results = healthy(site)
    results["node02"]["haproxy_servers"] = servers(site, down=api_down(site) - {("nova_api", "node01")})
    nova = row(evaluate(site, results), "node02", "backend nova_api")
    assert (nova.status, nova.detail) == (INFO, "node01 UP, node02 DOWN, node03 DOWN (an OpenStack API: not installed by this project)")
    assert "node02 UP (backup)" in row(report, "node01", "backend mariadb").detail
    # One API listener left with every server DOWN: "1 listener", not "listeners".
    results["node02"]["haproxy_servers"] = servers(site, down={("nova_api", n) for n in ("node01", "node02", "node03")})
    assert row(evaluate(site, results), "node02", "backends (APIs)").detail.endswith("on 1 listener: nova_api")
    results["node02"]["haproxy_servers"] = servers(site, down={(l, n) for l in ("nova_api", "heat_api")
                                                                for n in ("node01", "node02", "node03")})
    assert row(evaluate(site, results), "node02", "backends (APIs)").detail.endswith("on 2 listeners: nova_api, heat_api")
    assert cluster(report, "vip holder").detail == "node01 holds 10.77.0.100"
    assert [c.name for c in report.hosts["node01"]][:3] == ["vip", "keepalived", "haproxy"]


def test_critical_backends_must_be_up_api_backends_need_not():
    site = lab_site()
    results = healthy(site)
    results["node01"]["haproxy_servers"] = servers(site, down=api_down(site) | {("mariadb", "node03")})
    results["node01"]["haproxy_servers"]["listeners"]["mariadb"]["node03"]["check"] = "Layer7 wrong status"
    report = evaluate(site, results)
    reasons = report.host_failures("node01")
    assert len(reasons) == 1
    assert reasons[0].startswith("backend mariadb: node01 UP, node02 UP (backup), node03 DOWN (backup)")
    assert "VIP holder" in reasons[0] and "node03: Layer7 wrong status" in reasons[0]
    # On a standby a DOWN rabbitmq_management server fails too: it carries traffic after failover.
    results["node02"]["haproxy_servers"] = servers(site, down=api_down(site) | {("rabbitmq_management", "node01")})
    assert "standby" in evaluate(site, results).host_failures("node02")[0]


def test_transitional_or_maintenance_states_of_critical_backends_fail():
    site = lab_site()
    for state in ("UP 1/3", "DOWN 1/2", "MAINT", "no check"):
        results = healthy(site)
        results["node01"]["haproxy_servers"] = servers(site, down=api_down(site), status={("mariadb", "node02"): state})
        assert evaluate(site, results).host_failures("node01"), state


def test_listener_missing_from_running_haproxy_fails():
    site = lab_site()
    results = healthy(site)
    del results["node02"]["haproxy_servers"]["listeners"]["glance_api"]
    del results["node02"]["haproxy_servers"]["listeners"]["mariadb"]["node03"]
    reasons = evaluate(site, results).host_failures("node02")
    assert any(r.startswith("backend glance_api: listener missing") for r in reasons)
    assert any("no server line for node03" in r for r in reasons)


def test_a_listener_the_catalogue_does_not_know_is_informational():
    site = lab_site()
    results = healthy(site)
    results["node02"]["haproxy_servers"]["listeners"]["legacy"] = {"node01": {"status": "UP", "backup": True}}
    report = evaluate(site, results)
    extra = row(report, "node02", "backend legacy")
    assert (extra.status, extra.detail) == (INFO, "not in the site's catalogue: node01 UP (backup)")
    assert report.ok


def test_controllers_missing_from_every_listener_fail_in_one_row():
    # Seen on the lab: node04 and node05 added to the inventory, HAProxy still on the old config.
    from config.site import build_site

    names5 = NAMES + ("node04", "node05")
    site5 = build_site(
        [(n, {"address": f"10.77.0.{11 + i}", "vrrp_priority": 150 - 10 * i}) for i, n in enumerate(names5)],
        {"internal_network": "10.77.0.0/24", "vip": "10.77.0.100", "vip_interface": "enp8s0f0"},
    )
    site3 = lab_site()
    results = healthy(site3)
    report = evaluate(site5, {"node01": results["node01"]})
    rows = {c.name: c for c in report.hosts["node01"]}
    assert rows["haproxy servers"].status == FAIL
    assert rows["haproxy servers"].detail.startswith("no server line for node04, node05 in any listener")
    assert rows["backend mariadb"].status == OK  # the servers it has are judged as usual
    assert rows["backends (APIs)"].status == INFO
    assert not any("no server line" in c.detail for c in report.hosts["node01"] if c.name.startswith("backend"))


def test_lagging_critical_servers():
    site = lab_site()
    results = healthy(site)
    assert lagging("node01", results) == []
    # API listeners rising or falling do not matter; critical ones do.
    results["node01"]["haproxy_servers"] = servers(site, status={("nova_api", "node01"): "UP 1/5"})
    assert lagging("node01", results) == []
    results["node01"]["haproxy_servers"] = servers(site, status={("mariadb", "node02"): "UP 1/5"})
    assert lagging("node01", results) == ["mariadb/node02 UP 1/5"]
    # DOWN while node02 reports Galera Synced: HAProxy has not caught up yet (seen on the lab).
    results["node01"]["haproxy_servers"] = servers(site, status={("mariadb", "node02"): "DOWN"})
    assert lagging("node01", results) == ["mariadb/node02 DOWN"]
    results["node02"]["galera"]["wsrep_ready"] = "OFF"
    assert lagging("node01", results) == []  # not ready: nothing to wait for
    results["node02"]["galera"]["wsrep_ready"] = "ON"
    results["node02"]["galera"]["wsrep_local_state_comment"] = "Joined"
    assert lagging("node01", results) == []  # really down: nothing to wait for
    del results["node02"]["galera"]
    assert lagging("node01", results) == []  # nothing known: nothing to wait for
    results["node01"]["haproxy_servers"] = servers(site, status={("rabbitmq_management", "node03"): "DOWN"})
    assert lagging("node01", results) == ["rabbitmq_management/node03 DOWN"]
    results["node03"]["rabbitmq"]["running_nodes"] = ["rabbit@node01", "rabbit@node02"]
    assert lagging("node01", results) == []
    results["node01"]["haproxy_servers"] = servers(site, status={("mariadb", "node02"): "MAINT"})
    assert lagging("node01", results) == []
    results["node01"]["haproxy_servers"] = F.HaproxyServers.default()
    assert lagging("node01", results) == []


# --- edges: one VRRP instance or two, each VIP on its own interface ---------------------------


@pytest.mark.parametrize("states, status, detail", [
    ({}, OK, "VRRP MASTER"),  # one instance: its state, no list
    ({"VI_1": "MASTER"}, OK, "VRRP MASTER"),
    ({"VI_1": "MASTER", "VI_2": "BACKUP"}, OK, "VRRP MASTER (VI_1 MASTER, VI_2 BACKUP)"),
    ({"VI_1": "MASTER", "VI_2": "FAULT"}, FAIL, "VRRP FAULT (VI_1 MASTER, VI_2 FAULT)"),
    ({"VI_1": "STOP", "VI_2": "INIT"}, FAIL, "VRRP STOP (VI_1 STOP, VI_2 INIT)"),  # the first bad one decides
    ({"VI_1": "BACKUP", "VI_2": "INIT"}, FAIL, "VRRP INIT (VI_1 BACKUP, VI_2 INIT)"),
])
def test_keepalived_with_one_or_two_vrrp_instances(states, status, detail):
    facts = {"keepalived": {"active": "active", "vrrp_state": "MASTER", "vrrp_states": states}}
    (only,) = checks.keepalived_rows(lab_site(), facts)
    assert (only.status, only.detail.split(": check_alive")[0]) == (status, detail)


def test_each_vip_row_names_its_own_interface():
    site = lab_site()
    site.data.update(external_vip="192.0.2.10", external_vip_interface="enp9s0")
    facts = {"vip": {"holds_vip": True}, "external_vip": {"holds_vip": True}}
    assert checks.vip_rows(site, facts)[0].detail == "holds 10.77.0.100 on enp8s0f0"
    assert checks.vip_rows(site, facts, "external_vip")[0].detail == "holds 192.0.2.10 on enp9s0"


def test_a_cluster_of_one_node_says_node_not_nodes():
    site = lab_site()
    results = healthy(site)
    one = results["node01"]
    one["galera"] = {**one["galera"], "wsrep_cluster_size": "1", "wsrep_incoming_addresses": "10.77.0.11:3306"}
    assert cluster(evaluate(site, {"node01": one}), "galera").detail == "1 node, Primary, all Synced, size 1"


def test_an_enabled_mariadb_socket_warns_on_a_serving_node():
    # After an upgrade made by hand, mariadb.socket would take 3306 at the next boot: the report says so.
    site = lab_site()
    results = healthy(site)
    results["node02"]["galera"]["sockets"] = "enabled"
    report = evaluate(site, results)
    got = row(report, "node02", "galera")
    assert got.status == WARN and "mariadb.socket" in got.detail and "deploy again" in got.detail
    assert row(report, "node01", "galera").status == OK
    results["node02"]["galera"]["sockets"] = "disabled"
    assert row(evaluate(site, results), "node02", "galera").status == OK
