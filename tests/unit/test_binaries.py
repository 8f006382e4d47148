"""The rendered configs pass the real binaries' checks (haproxy -c, keepalived --config-test),
for prod.py and for variants of its data; negative controls prove the checks can fail."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from config.files import HAPROXY_STATS_USERS
from operations.haproxy import validation as haproxy_validation
from operations.keepalived import AUTH_CHECK
from unitkit import (
    DBCHECK_FILES,
    NODE_FILES,
    PROD,
    copy_tree,
    haproxy_check,
    host_etc_keepalived_snapshot,
    keepalived_check,
    listens,
    netns,
    netns_list,
    netns_sh,
    parse_haproxy,
    render_inventory,
    throwaway_pem,
    variant,
)

CFG = "etc/haproxy/haproxy.cfg"
MY_NS = f"kat-{os.getpid()}-"  # unitkit.keepalived_check's namespace names
KA = "etc/keepalived"


def assert_haproxy_ok(cfg):
    proc = haproxy_check(cfg)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Configuration file is valid" in proc.stdout + proc.stderr


def assert_keepalived_ok(keepalived_dir):
    res = keepalived_check(keepalived_dir)
    assert res.returncode == 0, (res.log, res.output)
    assert res.log.strip() == "", res.log


def test_a_test_without_the_netns_marker_cannot_create_a_namespace():
    """-m "not netns" leaves out every test that makes one: an unmarked test that tries is
    stopped before `ip netns add` (tests/unit/conftest.py sets what unitkit.netns() reads)."""
    before = {ns for ns in netns_list() if ns.startswith(MY_NS)}
    with pytest.raises(AssertionError, match="mark it @pytest.mark.netns"):
        with netns():
            pass
    assert {ns for ns in netns_list() if ns.startswith(MY_NS)} == before


# --- prod.py -----------------------------------------------------------------------------


@pytest.mark.parametrize("node", ["node01", "node02", "node03"])
def test_prod_haproxy_cfg_passes_haproxy_c(prod_render, node):
    assert_haproxy_ok(prod_render / node / CFG)


@pytest.mark.netns
def test_prod_keepalived_conf_passes_config_test_and_leaves_host_alone(prod_render):
    before_etc = host_etc_keepalived_snapshot()
    before_ns = netns_list()
    for node in ("node01", "node02", "node03"):
        assert_keepalived_ok(prod_render / node / KA)
    # The bind mount lived only in the namespace's private mount namespace, and every
    # namespace was deleted.
    assert host_etc_keepalived_snapshot() == before_etc
    rendered = (prod_render / "node01" / KA / "keepalived.conf").read_bytes()
    assert rendered not in before_etc.values()
    # (Only our own namespaces: the lab or a concurrent run may add or remove theirs.)
    assert not any(ns.startswith(MY_NS) for ns in netns_list())
    assert {ns for ns in before_ns if ns.startswith(MY_NS)} == set()


# --- negative controls: the checks do fail ---------------------------------------------


def test_article_log_line_fails_haproxy_c(prod_render, tmp_path):
    cfg = tmp_path / "haproxy.cfg"
    text = (prod_render / "node01" / CFG).read_text()
    assert "    log 100.2.30.41:5140 local1\n" in text
    cfg.write_text(text.replace("log 100.2.30.41:5140 local1", "log 100.2.30.41 5140 local1"))
    proc = haproxy_check(cfg)
    assert proc.returncode != 0
    assert "ALERT" in proc.stdout + proc.stderr


@pytest.mark.netns
def test_long_auth_pass_fails_keepalived_config_test(prod_render, tmp_path):
    # The password's own file, as keepalived.conf includes it: keepalived reads it in the check.
    ka = copy_tree(prod_render / "node01" / KA, tmp_path / "keepalived")
    conf = ka / "openstack-ha-auth.conf"
    text = conf.read_text()
    assert "auth_pass __VRRP__" in text
    conf.write_text(text.replace("auth_pass __VRRP__", "auth_pass 123456789"))
    res = keepalived_check(ka)
    assert res.returncode != 0
    assert "Truncating auth_pass" in res.log
    assert not any(ns.startswith(MY_NS) for ns in netns_list())


def test_haproxy_cfg_is_checked_with_the_stats_account_file(prod_render, tmp_path):
    """The deploy's and the unit's haproxy -c load the userlist file after haproxy.cfg; without
    it the config is refused (the check reads it), with another userlist name too."""
    cfg = prod_render / "node01" / CFG
    assert haproxy_check(cfg).returncode == 0
    alone = haproxy_check(cfg, users=Path("/dev/null"))
    assert alone.returncode != 0 and "unable to find userlist 'openstack_ha_stats'" in alone.stdout + alone.stderr
    other = tmp_path / "users.cfg"
    other.write_text((cfg.parent / "openstack-ha-stats.cfg").read_text().replace("userlist openstack_ha_stats", "userlist other"))
    assert haproxy_check(cfg, users=other).returncode != 0


@pytest.mark.netns
def test_keepalived_conf_without_its_auth_file_fails_config_test(prod_render, tmp_path):
    ka = copy_tree(prod_render / "node01" / KA, tmp_path / "keepalived")
    (ka / "openstack-ha-auth.conf").unlink()
    res = keepalived_check(ka)
    assert res.returncode != 0, res.log


@pytest.mark.netns
def test_a_new_vrrp_password_is_checked_with_the_keepalived_conf_in_place(prod_render, tmp_path):
    """The deploy's check of a staged auth file (operations/keepalived.py AUTH_CHECK): the
    keepalived.conf in place, its include pointed at the staged file; keepalived refuses a
    password it would cut."""
    ka = copy_tree(prod_render / "node01" / KA, tmp_path / "keepalived")
    staged = ka / "openstack-ha-auth.conf.pyinfra-new"
    command = AUTH_CHECK.format(path=f"/etc/keepalived/{staged.name}")
    results = {}
    for password in ("Vr8pAss1", "123456789"):
        staged.write_text(f"auth_pass {password}\n")
        with netns() as ns:
            results[password] = netns_sh(ns, f"mount --bind '{ka}' /etc/keepalived && {command}").returncode
    assert results["Vr8pAss1"] == 0 and results["123456789"] != 0, results
    with netns() as ns:  # no keepalived.conf yet (a fresh host): nothing to check it with
        assert netns_sh(ns, f"mount --bind '{tmp_path}' /etc/keepalived && {command}").returncode == 0


@pytest.mark.netns
def test_a_new_stats_account_is_checked_with_the_haproxy_cfg_in_place(prod_render, tmp_path):
    """operations/haproxy.py's check of a staged stats account file: haproxy -c of the
    haproxy.cfg in place with it (a userlist of another name is refused)."""
    etc = copy_tree(prod_render / "node01" / "etc/haproxy", tmp_path / "haproxy")
    (etc / "openstack-ha.pem").write_text(throwaway_pem().read_text())
    staged = etc / "openstack-ha-stats.cfg.pyinfra-new"
    command, _ = haproxy_validation()[HAPROXY_STATS_USERS]
    command = command.format(path=f"/etc/haproxy/{staged.name}")
    results = {}
    for name in ("openstack_ha_stats", "other"):
        staged.write_text(f"userlist {name}\n    user openstack insecure-password 'x y'\n")
        with netns() as ns:
            proc = netns_sh(ns, f"mount --bind '{etc}' /etc/haproxy && {command}")
        results[name] = proc.returncode
    assert results == {"openstack_ha_stats": 0, "other": results["other"]} and results["other"] != 0, results


@pytest.mark.netns
def test_missing_interface_fails_keepalived_config_test(prod_render):
    # The veth is named otherwise: keepalived must notice enp8s0f0 does not exist.
    res = keepalived_check(prod_render / "node01" / KA, interface="kat-other0")
    assert res.returncode != 0
    assert "enp8s0f0" in res.log


# --- variants of prod.py's data ------------------------------------------------------------


def render_variant(tmp_path, hosts_change=None, **changes):
    inv = variant(tmp_path, hosts_change, **changes)
    out = tmp_path / "out"
    render_inventory(inv, out)
    return out


def node01_listeners(out):
    return listens(parse_haproxy((out / "node01" / CFG).read_text()))


def test_variant_service_disabled(tmp_path):
    out = render_variant(tmp_path, services={"glance_registry": {"enabled": False}})
    ls = node01_listeners(out)
    assert "glance_registry" not in ls
    assert "keystone_admin" in ls and "glance_api" in ls
    assert_haproxy_ok(out / "node01" / CFG)


def test_variant_legacy_services_off(tmp_path):
    out = render_variant(tmp_path, haproxy_legacy_services=False)
    ls = node01_listeners(out)
    assert "keystone_admin" not in ls and "glance_registry" not in ls
    assert "keystone_internal" in ls and "glance_api" in ls and "mariadb" in ls
    assert_haproxy_ok(out / "node01" / CFG)


# Failover (issue 12): connection errors mark a server down, on every server line.
OBSERVE = " observe layer4 error-limit 2 on-error mark-down"


def test_variant_site_service_added(tmp_path):
    out = render_variant(tmp_path, services={"octavia_api": {"port": 9876}})
    sec = node01_listeners(out)["octavia_api"]
    assert sec.values("bind") == ["100.2.30.40:9876 ssl crt /etc/haproxy/openstack-ha.pem"]
    assert sec.values("server") == [
        f"node0{i} 100.2.30.4{i}:9876 check inter 2000 rise 2 fall 5{OBSERVE}" for i in (1, 2, 3)
    ]
    assert_haproxy_ok(out / "node01" / CFG)


def _add_node04(hosts):
    return hosts + [("node04", {"ssh_hostname": "100.2.30.44", "address": "100.2.30.44", "vrrp_priority": 120})]


@pytest.mark.netns
def test_variant_four_controllers(tmp_path):
    out = render_variant(tmp_path, _add_node04)
    assert sorted(p.name for p in out.iterdir()) == ["node01", "node02", "node03", "node04"]
    for node in ("node01", "node04"):
        sections = parse_haproxy((out / node / CFG).read_text())
        for name, sec in listens(sections).items():
            if name == "stats":
                continue
            servers = sec.values("server")
            assert len(servers) == 4, name
            assert servers[3].startswith("node04 100.2.30.44:"), name
        db = listens(sections)["mariadb"].values("server")
        assert "backup" not in db[0].split() and "shutdown-backup-sessions" in db[0].split()
        assert all("backup" in s.split() for s in db[1:])
        assert db[3] == ("node04 100.2.30.44:3306 check inter 1000 rise 2 fall 2 port 9200 backup "
                         f"on-marked-down shutdown-sessions{OBSERVE}")
        galera = (out / node / "etc/mysql/mariadb.conf.d/99-openstack-galera.cnf").read_text()
        assert "gcomm://100.2.30.41,100.2.30.42,100.2.30.43,100.2.30.44\n" in galera
        assert_haproxy_ok(out / node / CFG)
    assert listens(parse_haproxy((out / "node04" / CFG).read_text()))["stats"].values("bind") == ["100.2.30.44:1984"]
    assert "priority 120" in (out / "node04" / KA / "keepalived.conf").read_text()
    assert_keepalived_ok(out / "node04" / KA)


@pytest.mark.netns
def test_variant_unicast_vrrp(tmp_path):
    out = render_variant(tmp_path, keepalived_unicast=True)
    for node, me, peers in (
        ("node01", "100.2.30.41", ["100.2.30.42", "100.2.30.43"]),
        ("node02", "100.2.30.42", ["100.2.30.41", "100.2.30.43"]),
    ):
        text = (out / node / KA / "keepalived.conf").read_text()
        lines = [l.strip() for l in text.splitlines()]
        assert f"unicast_src_ip {me}" in lines
        block = re.search(r"unicast_peer \{\n(.*?)\n\s*\}", text, re.S)
        assert block, text
        assert [l.strip() for l in block.group(1).splitlines()] == peers
        assert_keepalived_ok(out / node / KA)


def test_variant_mariadb_httpchk(tmp_path):
    out = render_variant(tmp_path, mariadb_check_method="httpchk", mariadb_check_port=9201)
    sec = node01_listeners(out)["mariadb"]
    assert "httpchk" in sec.values("option")
    assert not any(o.startswith("mysql-check") for o in sec.values("option"))
    servers = sec.values("server")
    assert len(servers) == 3
    assert all(" port 9201" in s for s in servers)
    assert servers[0] == ("node01 100.2.30.41:3306 check inter 1000 rise 2 fall 2 port 9201 "
                          f"on-marked-up shutdown-backup-sessions on-marked-down shutdown-sessions{OBSERVE}")
    unit = (out / "node02/etc/systemd/system/galera-clustercheck.service").read_text()
    assert "ExecStart=/usr/bin/python3 /usr/local/sbin/galera-clustercheck 100.2.30.42 9201\n" in unit
    assert "User=clustercheck\n" in unit
    assert_haproxy_ok(out / "node01" / CFG)


def test_variant_mariadb_mysql_check(tmp_path):
    # The article's own check: mysql-check on the database port, no check service installed.
    out = render_variant(tmp_path, mariadb_check_method="mysql-check", mariadb_check_port=3306)
    sec = node01_listeners(out)["mariadb"]
    assert sec.values("option") == ["tcplog", "tcpka", "mysql-check user haproxy post-41"]
    down = f"on-marked-down shutdown-sessions{OBSERVE}"
    assert sec.values("server") == [
        f"node01 100.2.30.41:3306 check inter 1000 rise 2 fall 2 on-marked-up shutdown-backup-sessions {down}",
        f"node02 100.2.30.42:3306 check inter 1000 rise 2 fall 2 backup {down}",
        f"node03 100.2.30.43:3306 check inter 1000 rise 2 fall 2 backup {down}",
    ]
    files = {str(p.relative_to(out / "node01")) for p in (out / "node01").rglob("*") if p.is_file()}
    assert files == NODE_FILES - DBCHECK_FILES
    assert_haproxy_ok(out / "node01" / CFG)


def test_variant_data_ports_reach_the_listeners(tmp_path):
    # mariadb_port and rabbitmq_management_port move the daemons (galera.cnf, rabbitmq.conf);
    # HAProxy must follow them, on the VIP (clients use vip:mariadb_port) and to the backends.
    out = render_variant(tmp_path, mariadb_port=3307, rabbitmq_management_port=15673)
    ls = node01_listeners(out)
    assert ls["mariadb"].values("bind") == ["100.2.30.40:3307"]
    assert ls["mariadb"].values("server")[0].startswith("node01 100.2.30.41:3307 ")
    assert ls["rabbitmq_management"].values("bind") == ["100.2.30.40:15673"]
    assert ls["rabbitmq_management"].values("server")[0].startswith("node01 100.2.30.41:15673 ")
    assert "port = 3307" in (out / "node01/etc/mysql/mariadb.conf.d/99-openstack-galera.cnf").read_text()
    assert "management.tcp.port = 15673" in (out / "node01/etc/rabbitmq/rabbitmq.conf").read_text()
    assert_haproxy_ok(out / "node01" / CFG)
