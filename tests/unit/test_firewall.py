"""The host firewall as data (config/firewall.py), its rules file checked by the real `nft -c`,
its fact, its report row, the --limit refusal, and the names the bound cluster ports need."""

from __future__ import annotations

import subprocess

import pytest

from config.firewall import rule_count, rules
from config.files import FIREWALL_NFT, expected_rules, managed_files
from config.preflight import check
from config.site import build_site
from facts.firewall import FirewallState
from health.checks import firewall_rows
from health.report import FAIL, OK
from healthkit import capture, capture_text, lab_site, lines
from operations.firewall import left_out_refusal
from operations.host import loopback_name
from unitkit import FAKE_SECRETS, lab_data


def site_with(**data):
    hosts, group = lab_data()
    return build_site(hosts, {**group, **data})


def nft_of(site, node="node01") -> str:
    return next(f.content for f in managed_files(site, node, FAKE_SECRETS) if f.path == FIREWALL_NFT)


def test_cluster_ports_are_for_the_controllers_listeners_for_the_clients():
    site = site_with()
    fw = rules(site)
    addresses = [c.address for c in site.controllers]
    assert list(fw.controllers) == [*addresses, site["vip"]]
    assert fw.clients == (site["internal_network"],)
    # Galera, IST, SST, epmd, the Erlang distribution, the database check, memcached, the node's MariaDB
    assert {4567, 4568, 4444, 4369, 25672, 9200, 11211, 3306} <= set(fw.cluster_ports)
    assert {5000, 443, 80, 3306, 15672} <= set(fw.vip_ports)
    assert fw.client_ports == (site["rabbitmq_port"],)
    assert not set(fw.client_ports) & set(fw.cluster_ports)
    # the operators' ports (issue 24): the stats page and the RabbitMQ management listener,
    # for admin_networks (none by default: the controllers only)
    assert fw.admin_ports == (site["haproxy_stats_port"],) and fw.admins == tuple(site["admin_networks"] or ())
    assert fw.admin_vip_ports == (site["rabbitmq_management_port"],)
    assert not set(fw.admin_ports) & (set(fw.cluster_ports) | set(fw.client_ports))
    # the lab's external VIP: its public listeners only (no database, management, metadata)
    assert fw.external_vips == (site["external_vip"],)
    assert {443, 80, 5000} <= set(fw.external_ports)
    assert not {3306, 15672, 8775} & set(fw.external_ports)
    assert rules(site_with(external_vip=None)).external_vips == ()


def test_client_networks_and_ports_follow_the_data():
    fw = rules(site_with(firewall_client_networks=["192.0.2.0/24", "198.51.100.7/32"], memcached_port=11311,
                         rabbitmq_port=5673, mariadb_check_method="mysql-check", mariadb_check_port=3306))
    assert fw.clients == ("192.0.2.0/24", "198.51.100.7/32")
    assert 11311 in fw.cluster_ports and 11211 not in fw.cluster_ports
    assert 25673 in fw.cluster_ports and 5673 in fw.client_ports
    assert 9200 not in fw.cluster_ports  # no HTTP check service with mysql-check


def test_the_rules_pass_the_real_nft_check(tmp_path):
    for site in (site_with(), site_with(firewall_client_networks=["192.0.2.0/24", "198.51.100.7/32"])):
        path = tmp_path / "fw.nft"
        path.write_text(nft_of(site))
        r = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_a_broken_rule_fails_the_nft_check(tmp_path):
    path = tmp_path / "fw.nft"
    path.write_text(nft_of(site_with()).replace("ip saddr != @controllers drop", "ip saddr != @nosuchset drop"))
    r = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
    assert r.returncode != 0


def test_the_file_touches_only_the_projects_table():
    text = nft_of(site_with())
    assert "flush ruleset" not in text
    tables = {line.split("{")[0].strip() for line in text.splitlines() if line.startswith(("table", "delete table"))}
    assert tables == {"table inet openstack_ha", "delete table inet openstack_ha"}
    assert "policy accept;" in text and "ct state established,related accept" in text


def test_no_firewall_files_when_the_site_turns_it_off():
    paths = {f.path for f in managed_files(site_with(firewall=False), "node01", FAKE_SECRETS)}
    assert FIREWALL_NFT not in paths and not any("openstack-ha-firewall" in p for p in paths)


@pytest.mark.parametrize("value", [["10.0.0.0/33"], ["fd00::/64"], "10.0.0.0/8", [7]])
def test_a_bad_client_network_is_refused_naming_the_key(value):
    hosts, group = lab_data()
    report = check(hosts, {**group, "firewall_client_networks": value}, secrets=FAKE_SECRETS)
    assert [p.key for p in report.errors] == ["firewall_client_networks"], report.errors


def test_fact_reads_the_loaded_set_absent_table_and_missing_nft():
    loaded = capture("firewall", "loaded")
    assert loaded == {"loaded": True, "controllers": sorted(["10.77.0.11", "10.77.0.12", "10.77.0.13", "10.77.0.100"]),
                      "rules": expected_rules(lab_site()), "error": None}
    assert capture("firewall", "absent") == {"loaded": False, "controllers": [], "rules": None, "error": None}
    assert FirewallState().process(["__missing=nft"])["loaded"] is False
    cut = FirewallState().process(lines(capture_text("firewall", "loaded").replace("__rc=0", "__rc=124")))
    assert cut["error"] and cut["loaded"] is None


def test_report_row_fails_an_unloaded_or_different_table():
    site = site_with()
    fw = rules(site)
    good = {"firewall": {"loaded": True, "controllers": list(fw.controllers), "error": None}}
    assert [c.status for c in firewall_rows(site, good)] == [OK]
    unloaded = firewall_rows(site, {"firewall": {"loaded": False, "controllers": [], "error": None}})
    assert unloaded[0].status == FAIL and "not loaded" in unloaded[0].detail
    stale = firewall_rows(site, {"firewall": {"loaded": True, "controllers": list(fw.controllers[1:]) + ["10.77.0.99"],
                                              "error": None}})
    assert stale[0].status == FAIL
    assert "admits 10.77.0.99" in stale[0].detail and f"does not admit {fw.controllers[0]}" in stale[0].detail
    assert firewall_rows(site_with(firewall=False), {}) == []


def test_limit_refused_when_a_left_out_table_does_not_admit_a_controller_of_the_run():
    states = {"node01": {"loaded": True, "controllers": ["10.0.0.1", "10.0.0.2"]},
              "node02": {"loaded": False, "controllers": []}, "node03": None}
    why = left_out_refusal(states, ["node01", "node02", "node03"], {"node04": "10.0.0.4"})
    assert why.startswith("node01 (left out by --limit) has a firewall that does not admit node04")
    assert "--limit node01,node04" in why
    # admitted already, or no table there: no refusal
    assert left_out_refusal(states, ["node01"], {"node02": "10.0.0.2"}) is None
    assert left_out_refusal(states, ["node02"], {"node04": "10.0.0.4"}) is None


def test_limit_with_an_unread_left_out_table_refused_only_for_a_new_controller():
    states = {"node01": {"loaded": True, "controllers": ["10.0.0.1", "10.0.0.2"]},
              "node02": {"loaded": True, "controllers": ["10.0.0.1", "10.0.0.2"]}, "node03": None}
    # node02 is admitted by every table read: node03's (unread) admitted it too at the last full run
    assert left_out_refusal(states, ["node01", "node03"], {"node02": "10.0.0.2"}) is None
    # node04 is new (no table of its own, not in the tables read): node03 may drop it
    why = left_out_refusal({**states, "node04": {"loaded": False, "controllers": []}}, ["node03"],
                           {"node04": "10.0.0.4", "node01": "10.0.0.1", "node02": "10.0.0.2"})
    assert why.startswith("node03 (left out by --limit) could not be read, and node04 may be new")


@pytest.mark.parametrize("line, found", [
    ("127.0.1.1 node01.example.com node01", True),
    ("127.0.1.1\tnode01", True),
    ("127.0.1.1 node011", False),
    ("127.0.0.1 localhost node01", False),
    ("# 127.0.1.1 node01", False),
    ("10.0.0.1 node01", False),
])
def test_debians_loopback_name_line_is_found(line, found):
    assert loopback_name(line, "node01") is found


def test_the_controllers_always_reach_the_vip_and_amqp_whatever_the_client_networks():
    """The OpenStack services on the controllers are the VIP's and the brokers' clients: a
    site whose client networks leave the internal network out (its compute network only) must
    not cut them off. Overlapping client networks are merged, not refused by nft -c."""
    site = site_with(firewall_client_networks=["192.0.2.0/24"])
    client_drops = [line.strip() for line in nft_of(site).splitlines() if "ip saddr != @clients" in line]
    assert len(client_drops) == 2
    assert all("ip saddr != @controllers drop" in line for line in client_drops), client_drops


def test_overlapping_client_networks_pass_the_real_nft_check(tmp_path):
    path = tmp_path / "fw.nft"
    path.write_text(nft_of(site_with(firewall_client_networks=["10.0.0.0/8", "10.77.0.0/24", "10.77.0.5/32"])))
    r = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_the_fact_keeps_no_file_of_its_own():
    """No fixed path in /tmp that another local user could hold first (or a second run share)."""
    assert "/tmp" not in FirewallState().command()


def test_limit_refusal_names_every_left_out_controller_that_would_drop():
    states = {"node01": {"loaded": True, "controllers": ["10.0.0.1"]},
              "node02": {"loaded": True, "controllers": ["10.0.0.2"]}}
    why = left_out_refusal(states, ["node01", "node02"], {"node04": "10.0.0.4"})
    assert "node01 (left out by --limit)" in why and "node02 (left out by --limit)" in why
    assert "--limit node01,node02,node04" in why  # one run that takes them all in


def test_an_ipv6_site_with_the_firewall_is_refused_before_any_host():
    """The rules are IPv4 (sets of ipv4_addr, `ip saddr`): nft -c refuses them for IPv6
    addresses on every controller; preflight says so first, naming the key."""
    hosts, group = lab_data()
    hosts = [(n, {**d, "address": f"fd00::{i + 11}", "ssh_hostname": f"fd00::{i + 11}"}) for i, (n, d) in enumerate(hosts)]
    group = {**group, "internal_network": "fd00::/64", "vip": "fd00::100", "external_vip": None,
             "keepalived_external_router_id": None}
    assert [p.key for p in check(hosts, group, secrets=FAKE_SECRETS).errors] == ["firewall"]
    assert check(hosts, {**group, "firewall": False}, secrets=FAKE_SECRETS).errors == []


def test_a_flushed_table_fails_the_row_though_its_sets_remain():
    """`nft flush table inet openstack_ha` drops every rule and keeps the sets: the set alone
    would read as loaded and right. The rules are counted against the rendered file's."""
    import json

    site = lab_site()  # the capture's site
    text = capture_text("firewall", "loaded")
    data = json.loads(text.split("\n", 1)[0])
    data["nftables"] = [x for x in data["nftables"] if "rule" not in x]
    flushed = FirewallState().process(lines(json.dumps(data) + "\n\n__rc=0\n"))
    assert flushed["loaded"] and flushed["rules"] == 0
    row = firewall_rows(site, {"firewall": flushed})
    assert row[0].status == FAIL and "flushed" in row[0].detail
    assert rule_count(nft_of(site)) == expected_rules(site) == capture("firewall", "loaded")["rules"]


@pytest.mark.netns
def test_the_fact_reads_the_kernels_table_or_its_absence():
    """FirewallState's command with the real nft in a network namespace (its own ruleset):
    no table, then the rendered one loaded; and an nft that fails otherwise is an error."""
    import shlex

    from unitkit import netns, netns_sh

    site = site_with()
    with netns("kat-fw") as ns:
        absent = netns_sh(ns, FirewallState().command())
        assert FirewallState().process(absent.stdout.splitlines()) == \
            {"loaded": False, "controllers": [], "rules": None, "error": None}, absent.stdout
        loaded = netns_sh(ns, f"printf '%s' {shlex.quote(nft_of(site))} | nft -f - && {FirewallState().command()}")
        got = FirewallState().process(loaded.stdout.splitlines())
        assert got["loaded"] is True and got["error"] is None, loaded.stdout + loaded.stderr
        assert set(c.address for c in site.controllers) <= set(got["controllers"]) and got["rules"] == rule_count(nft_of(site))
    failed = FirewallState().process(["Error: Operation not permitted", "", "__rc=1"])
    assert failed["error"] == "nft list: exit status 1: Error: Operation not permitted"
