"""Preflight on the kinds of wrong input a second set of wrong sites showed accepted (issue
24, item 5): each refused (or warned where it can be right), naming host, key, value and fix."""

from __future__ import annotations

import json
import os

import pytest

from test_preflight import G, cli, find, hosts_with, only, run
from unitkit import FAKE_SECRETS, prod_data, write_inventory
from config.preflight import check
from config.site import load_groups

# --- groups besides controllers --------------------------------------------------------------


def test_a_group_of_other_hosts_is_refused_as_hosts_deploy_py_would_run_on():
    hosts, group = prod_data()
    report = check(hosts, group, dict(FAKE_SECRETS), others={"web": ([("web01", {}), ("node01", hosts[0][1])], {})})
    p = only(report, "error", "web", "hosts")
    assert "'web01'" in p.message and "node01" not in p.message and "deploy.py would run on them" in p.message


def test_the_data_of_another_group_is_refused_as_ignored():
    hosts, group = prod_data()
    report = check(hosts, group, dict(FAKE_SECRETS), others={"lb": ([], {"vip": "100.2.30.99"})})
    p = only(report, "error", "lb", "group data")
    assert "'vip'" in p.message and "ignored" in p.message and "controllers" in p.fix


def test_a_controller_listed_in_two_groups_with_different_data_is_refused():
    hosts, group = prod_data()
    other = {**hosts[1][1], "address": "100.2.30.52"}
    report = check(hosts, group, dict(FAKE_SECRETS), others={"db": ([("node02", other)], {})})
    p = only(report, "error", "node02", "address")
    assert "'100.2.30.42' in `controllers`" in p.message and "'100.2.30.52' in group 'db'" in p.message


def test_a_group_of_controllers_with_the_same_data_only_warns():
    hosts, group = prod_data()
    report = check(hosts, group, dict(FAKE_SECRETS), others={"first": ([hosts[0]], {})})
    only(report, "warning", "first", "group")


def test_load_groups_reads_the_groups_pyinfra_reads_and_the_cli_refuses_them(tmp_path):
    hosts, group = prod_data()
    path = write_inventory(tmp_path, hosts, group)
    path.write_text(path.read_text() + "extra = ['web01']\nlb = ([('node01', {'address': '100.2.30.9'})], {'vip': 'x'})\n"
                    "_private = ['ignored']\nNOT_A_GROUP = 3\n")
    _, _, others = load_groups(path)
    assert others == {"extra": ([("web01", {})], {}), "lb": ([("node01", {"address": "100.2.30.9"})], {"vip": "x"})}
    proc = cli("-m", "config.preflight", str(path))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert "error: extra: hosts: 'web01' are not in `controllers`" in proc.stderr
    assert any(line.startswith("error: lb: group data: 'vip'") for line in lines), lines
    assert any(line.startswith("error: node01: address: '100.2.30.41' in `controllers`, '100.2.30.9'") for line in lines), lines


# --- networks, timers -------------------------------------------------------------------------


@pytest.mark.parametrize("key, value", [
    ("internal_network", "100.2.30.0/255.255.255.0"),
    ("external_network", "100.2.31.0/255.255.255.0"),
])
def test_a_network_in_netmask_form_is_refused_with_the_prefix_to_write(key, value):
    changes = {key: value} if key == "internal_network" else {key: value, "external_vip": "100.2.31.40",
                                                               "keepalived_external_router_id": 122}
    p = find(run(**changes).problems, "error", G, key)
    assert "netmask" in p.message and value.replace("255.255.255.0", "24") in p.message


def test_a_client_network_in_netmask_form_is_refused():
    p = only(run(firewall_client_networks=["192.0.2.0/255.255.255.0"]), "error", G, "firewall_client_networks")
    assert "192.0.2.0/24" in p.message


@pytest.mark.parametrize("changes, key", [
    ({"haproxy_timeouts": {"server": "25d"}}, "haproxy_timeouts.server"),
    ({"haproxy_timeouts": {"tunnel": "596524h"}}, "haproxy_timeouts.tunnel"),
    ({"haproxy_check_inter": 2**31}, "haproxy_check_inter"),
    ({"mariadb_check_timeout": "2147483648ms"}, "mariadb_check_timeout"),
])
def test_a_timer_above_haproxys_limit_is_refused(changes, key):
    p = only(run(**changes), "error", G, key)
    assert "2147483647 ms" in p.message


@pytest.mark.parametrize("changes", [{"haproxy_timeouts": {"server": "24d"}}, {"haproxy_check_inter": 2**31 - 1},
                                     {"mariadb_check_timeout": "2147483647ms"}])
def test_a_timer_at_haproxys_limit_passes(changes):
    assert run(**changes).errors == []


# --- secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value, says", [
    (1234.5, "a number"), (12345678, "a number"), (True, "true or false"), (["pw"], "an array"),
])
def test_a_secret_that_is_not_a_json_string_is_refused_without_its_value(tmp_path, monkeypatch, value, says):
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({**FAKE_SECRETS, "rabbitmq_password": value}))
    os.chmod(path, 0o600)
    monkeypatch.setenv("HA_SECRETS_FILE", str(path))
    hosts, group = prod_data()
    p = only(check(hosts, group), "error", G, "rabbitmq_password")
    assert says in p.message and "not a JSON string" in p.message and "double quotes" in p.fix
    assert str(value) not in str(p) or says == "true or false"


@pytest.mark.parametrize("name, value, level", [
    ("rabbitmq_password", "   ", "error"),
    ("rabbitmq_password", " fake-rabbit-Tt90c", "error"),
    ("rabbitmq_admin_password", "fake-rabbitadmin-Qw41d\t", "error"),
    ("rabbitmq_monitor_password", " fake-rabbitmon-Lm63v", "error"),
    # read back as they are (test_syntax.py): right, if meant
    ("mariadb_admin_password", "fake-admin-Kp27w\u00a0", "warning"),
    ("haproxy_stats_password", "fake-stats ", "warning"),
    ("mariadb_sst_password", "    ", "warning"),
])
def test_a_secret_with_whitespace_around_is_refused_where_a_tool_trims_it(name, value, level):
    p = only(run(secrets={**FAKE_SECRETS, name: value}), level, G, name)
    assert "leading or trailing whitespace" in p.message and (not value.strip() or value.strip() not in str(p))


def test_an_empty_secret_in_the_file_is_refused_as_blank(tmp_path, monkeypatch):
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({**FAKE_SECRETS, "vrrp_auth_pass": ""}))
    os.chmod(path, 0o600)
    monkeypatch.setenv("HA_SECRETS_FILE", str(path))
    hosts, group = prod_data()
    assert "blank" in only(check(hosts, group), "error", G, "vrrp_auth_pass").message


# --- names, strings, SSH ---------------------------------------------------------------------


@pytest.mark.parametrize("name, says", [("123", "all digits"), ("localhost", "name for itself")])
def test_a_host_name_that_is_all_digits_or_localhost_is_refused(name, says):
    hosts, _ = prod_data()
    hosts[1] = (name, hosts[1][1])
    p = only(run(hosts=hosts), "error", name, "name")
    assert says in p.message


@pytest.mark.parametrize("where, key, value", [
    ("node01", "ssh_hostname", ["100.2.30.41"]),
    ("node01", "ssh_hostname", {"host": "100.2.30.41"}),
    ("node01", "address", ["100.2.30.41"]),
    (G, "vip", ["100.2.30.40"]),
    (G, "vip_interface", ["enp8s0f0"]),
])
def test_a_list_where_a_string_is_expected_is_refused_not_a_traceback(where, key, value):
    report = run(hosts=hosts_with(0, **{key: value})) if where != G else run(**{key: value})
    p = find(report.errors, "error", where, key)
    assert "not a string" in p.message or "not an IP address" in p.message or "is not" in p.message


def test_a_host_name_that_is_not_a_string_is_refused_not_a_traceback():
    hosts, _ = prod_data()
    hosts[0] = (["node01"], hosts[0][1])
    assert find(run(hosts=hosts).errors, "error", "['node01']", "name")


@pytest.mark.parametrize("key, address", [("vip", "100.2.30.40"), ("external_vip", "100.2.30.50")])
def test_an_ssh_address_that_is_a_vip_is_refused(key, address):
    report = run(hosts=hosts_with(1, ssh_hostname=address), external_vip="100.2.30.50",
                 keepalived_external_router_id=122)
    p = find(report.errors, "error", "node02", "ssh_hostname")
    assert "VIP" in p.message and "100.2.30.42" in p.fix


@pytest.mark.parametrize("where", ["node02", G])
def test_an_unknown_ssh_key_is_refused_with_the_key_meant(where):
    report = run(hosts=hosts_with(1, ssh_hostame="100.2.30.42")) if where != G else run(ssh_usr="root")
    p = only(report, "error", where, "ssh_hostame" if where != G else "ssh_usr")
    assert "did you mean ssh_hostname" in p.fix or "did you mean ssh_user" in p.fix


def test_the_ssh_keys_pyinfra_reads_pass():
    assert run(hosts=hosts_with(0, ssh_port=2222, ssh_key="/root/.ssh/id_ed25519"), ssh_connect_retries=2).problems == []


def test_a_sysctl_name_this_kernel_lacks_warns_with_the_name_meant():
    assert os.path.isdir("/proc/sys/net/ipv4"), "this test reads the kernel's /proc/sys (a Linux host)"
    p = only(run(sysctl={"net.ipv4.tcp_retires2": 8}), "warning", G, "sysctl.net.ipv4.tcp_retires2")
    assert "did you mean net.ipv4.tcp_retries2" in p.fix
    assert run(sysctl={"net.ipv4.tcp_syn_retries": 4}).problems == []


# --- values shown escaped ----------------------------------------------------------------


def lines_of(report, where, key):
    return [str(p) for p in report.problems if p.where == where and p.key == key]


def test_a_homoglyph_is_shown_escaped():
    cyrillic_i = "\u0456"
    [line] = lines_of(run(**{f"v{cyrillic_i}p": "100.2.30.40"}), G, f"v{cyrillic_i}p")
    assert line.startswith("error: controllers: 'v\\u0456p': unknown key") and line.isascii()
    hosts, _ = prod_data()
    hosts[2] = (f"node0{cyrillic_i}", hosts[2][1])
    [line] = lines_of(run(hosts=hosts), f"node0{cyrillic_i}", "name")
    assert line.startswith("error: 'node0\\u0456': name: 'node0\\u0456' is not") and line.isascii()
    p = find(run(vip_interface="enp8s0f0\u200b").errors, "error", G, "vip_interface")
    assert "'enp8s0f0\\u200b'" in str(p)
