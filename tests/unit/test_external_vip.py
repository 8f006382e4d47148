"""The external VIP ("Secure by default" item 2), offline: the public listeners of the catalogue
bind it too, always with TLS; keepalived holds it with a VRRP instance of its own (checked by
the real `keepalived --config-test`, haproxy.cfg by `haproxy -c`); preflight refuses what would
expose it wrongly; without it every config is the one of before."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from config.catalogue import CATALOGUE, merge_catalogue
from config.files import HAPROXY_CFG, KEEPALIVED_CONF, managed_files
from config.preflight import check
from config.secrets import PLACEHOLDERS
from config.site import build_site
from test_tls import BEFORE_FAILOVER
from unitkit import (
    FAKE_SECRETS, copy_tree, haproxy_check, keepalived_check, listens, netns_list, parse_haproxy, prod_data,
    render_inventory, variant,
)

GOLDEN = Path(__file__).resolve().parent / "golden"
EXT = "203.0.113.10"
EXTERNAL = {"external_vip": EXT, "external_network": "203.0.113.0/24", "external_vip_interface": "enp9s0",
            "keepalived_external_router_id": 122}
PEM = "/etc/haproxy/openstack-ha.pem"
PUBLIC = {"keystone_internal", "glance_api", "nova_api", "placement_api", "nova_novncproxy", "neutron_server",
          "horizon", "cinder_api", "heat_api", "heat_api_cfn"}
NEVER_PUBLIC = {"rabbitmq_management", "mariadb", "nova_metadata", "keystone_admin", "glance_registry"}
MY_NS = f"kat-{os.getpid()}-"  # unitkit.keepalived_check's namespace names


def files_of(node: str = "node01", **changes) -> dict[str, str]:
    hosts, group = prod_data()
    site = build_site(hosts, {**group, **changes})
    return {f.path: f.content for f in managed_files(site, node, PLACEHOLDERS)}


def without(text: str, needle: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if needle not in line)


# --- the catalogue ----------------------------------------------------------------------------


def test_public_listeners_are_the_openstack_apis_only():
    assert {s.name for s in CATALOGUE if s.public} == PUBLIC
    assert {s.name for s in CATALOGUE if not s.public} == NEVER_PUBLIC


def test_a_site_flips_public_per_service_and_its_own_services_are_not_public():
    by = {s.name: s for s in merge_catalogue({"glance_api": {"public": False}, "octavia_api": {"port": 9876},
                                              "designate_api": {"port": 9001, "public": True}})}
    assert not by["glance_api"].public and by["nova_api"].public
    assert not by["octavia_api"].public and by["designate_api"].public


# --- haproxy.cfg ------------------------------------------------------------------------------


def test_without_an_external_vip_haproxy_cfg_and_keepalived_conf_are_those_of_before():
    # the golden files: rendered by the code before the external VIP (keepalived.conf: with
    # mcast_src_ip added since; haproxy.cfg: also before
    # TLS and the failover timers, see test_tls.py)
    off = {"external_vip": None, "external_vip_interface": None, "external_network": None,
           "keepalived_external_router_id": None}
    # and before check_serving (keepalived_serve_check False: the configs of before)
    assert files_of(**off, keepalived_serve_check=False)[KEEPALIVED_CONF] == (GOLDEN / "prod-node01-keepalived.conf").read_text()
    assert files_of(**off, haproxy_tls=False, **BEFORE_FAILOVER)[HAPROXY_CFG] == \
        (GOLDEN / "prod-node01-haproxy.cfg").read_text()
    assert files_of(**off) == files_of()  # the defaults, said out loud, change nothing
    assert files_of(**EXTERNAL)[KEEPALIVED_CONF] != (GOLDEN / "prod-node01-keepalived.conf").read_text()


def test_public_listeners_bind_the_external_vip_with_tls_and_nothing_else_changes():
    before, after = files_of()[HAPROXY_CFG], files_of(**EXTERNAL)[HAPROXY_CFG]
    assert without(after, f"bind {EXT}:") == before  # only binds added
    ls = listens(parse_haproxy(after))
    for name, sec in ls.items():
        external = [b for b in sec.values("bind") if b.startswith(f"{EXT}:")]
        if name == "horizon":
            assert external == [f"{EXT}:443 ssl crt {PEM}", f"{EXT}:80"]  # 80 redirects, as on the VIP
            assert sec.values("http-request")[0].startswith("redirect location https://")
        elif name in PUBLIC:
            (bind,) = [b for b in sec.values("bind") if not b.startswith(f"{EXT}:")]
            assert external == [bind.replace("100.2.30.40:", f"{EXT}:")], name
            assert external[0].endswith(f" ssl crt {PEM}"), name
        else:
            assert external == [], name


def test_a_site_can_take_a_listener_off_the_external_vip():
    ls = listens(parse_haproxy(files_of(**EXTERNAL, services={"glance_api": {"public": False}})[HAPROXY_CFG]))
    assert not any(b.startswith(f"{EXT}:") for b in ls["glance_api"].values("bind"))
    assert any(b.startswith(f"{EXT}:") for b in ls["nova_api"].values("bind"))


def test_haproxy_c_passes_with_the_external_vip(tmp_path):
    out = tmp_path / "out"
    render_inventory(variant(tmp_path, **EXTERNAL), out)
    cfg = out / "node01" / HAPROXY_CFG.lstrip("/")
    assert f"bind {EXT}:5000 ssl crt" in cfg.read_text()
    proc = haproxy_check(cfg)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # negative control: haproxy -c reads the external binds (an address it cannot parse fails)
    bad = tmp_path / "bad.cfg"
    bad.write_text(cfg.read_text().replace(f"bind {EXT}:9292 ", "bind 203.0.113.300:9292 "))
    proc = haproxy_check(bad)
    assert proc.returncode != 0 and "203.0.113.300" in proc.stdout + proc.stderr


# --- keepalived.conf --------------------------------------------------------------------------


def instances(conf: str) -> dict[str, str]:
    return dict(re.findall(r"^vrrp_instance (\S+) \{\n(.*?)^\}", conf, re.S | re.M))


def test_the_external_vip_has_a_vrrp_instance_of_its_own():
    before, after = files_of()[KEEPALIVED_CONF], files_of(**EXTERNAL)[KEEPALIVED_CONF]
    assert after.startswith(before)  # the internal instance as it was
    blocks = instances(after)
    assert list(blocks) == ["internal_vip_121", "external_vip_122"]
    internal, external = blocks.values()
    assert "virtual_router_id 122" in external and "virtual_router_id 121" in internal
    assert f"{EXT}/24 dev enp9s0" in external
    # adverts on the internal interface (VRRP and its PASS stay off the public network)
    assert "    interface enp8s0f0\n" in external
    # the same node priority, BACKUP/nopreempt, tracks and auth as the internal instance
    assert without(external, "virtual_router_id").replace(f"{EXT}/24 dev enp9s0", "VIP") == \
        without(internal, "virtual_router_id").replace("100.2.30.40/24 dev enp8s0f0", "VIP")
    assert not re.search(r"^vrrp_sync_group", after, re.M)


def test_external_interface_and_prefix_default_to_the_internal_ones():
    conf = files_of(external_vip="100.2.30.39", keepalived_external_router_id=122)[KEEPALIVED_CONF]
    assert "100.2.30.39/24 dev enp8s0f0" in instances(conf)["external_vip_122"]


@pytest.mark.netns
def test_keepalived_config_test_passes_with_the_external_instance(tmp_path):
    out = tmp_path / "out"
    render_inventory(variant(tmp_path, **EXTERNAL, keepalived_unicast=True), out)
    for node in ("node01", "node03"):
        res = keepalived_check(out / node / "etc/keepalived", "enp8s0f0", "enp9s0")
        assert res.returncode == 0, (res.log, res.output)
        assert res.log.strip() == "", res.log
    # negative control: without the external interface keepalived says so
    res = keepalived_check(out / "node01" / "etc/keepalived", "enp8s0f0")
    assert res.returncode != 0 and "enp9s0" in res.log, res.log
    assert not any(ns.startswith(MY_NS) for ns in netns_list())


@pytest.mark.netns
def test_keepalived_config_test_passes_with_both_vips_on_one_interface(tmp_path):
    # the lab's shape: the external VIP on vip_interface, in internal_network
    out = tmp_path / "out"
    render_inventory(variant(tmp_path, external_vip="100.2.30.39", keepalived_external_router_id=122), out)
    assert "100.2.30.39/24 dev enp8s0f0" in (out / "node02/etc/keepalived/keepalived.conf").read_text()
    res = keepalived_check(out / "node02" / "etc/keepalived")
    assert res.returncode == 0 and res.log.strip() == "", (res.log, res.output)


@pytest.mark.netns
def test_keepalived_config_test_refuses_one_router_id_for_both(tmp_path):
    out = tmp_path / "out"
    render_inventory(variant(tmp_path, **EXTERNAL), out)
    ka = copy_tree(out / "node01" / "etc/keepalived", tmp_path / "keepalived")
    conf = ka / "keepalived.conf"
    conf.write_text(conf.read_text().replace("virtual_router_id 122", "virtual_router_id 121"))
    res = keepalived_check(ka, "enp8s0f0", "enp9s0")
    assert res.returncode != 0 and "both use VRID 121" in res.log, (res.log, res.output)


# --- preflight --------------------------------------------------------------------------------


def errors(hosts_change=None, **changes):
    hosts, group = prod_data()
    if hosts_change:
        hosts = hosts_change(hosts)
    return [(p.where, p.key, p.message, p.fix) for p in check(hosts, {**group, **changes}, dict(FAKE_SECRETS)).errors]


def test_preflight_accepts_the_external_vip():
    assert errors(**EXTERNAL) == []


def test_preflight_refuses_the_external_vip_without_tls():
    ((where, key, message, fix),) = errors(**EXTERNAL, haproxy_tls=False)
    assert (where, key) == ("controllers", "external_vip")
    assert "TLS required" in message and "haproxy_tls True" in fix


@pytest.mark.parametrize("changes,key,says", [
    ({"external_vip": "100.2.30.40", "external_network": None}, "external_vip", "is the internal VIP"),
    ({"keepalived_external_router_id": 121}, "keepalived_external_router_id", "is also keepalived_virtual_router_id"),
    ({"keepalived_external_router_id": None}, "keepalived_external_router_id", "missing"),
    ({"external_network": None}, "external_vip", "outside internal_network"),
    ({"external_vip": "203.0.114.10"}, "external_vip", "outside external_network"),
    ({"external_vip": "203.0.113.255"}, "external_vip", "broadcast address"),
    ({"external_vip": "fd00::10", "external_network": "fd00::/64"}, "external_vip", "IPv6, the VIP IPv4"),
    ({"services": {"mariadb": {"public": True}}}, "services.mariadb.public", "not served over TLS"),
    ({"services": {"horizon": {"tls": False}}}, "services.horizon.public", "not served over TLS"),
])
def test_preflight_refuses_a_wrong_external_vip(changes, key, says):
    found = [e for e in errors(**{**EXTERNAL, **changes}) if e[1] == key]
    assert found and says in found[0][2], errors(**{**EXTERNAL, **changes})
    assert found[0][0] == "controllers" and found[0][3]


def test_the_router_id_error_names_the_key_and_a_free_id():
    ((_, key, _, fix),) = errors(**{**EXTERNAL, "keepalived_external_router_id": 121})
    assert key == "keepalived_external_router_id" and "set keepalived_external_router_id" in fix and "122" in fix


def test_preflight_refuses_an_external_vip_that_is_a_controller_address():
    found = [e for e in errors(external_vip="100.2.30.42", keepalived_external_router_id=122) if e[1] == "address"]
    assert [(w, m) for w, _, m, _ in found] == [("node02", "100.2.30.42 is the external VIP")]


def test_external_keys_without_an_external_vip_are_a_warning_only():
    hosts, group = prod_data()
    report = check(hosts, {**group, "keepalived_external_router_id": 122}, dict(FAKE_SECRETS))
    assert report.errors == []
    assert [(p.key, p.message) for p in report.warnings if p.key.startswith(("external", "keepalived_external"))] == [
        ("keepalived_external_router_id", "has no effect without external_vip")]


@pytest.mark.parametrize("key,value", [("external_vip", "203.0.113"), ("external_vip_interface", "en p9"),
                                       ("external_network", "203.0.113.10"), ("keepalived_external_router_id", 256)])
def test_external_keys_are_checked_by_the_schema(key, value):
    found = [e for e in errors(**{**EXTERNAL, key: value}) if e[1] == key]
    assert found, errors(**{**EXTERNAL, key: value})


# --- the health report ------------------------------------------------------------------------


def ext_site():
    from healthkit import NAMES

    return build_site(
        [(n, {"address": f"10.77.0.{11 + i}", "vrrp_priority": 150 - 10 * i}) for i, n in enumerate(NAMES)],
        {"internal_network": "10.77.0.0/24", "vip": "10.77.0.100", "vip_interface": "enp8s0f0",
         "external_vip": "10.77.0.101", "keepalived_external_router_id": 78},
    )


def ext_results(site, holder="node02", vip_holder="node01"):
    """Healthy facts with the external VIP on `holder` (the VIP on `vip_holder`)."""
    from healthkit import NAMES, healthy

    results = healthy(site, holder=vip_holder)
    for n in NAMES:
        results[n]["external_vip"] = {"holds_vip": n == holder, "vip": "10.77.0.101", "interface": "enp8s0f0",
                                      "addresses": [], "error": None}
    return results


def test_the_report_names_the_one_external_vip_holder():
    from healthkit import cluster, row
    from health.checks import evaluate
    from health.report import OK

    site = ext_site()
    report = evaluate(site, ext_results(site))
    assert report.ok, report.failures()
    assert report.external_vip_holders == ["node02"] and report.vip_holders == ["node01"]
    ext = cluster(report, "external vip holder")
    assert (ext.status, ext.detail) == (OK, "node02 holds 10.77.0.101")
    assert row(report, "node02", "external vip").detail == "holds 10.77.0.101 on enp8s0f0"
    assert row(report, "node01", "external vip").detail == "standby (does not hold 10.77.0.101)"
    assert report.to_dict()["external_vip_holders"] == ["node02"]
    assert "node02 (external VIP holder)" in report.render()


@pytest.mark.parametrize("holders,says,blamed", [
    ((), "no controller holds 10.77.0.101", ("node01", "node02", "node03")),
    (("node01", "node03"), "split brain: 10.77.0.101 is held by node01, node03", ("node01", "node03")),
])
def test_no_or_two_external_vip_holders_fail(holders, says, blamed):
    from healthkit import NAMES, cluster
    from health.checks import evaluate
    from health.report import FAIL

    site = ext_site()
    results = ext_results(site)
    for n in NAMES:
        results[n]["external_vip"]["holds_vip"] = n in holders
    report = evaluate(site, results)
    ext = cluster(report, "external vip holder")
    assert (ext.status, ext.detail, ext.hosts) == (FAIL, says, blamed)
    assert cluster(report, "vip holder").status != FAIL  # the internal VIP is fine
    assert not report.ok


def test_an_unreadable_external_vip_fact_fails_with_its_error():
    from healthkit import cluster, row
    from health.checks import evaluate
    from health.report import FAIL

    site = ext_site()
    results = ext_results(site)
    results["node03"]["external_vip"] = {"holds_vip": False, "vip": None, "interface": None, "addresses": [],
                                         "error": "ip addr show dev enp8s0f0: exit status 1"}
    report = evaluate(site, results)
    assert row(report, "node03", "external vip").status == FAIL
    assert cluster(report, "external vip holder").hosts == ("node03",)
    del results["node03"]["external_vip"]  # not collected at all: a failure too, never a skip
    assert row(evaluate(site, results), "node03", "external vip").detail == "fact 'external_vip' not collected"


def test_without_an_external_vip_the_report_is_that_of_before():
    from healthkit import healthy, lab_site
    from health.checks import evaluate

    site = lab_site()
    report = evaluate(site, healthy(site))
    assert "external_vip_holders" not in report.to_dict()
    assert not any("external" in c.name for c in report.cluster + report.hosts["node01"])


def test_keepalived_row_judges_both_instances():
    from healthkit import row
    from health.checks import evaluate
    from health.report import FAIL, OK

    site = ext_site()
    results = ext_results(site)
    results["node02"]["keepalived"]["vrrp_states"] = {"internal_vip_77": "BACKUP", "external_vip_78": "MASTER"}
    ka = row(evaluate(site, results), "node02", "keepalived")
    assert (ka.status, ka.detail) == (OK, "VRRP BACKUP (internal_vip_77 BACKUP, external_vip_78 MASTER)")
    results["node02"]["keepalived"]["vrrp_states"]["external_vip_78"] = "FAULT"
    ka = row(evaluate(site, results), "node02", "keepalived")
    assert ka.status == FAIL and ka.detail.startswith("VRRP FAULT (internal_vip_77 BACKUP, external_vip_78 FAULT)")


def test_the_external_vip_is_a_verification_fact_only_when_set():
    from facts.keepalived import VipHolder
    from facts.bundle import part
    from healthkit import lab_site
    from operations.before import health_parts

    site = ext_site()
    assert health_parts(site, "node01")["external_vip"] == part(VipHolder, interface="enp8s0f0", vip="10.77.0.101")
    assert "external_vip" not in health_parts(lab_site(), "node01")


# --- the lab's certificate --------------------------------------------------------------------


def _cert(tmp_path, sans: str) -> str:
    import subprocess

    key, crt = tmp_path / f"{sans}.key", tmp_path / f"{sans}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "2", "-subj", "/CN=vip.test", "-addext", f"subjectAltName={sans}",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True, timeout=60)
    return crt.read_text() + key.read_text()


def test_the_lab_certificate_is_made_again_until_it_names_both_vips(tmp_path, monkeypatch):
    """lab/keys.py, offline (its paths moved to tmp_path): a certificate of before (the VIP
    only) is replaced; one naming both VIPs is kept."""
    import json

    from lab import keys

    monkeypatch.setattr(keys, "VIP", "10.77.0.100")
    monkeypatch.setattr(keys, "EXTERNAL_VIP", "10.77.0.101")
    for name in ("STATE_DIR", "CA_FILE", "SECRETS_FILE"):
        monkeypatch.setattr(keys, name, tmp_path / name.lower() if name != "STATE_DIR" else tmp_path)
    (tmp_path / "ca_file").write_text("a CA\n")
    monkeypatch.setattr(keys, "vip_certificate", lambda: "NEW")
    assert keys.vip_addresses() == ("10.77.0.100", "10.77.0.101")
    old, both = _cert(tmp_path, "IP:10.77.0.100"), _cert(tmp_path, "IP:10.77.0.100,IP:10.77.0.101")
    assert not keys.names_vips(old) and keys.names_vips(both)
    for pem, kept in ((old, False), (both, True)):
        (tmp_path / "secrets_file").write_text(json.dumps({"haproxy_tls_pem": pem}))
        keys.ensure_secrets()
        got = json.loads((tmp_path / "secrets_file").read_text())["haproxy_tls_pem"]
        assert got == (pem if kept else "NEW")
