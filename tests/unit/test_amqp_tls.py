"""AMQP over TLS for the OpenStack services (rabbitmq_amqp_tls; config/amqp_tls.py): rabbitmq.conf
on and off, the plain listener kept or closed, preflight's refusals, the firewall, what the services
are told, the switch as a rolling restart (announced, one broker at a time, on and off), and the
health report's `amqp tls` row from openssl s_client's real answers (captures/amqp_tls/).

The certificates are test_peer_tls.py's (lab/keys.py's node_certificate, from a throwaway CA)."""

from __future__ import annotations

import copy
import socket

import pytest

import opkit
import unitkit
from config import firewall, peer_tls, preflight
from config.defaults import DEFAULTS
from config.paths import FIREWALL_NFT, RABBITMQ_DIST_OPTFILE, RABBITMQ_TLS_DIR
from config.site import build_site
from health.report import FAIL, OK, WARN
from health.tls import amqp_tls_rows
from healthkit import capture, capture_text, lines, lab_site
from operations.before import cluster_fact_args, health_parts
from test_peer_tls import ENV, NODES, files, pki, site_data, tls_lab  # noqa: F401 (fixtures)
from unitkit import FAKE_SECRETS

CONF = "/etc/rabbitmq/rabbitmq.conf"
TLS_FILES = {f"{RABBITMQ_TLS_DIR}/{n}" for n in ("ca.pem", "node.crt", "node.key")}


def amqp(pki, on=True, **more):
    """The lab's site with AMQP over TLS (and neither peer switch)."""
    return site_data(pki, galera=False, rabbitmq=False, rabbitmq_amqp_tls=on, **more)


def conf_lines(got) -> list[str]:
    return got[CONF].content.splitlines()


# --- rabbitmq.conf ------------------------------------------------------------------------------


def test_off_renders_the_files_of_before(pki):
    """Default off: every file as before the switch existed (its material given or not)."""
    hosts, group = unitkit.lab_data(NODES)
    before = files(hosts, {**group, "backup_enabled": False})
    after = files(*amqp(pki, on=False))
    assert set(before) == set(after)
    assert all(before[p].content == after[p].content for p in before)
    assert not [line for line in conf_lines(after) if "ssl" in line]


def test_on_a_tls_listener_beside_the_plain_one(pki):
    hosts, group = amqp(pki)
    got = files(hosts, group)
    address = dict(hosts)["node01"]["address"]
    conf = conf_lines(got)
    assert f"listeners.tcp.1 = {address}:5672" in conf  # kept while the services move (rabbitmq_amqp_plain)
    assert f"listeners.ssl.1 = {address}:5671" in conf  # the node address, never 0.0.0.0
    paths = peer_tls.paths("rabbitmq")
    for option, path in (("cacertfile", paths["ca"]), ("certfile", paths["cert"]), ("keyfile", paths["key"])):
        assert f"ssl_options.{option} = {path}" in conf
    assert {"ssl_options.verify = verify_none", "ssl_options.fail_if_no_peer_cert = false",
            "ssl_options.versions.1 = tlsv1.3", "ssl_options.versions.2 = tlsv1.2",
            "ssl_options.honor_cipher_order = true"} <= set(conf)
    assert not [line for line in conf if "tlsv1.1" in line or "tlsv1'" in line or line.endswith("tlsv1")]
    # the material RabbitMQ reads, the key a secret file; not the Erlang distribution's options
    assert TLS_FILES <= set(got) and got[f"{RABBITMQ_TLS_DIR}/node.key"].secret
    assert RABBITMQ_DIST_OPTFILE not in got and "-proto_dist inet_tls" not in got[ENV].content


def test_the_vip_cipher_policy_in_order(pki):
    """TLS 1.3's suites, then TLS 1.2's ECDHE+AEAD ones, as the VIP's (one source: the haproxy keys)."""
    conf = conf_lines(files(*amqp(pki)))
    listed = [line.split(" = ", 1)[1] for line in conf if line.startswith("ssl_options.ciphers.")]
    expected = DEFAULTS["haproxy_tls_ciphersuites"].split(":") + DEFAULTS["haproxy_tls_ciphers"].split(":")
    assert listed == expected
    assert [line.split(" = ")[0] for line in conf if line.startswith("ssl_options.ciphers.")] == [
        f"ssl_options.ciphers.{i}" for i in range(1, len(expected) + 1)]
    assert all("ECDHE" in c and ("GCM" in c or "CHACHA20" in c) for c in expected if not c.startswith("TLS_"))
    custom = conf_lines(files(*amqp(pki, haproxy_tls_ciphers="ECDHE-ECDSA-AES256-GCM-SHA384",
                                    haproxy_tls_ciphersuites="TLS_AES_256_GCM_SHA384")))
    assert [line for line in custom if line.startswith("ssl_options.ciphers.")] == [
        "ssl_options.ciphers.1 = TLS_AES_256_GCM_SHA384", "ssl_options.ciphers.2 = ECDHE-ECDSA-AES256-GCM-SHA384"]


def test_plain_closed(pki):
    conf = conf_lines(files(*amqp(pki, rabbitmq_amqp_plain=False)))
    assert "listeners.tcp = none" in conf and not [line for line in conf if line.startswith("listeners.tcp.")]
    assert [line for line in conf if line.startswith("listeners.ssl.1 = ")]


def test_client_certificates_required_with_verify_peer(pki):
    conf = conf_lines(files(*amqp(pki, rabbitmq_amqp_tls_verify_peer=True)))
    assert {"ssl_options.verify = verify_peer", "ssl_options.fail_if_no_peer_cert = true"} <= set(conf)


def test_both_rabbitmq_switches_share_one_copy_of_the_material(pki):
    got = files(*site_data(pki, galera=False, rabbitmq=True, rabbitmq_amqp_tls=True))
    assert TLS_FILES | {RABBITMQ_DIST_OPTFILE} <= set(got)
    assert "-proto_dist inet_tls" in got[ENV].content and "listeners.ssl.1 = " in got[CONF].content


# --- preflight ----------------------------------------------------------------------------------


def problems(hosts, group, level="errors") -> list[str]:
    return [str(p) for p in getattr(preflight.check(hosts, group, FAKE_SECRETS), level)]


def test_on_with_its_material_passes(pki):
    assert problems(*amqp(pki)) == []
    assert problems(*amqp(pki, rabbitmq_amqp_plain=False, rabbitmq_amqp_tls_verify_peer=True)) == []


def test_on_without_the_ca_or_a_node_certificate_is_refused_naming_host_key_and_fix(pki):
    hosts, group = amqp(pki, peer_tls_ca_file=None)
    said = problems(hosts, group)
    assert any("peer_tls_ca_file" in p and "rabbitmq_amqp_tls needs the CA certificate" in p and "fix:" in p for p in said), said
    hosts, group = amqp(pki, pems={n: p for n, p in pki["pems"].items() if n != "node02"})
    said = problems(hosts, group)
    assert [p for p in said if p.startswith("error: node02: tls_node_pem: missing: rabbitmq_amqp_tls needs")], said
    assert not [p for p in said if "node01" in p or "node03" in p]


def test_a_certificate_for_another_node_is_refused(pki):
    pems = {**pki["pems"], "node02": pki["pems"]["node01"]}
    said = problems(*amqp(pki, pems=pems))
    assert [p for p in said if p.startswith("error: node02: tls_node_pem:") and "does not name the node's address" in p], said


@pytest.mark.parametrize("key,value,said", [
    ("haproxy_tls_ciphers", "HIGH:!aNULL", "'HIGH', '!aNULL' is not a cipher suite's name"),
    ("haproxy_tls_ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256::ECDHE-RSA-AES128-GCM-SHA256", "'' is not a cipher suite's name"),
    ("haproxy_tls_ciphersuites", "TLS_AES_128_GCM_SHA256:DEFAULT", "'DEFAULT' is not a cipher suite's name"),
])
def test_a_cipher_list_erlang_cannot_read_is_refused_only_with_the_switch(pki, key, value, said):
    got = problems(*amqp(pki, **{key: value}))
    assert [p for p in got if p.startswith(f"error: controllers: {key}: ") and said in p and "fix:" in p], got
    assert not [p for p in problems(*amqp(pki, on=False, **{key: value})) if "cipher suite" in p]


def test_plain_closed_without_tls_is_refused(pki):
    said = problems(*amqp(pki, on=False, rabbitmq_amqp_plain=False))
    assert [p for p in said if p.startswith("error: controllers: rabbitmq_amqp_plain: False while rabbitmq_amqp_tls is False")]


def test_keys_set_while_off_warn(pki):
    said = problems(*amqp(pki, on=False, rabbitmq_amqp_tls_port=5675, rabbitmq_amqp_tls_verify_peer=True), "warnings")
    for key in ("rabbitmq_amqp_tls_port", "rabbitmq_amqp_tls_verify_peer"):
        assert [p for p in said if f"{key}: has no effect while rabbitmq_amqp_tls is False" in p], said
    assert [p for p in said if "tls_node_pem: has no effect while" in p and "rabbitmq_amqp_tls are False" in p]


@pytest.mark.parametrize("port,owner", [(5672, "RabbitMQ AMQP"), (11211, "memcached"), (25672, "the Erlang distribution")])
def test_the_tls_port_clashing_with_another_daemon_is_refused(pki, port, owner):
    said = problems(*amqp(pki, rabbitmq_amqp_tls_port=port))
    assert [p for p in said if p.startswith(f"error: controllers: rabbitmq_amqp_tls_port: port {port} is also {owner}")], said


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_the_switch_is_a_boolean(pki, value):
    said = problems(*amqp(pki, on=value))
    assert [p for p in said if p.startswith("error: controllers: rabbitmq_amqp_tls: ")], said


# --- the firewall, what the services are told, the broker's port -----------------------------------


@pytest.mark.parametrize("on,plain,ports", [(False, True, (5672,)), (True, True, (5671, 5672)), (True, False, (5671, 5672))])
def test_the_firewall_admits_5671_from_the_networks_of_5672(pki, on, plain, ports):
    hosts, group = amqp(pki, on=on, rabbitmq_amqp_plain=plain)
    rules = firewall.rules(build_site(hosts, group))
    assert rules.client_ports == ports  # 5672's rule stays when it is closed: it only drops strangers
    assert 5671 not in rules.cluster_ports
    assert ("5671" in files(hosts, group)[FIREWALL_NFT].content) is on


def test_what_the_services_are_told(pki):
    hosts, group = amqp(pki, on=False)
    assert set(build_site(hosts, group).client_strings(FAKE_SECRETS)) == {"memcached_servers", "transport_url",
                                                                           "database_connection", "mysql_wsrep_sync_wait",
                                                                           "heartbeat_timeout_threshold"}
    hosts, group = amqp(pki)
    said = build_site(hosts, group).client_strings(FAKE_SECRETS)
    assert said["transport_url"].count(":5672") == 3 and said["transport_url_tls"].count(":5671") == 3
    assert said["transport_url_tls"].replace(":5671", ":5672") == said["transport_url"]
    assert said["oslo_messaging_rabbit"].startswith("ssl = True, ssl_ca_file = ") and "ssl_cert_file" not in said["oslo_messaging_rabbit"]
    closed = build_site(*amqp(pki, rabbitmq_amqp_plain=False, rabbitmq_amqp_tls_verify_peer=True)).client_strings(FAKE_SECRETS)
    assert closed["transport_url"] == closed["transport_url_tls"]  # only TLS is left
    assert "ssl_cert_file" in closed["oslo_messaging_rabbit"]


@pytest.mark.parametrize("on,plain", [(False, True), (True, True), (True, False)])
def test_a_running_broker_is_read_on_either_amqp_port_whatever_the_setting(pki, on, plain):
    """A broker started before a switch listens on the other setting's port(s): 5672 or 5671 shows it runs."""
    from facts.rabbitmq import RabbitmqCluster

    args = cluster_fact_args(build_site(*amqp(pki, on=on, rabbitmq_amqp_plain=plain)))
    assert (args["port"], args["tls_port"]) == (5672, 5671)
    assert "ss -Hltn '( sport = :5672 or sport = :5671 )'" in RabbitmqCluster().command(**args)
    assert "ss -Hltn '( sport = :5672 )'" in RabbitmqCluster().command(port=5672)


def test_the_listener_filter_as_ss_reads_it():
    """The filter of RabbitmqCluster's command, run by this machine's ss against a listening socket."""
    import shutil
    import subprocess

    assert shutil.which("ss"), "ss (iproute2, in the Makefile's HOST_PACKAGES) is missing: make setup installs it"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        for ports, found in (((port, 1), True), ((1, port), True), ((1, 2), False)):
            flt = " or ".join(f"sport = :{p}" for p in ports)
            out = subprocess.run(["ss", "-Hltn", f"( {flt} )"], capture_output=True, text=True, timeout=10).stdout
            assert bool(out.strip()) is found, (ports, out)


def test_the_report_reads_the_listener_on_and_off(pki):
    for on in (False, True):
        site = build_site(*amqp(pki, on=on))
        (name, args), = [health_parts(site, "node02")["amqp_tls"]]
        assert name == "facts.rabbitmq:AmqpTls"
        assert dict(args) == {"address": site.controller("node02").address, "port": 5671,
                              "ca": peer_tls.paths("rabbitmq")["ca"] if on else ""}


# --- the fact and the row -------------------------------------------------------------------------


def test_the_fact_command_checks_the_certificate_only_when_on():
    from facts.rabbitmq import AmqpTls

    on = AmqpTls().command("10.77.0.11", 5671, "/etc/rabbitmq/openstack-tls/ca.pem")
    assert "openssl s_client -brief -connect 10.77.0.11:5671 -CAfile /etc/rabbitmq/openstack-tls/ca.pem" in on
    assert "-verify_return_error -verify_ip 10.77.0.11" in on and "timeout 10 " in on
    assert "-CAfile" not in AmqpTls().command("10.77.0.11", 5671)


@pytest.mark.parametrize("case,state,protocol,verified", [
    ("tls13", "tls", "TLSv1.3", True),
    ("tls12", "tls", "TLSv1.2", True),
    ("wrong_address", "unknown", None, False),
    ("off_answers", "tls", "TLSv1.3", False),
    ("refused", "stopped", None, False),
    ("plain", "plain", None, False),
])
def test_the_fact_reads_openssl_s_client(case, state, protocol, verified):
    got = capture("amqp_tls", case)
    assert (got["amqp_tls"], got["protocol"], got["verified"], got["error"]) == (state, protocol, verified, None)
    assert (got["detail"] == "IP address mismatch") is (case == "wrong_address")


@pytest.mark.parametrize("output,error", [
    ("__missing=openssl\n", "openssl not installed"),
    ("__arg_port=5671\nCONNECTION ESTABLISHED\n", "no exit status"),  # cut short
    ("__arg_port=5671\n__rc=124\n", "timed out"),
])
def test_the_fact_cannot_tell(output, error):
    from facts.rabbitmq import AmqpTls

    got = AmqpTls().process(lines(output))
    assert got["amqp_tls"] is None and error in got["error"]


def row_of(case_or_fact, on: bool, name="node01"):
    site = lab_site()
    site.data.update(rabbitmq_amqp_tls=on)
    fact = capture("amqp_tls", case_or_fact) if isinstance(case_or_fact, str) else case_or_fact
    return amqp_tls_rows(site, name, {"amqp_tls": fact})


def test_on_a_listener_answering_tls_with_the_node_certificate_is_ok():
    (row,) = row_of("tls13", True, "node02")
    assert (row.name, row.status, row.detail) == (
        "amqp tls", OK, "10.77.0.12:5671 answers TLSv1.3, certificate verified against the CA for 10.77.0.12")
    assert row_of("tls12", True)[0].status == OK


@pytest.mark.parametrize("case,said", [
    ("wrong_address", "10.77.0.11:5671: the TLS handshake failed: IP address mismatch"),
    ("refused", "10.77.0.11:5671: nothing listens"),
    ("plain", "10.77.0.11:5671: answers without TLS"),
    ("off_answers", "its certificate does not verify against the CA"),
    ({"amqp_tls": "tls", "protocol": "TLSv1.1", "verified": True, "detail": None, "error": None}, "negotiates TLSv1.1"),
    ({"amqp_tls": None, "protocol": None, "verified": False, "detail": None, "error": "openssl not installed"},
     "openssl not installed"),
])
def test_on_anything_else_fails_naming_the_listener(case, said):
    (row,) = row_of(case, True)
    assert row.status == FAIL and said in row.detail, row.detail


def test_off_no_row_while_nothing_answers_a_warning_when_something_does():
    assert row_of("refused", False) == []
    (row,) = row_of("off_answers", False)
    assert row.status == WARN and "10.77.0.11:5671 answers (tls) while rabbitmq_amqp_tls is off" in row.detail
    # a fact that could not be read fails, on or off: never skipped
    (row,) = amqp_tls_rows(lab_site(), "node01", {})
    assert row.status == FAIL


def test_the_captures_are_openssl_s_client_framed_by_the_probe():
    for case in ("tls13", "tls12", "wrong_address", "off_answers", "refused", "plain"):
        text = capture_text("amqp_tls", case)
        assert text.startswith("__arg_port=") and "\n__rc=" in text, case


# --- the switch: a rolling restart, announced --------------------------------------------------


def switch_case(data: dict, conf_sha1: bool = True, material: bool = False) -> dict:
    """A deployed lab (rabbitmq/config_changed's facts after) where rabbitmq.conf differs, and
    RabbitMQ's copy of the material is absent (`material` False)."""
    case = copy.deepcopy(opkit.load_case(opkit.CASES / "rabbitmq" / "config_changed.json"))
    case["data"] = data
    states = {"*": "$deployed", CONF: {"sha1": "0" * 40}}
    if not material:
        states.update({p: None for p in TLS_FILES})
    case["facts"]["*"]["FileStates"] = states
    return case


def planned(monkeypatch, case):
    import operations.rabbitmq as rabbitmq
    from operations import common

    said = {}

    def record(ops, action):
        common.announce(ops, action)
        said.update({n: [a for _, a in steps if a] for n, steps in common.announced().items()})

    monkeypatch.setattr(rabbitmq, "announce", record)
    return opkit.run(case), said


@pytest.mark.parametrize("on", [True, False])
def test_the_switch_restarts_one_broker_at_a_time_announced(tls_lab, monkeypatch, on):
    data = {"rabbitmq_amqp_tls": on, **({"peer_tls_ca_file": tls_lab["ca"]} if on else {})}
    got, said = planned(monkeypatch, switch_case(data, material=not on))
    assert said == {n: ["restart rabbitmq-server (one node at a time)"] for n in NODES}
    for name in NODES:
        ops = [op for op, _ in got[name]]
        assert not [op for op in ops if "cookie" in op or "together" in op], ops  # no whole-cluster stop
        restarts = [op for op in ops if op.startswith("RabbitMQ | rabbitmq: restart ")]
        assert restarts == [f"RabbitMQ | rabbitmq: restart {name}"], ops  # its own turn only
        written = [op for op in ops if op.startswith("RabbitMQ | rabbitmq: /etc/")]
        expected = {f"RabbitMQ | rabbitmq: {p}" for p in (TLS_FILES | {CONF} if on else {CONF})}
        assert set(written) == expected, written
        assert max(ops.index(op) for op in written) < ops.index(restarts[0])  # the files, then the restart


def test_switched_on_the_next_run_changes_nothing(tls_lab):
    case = switch_case({"rabbitmq_amqp_tls": True, "peer_tls_ca_file": tls_lab["ca"]})
    case["facts"] = opkit.load_case(opkit.CASES / "rabbitmq" / "config_changed.json")["facts_after"]
    assert opkit.run(case) == {n: [] for n in NODES}
