"""Maintenance, offline: the decision from the whole picture (refusals as a table), the
runtime-API sequences (their requests and shell: test_haproxy_api.py), the marker's fact and
the report's rows of a controller in maintenance. The command's operations per host are the
cases tests/unit/operations/maintenance/*.json (test_operation_cases)."""

from __future__ import annotations

import copy

import pytest
from healthkit import F, NAMES, api_down, healthy, lab_site, row, servers, statuses

from health.checks import evaluate
from health.settle import lagging
from health.report import FAIL, INFO, OK
from operations import maintenance_plan as M

ORDER = list(NAMES)
UP = {"installed": True, "running": True, "broker": True, "nodes": [f"rabbit@{n}" for n in NAMES]}
SYNCED = {"wsrep_cluster_status": "Primary", "wsrep_local_state_comment": "Synced", "wsrep_ready": "ON"}


def node(out=False, holds=False, vrrp="BACKUP", synced=True, broker=True):
    return {"maintenance": {"out": out, "error": None},
            "galera": dict(SYNCED) if synced else {"wsrep_cluster_status": "non-Primary"},
            "rabbitmq": {**UP, "broker": broker, "running": broker},
            "keepalived": {"active": "active", "vrrp_state": "FAULT" if out else vrrp},
            "vip": {"holds_vip": holds}}


def picture(**changes):
    p = {n: node(holds=n == "node01", vrrp="MASTER" if n == "node01" else "BACKUP") for n in NAMES}
    for name, kwargs in changes.items():
        p[name] = None if kwargs is None else node(**kwargs)
    return p


# --- the decision --------------------------------------------------------------------------


def test_the_writer_is_the_one_the_site_names_not_the_first_of_the_order():
    assert M.decide("out", "node02", ORDER, picture(), writer="node02").writer is True
    assert M.decide("back", "node02", ORDER, picture(node02={"out": True}), writer="node02").writer is True
    assert M.decide("out", "node01", ORDER, picture(), writer="node02").writer is False


def test_out_of_the_vip_holder_and_writer():
    d = M.decide("out", "node01", ORDER, picture(), writer="node01")
    assert (d.holds_vip, d.writer, d.already, d.in_maintenance) == (True, True, False, ("node01",))


def test_out_again_converges_and_back_lists_the_others_still_out():
    p = picture(node02={"out": True}, node03={"out": False})
    assert M.decide("out", "node02", ORDER, p, writer="node01").already is True
    d = M.decide("back", "node02", ORDER, p, writer="node01")
    assert (d.already, d.writer, d.in_maintenance) == (False, False, ())
    assert M.decide("back", "node03", ORDER, p, writer="node01").already is True  # not out: back converges, nothing refused


@pytest.mark.parametrize("action, name, changes, words", [
    ("sideways", "node02", {}, ["'sideways' is neither 'out' nor 'back'", "--data action=out|back"]),
    ("out", "node09", {}, ["'node09' is not a controller of this inventory (node01, node02, node03)"]),
    ("out", "node02", {"node03": None}, ["node03 could not be read", "nothing is changed", "deploy.py --limit node03"]),
    ("back", "node02", {"node03": None}, ["node03 could not be read"]),
    # another node already out: 1 of 3 would serve
    ("out", "node02", {"node03": {"out": True}},
     ["would leave 1 of 3 Galera members serving (node01)", "majority (2)", "make maintenance-back NODE=node03"]),
    # a node down (not Synced, no broker): taking another out leaves one
    ("out", "node02", {"node03": {"synced": False, "broker": False}},
     ["would leave 1 of 3 Galera members serving", "repair the others first"]),
    ("out", "node02", {"node03": {"broker": False}}, ["1 of 3 RabbitMQ brokers running (node01)"]),
    ("out", "node01", {"node02": {"vrrp": "FAULT"}, "node03": {"vrrp": "FAULT"}},
     ["node01 holds the VIP and no other controller can take it", "node02 FAULT, node03 FAULT"]),
])
def test_refusals_name_the_node_and_the_fix(action, name, changes, words):
    with pytest.raises(M.Refusal) as exc:
        M.decide(action, name, ORDER, picture(**changes), writer="node01")
    for w in words:
        assert w in str(exc.value), str(exc.value)


def test_a_standby_goes_out_even_when_no_other_can_take_the_vip():
    # it does not hold the VIP: nothing moves
    d = M.decide("out", "node03", ORDER, picture(node02={"vrrp": "FAULT"}), writer="node01")
    assert d.holds_vip is False


def test_five_controllers_allow_two_out():
    order = [f"node0{i}" for i in range(1, 6)]
    p = {n: node() for n in order}
    p["node05"] = node(out=True)
    assert M.decide("out", "node04", order, p, writer="node01").in_maintenance == ("node04", "node05")
    p["node04"] = node(out=True)
    with pytest.raises(M.Refusal, match="2 of 5 Galera members serving"):
        M.decide("out", "node03", order, p, writer="node01")


# --- the runtime API ------------------------------------------------------------------------


def test_out_moves_the_database_at_once_and_drains_the_apis():
    cmds = M.out_commands(["mariadb", "keystone"], "mariadb", "node01", "/run/s", 10)
    assert "'set server mariadb/node01 state maint; shutdown sessions server mariadb/node01'" in cmds[0]
    assert "drain" not in cmds[0]  # a drained writer keeps writing while the next one takes new sessions
    assert "'set server keystone/node01 state drain'" in cmds[1]
    assert "seq 10" in cmds[2] and "skip=mariadb" in cmds[2]
    assert "'set server keystone/node01 state maint; shutdown sessions server keystone/node01'" in cmds[3]
    assert "seq" not in M.out_commands(["mariadb", "keystone"], "mariadb", "node01", "/run/s", 0)[2]


def test_back_restores_the_writer_order_only_for_the_writer():
    wait = lambda check, what: f"WAIT[{what}]"  # noqa: E731
    writer = M.back_commands(["mariadb", "keystone"], "mariadb", "node01", ORDER, "/run/s", True, wait)
    assert "set server mariadb/node01 state ready; set server keystone/node01 state ready" in writer[0]
    assert "WAIT[mariadb/node01 UP in HAProxy]" in writer[1]
    assert "'shutdown sessions server mariadb/node02; shutdown sessions server mariadb/node03'" in writer[2]
    assert len(M.back_commands(["mariadb"], "mariadb", "node02", ORDER, "/run/s", False, wait)) == 1


# --- the marker's fact ------------------------------------------------------------------------


@pytest.mark.parametrize("output, out, error", [
    (["maintenance=1"], True, None),
    (["maintenance=0"], False, None),
    (["maintenance="], False, None),  # no file: not in maintenance
    ([], None, "maintenance marker: nothing read"),
])
def test_the_marker_fact(output, out, error):
    got = F.Maintenance().process(output)
    assert (got["out"], got["error"]) == (out, error)


# --- the report ----------------------------------------------------------------------------


def out_of_service(site, name="node02", results=None):
    """The lab (or `results`) with `name` in maintenance as the command leaves it."""
    results = healthy(site) if results is None else results
    maint = {(lst.name, name): "MAINT" for lst in site.listeners}
    for n in NAMES:
        results[n]["haproxy_servers"] = servers(site, down=api_down(site), status=maint)
        results[n]["rabbitmq"]["running_nodes"] = [f"rabbit@{x}" for x in NAMES if x != name]
    results[name]["maintenance"] = {"out": True, "error": None}
    results[name]["keepalived"]["vrrp_state"] = "FAULT"
    results[name]["rabbitmq"] = {**F.RabbitmqMembers.default(), "error": "rabbitmqctl: nodedown"}
    return results


def test_a_controller_in_maintenance_is_reported_as_such_not_failed():
    site = lab_site()
    report = evaluate(site, out_of_service(site))
    assert report.ok, report.failures()
    assert row(report, "node02", "maintenance").status == INFO
    assert statuses(report, "node02")["keepalived"] == INFO and statuses(report, "node02")["rabbitmq"] == INFO
    assert row(report, "node01", "maintenance servers").detail == "node02 in MAINT on every listener (in maintenance)"
    assert row(report, "node01", "rabbitmq").status == OK
    assert "maintenance" not in statuses(report, "node01")


@pytest.mark.parametrize("breaks, host, check, words", [
    (lambda r, s: r["node03"]["haproxy_servers"]["listeners"]["mariadb"]["node02"].update(status="UP"),
     "node03", "maintenance servers", "mariadb: node02 is UP though in maintenance"),
    (lambda r, s: (r["node02"]["vip"].update(holds_vip=True), r["node01"]["vip"].update(holds_vip=False)),
     "node02", "vip", "in maintenance but holds 10.77.0.100"),
    (lambda r, s: r["node02"]["keepalived"].update(vrrp_state="BACKUP"), "node02", "keepalived", "could take the VIP"),
    (lambda r, s: r["node02"].update(rabbitmq=copy.deepcopy(r["node01"]["rabbitmq"])), "node02", "rabbitmq",
     "its broker runs"),
    (lambda r, s: r["node02"].update(maintenance={"out": None, "error": "no answer"}), "node02", "maintenance",
     "no answer"),
])
def test_what_would_let_traffic_reach_it_fails(breaks, host, check, words):
    site = lab_site()
    results = out_of_service(site)
    breaks(results, site)
    failed = row(evaluate(site, results), host, check)
    assert failed.status == FAIL and words in failed.detail, failed


def test_servers_in_maint_are_not_waited_for_by_the_report():
    site = lab_site()
    results = out_of_service(site)
    assert lagging("node01", results) == []  # node02 Synced, its mariadb server in MAINT: settled
    results["node01"]["haproxy_servers"]["listeners"]["mariadb"]["node02"]["status"] = "DOWN"
    assert lagging("node01", results) == ["mariadb/node02 DOWN"]


# --- with the external VIP, the firewall and the certificate (main's rows) ---------------------


def test_every_vrrp_instance_tracks_the_marker():
    from config.files import KEEPALIVED_CONF
    from test_external_vip import EXTERNAL, files_of, instances

    conf = files_of(**EXTERNAL)[KEEPALIVED_CONF]
    assert conf.count("track_file maintenance {") == 1
    blocks = instances(conf)
    assert list(blocks) == ["internal_vip_121", "external_vip_122"]
    for name, block in blocks.items():
        tracked = block.split("track_file {", 1)[1].split("}", 1)[0].split()
        assert tracked == ["haproxy_down", "maintenance"], name


def ext_out_of_service():
    from test_external_vip import ext_results, ext_site

    site = ext_site()
    results = out_of_service(site, results=ext_results(site, holder="node01"))
    results["node02"]["keepalived"]["vrrp_states"] = {"internal_vip_121": "FAULT", "external_vip_78": "FAULT"}
    return site, results


def test_in_maintenance_with_an_external_vip_its_other_rows_are_judged_as_usual():
    site, results = ext_out_of_service()
    report = evaluate(site, results)
    assert report.ok, report.failures()
    assert [n for n in statuses(report, "node02") if not n.startswith("backend")] == [
        "maintenance", "vip", "external vip", "keepalived", "haproxy", "maintenance servers", "tls certificate",
        "galera", "rabbitmq", "memcached", "firewall"]
    assert row(report, "node02", "external vip").detail == "in maintenance, does not hold 10.77.0.101"
    assert row(report, "node02", "keepalived").status == INFO
    assert statuses(report, "node02")["tls certificate"] == OK and statuses(report, "node02")["firewall"] == OK
    results["node02"]["firewall"]["loaded"] = False  # in maintenance or not, a firewall not loaded fails
    assert row(evaluate(site, results), "node02", "firewall").status == FAIL


@pytest.mark.parametrize("breaks, check, words", [
    (lambda r: r["node02"]["external_vip"].update(holds_vip=True), "external vip", "in maintenance but holds 10.77.0.101"),
    (lambda r: r["node02"]["keepalived"]["vrrp_states"].update(external_vip_78="BACKUP"), "keepalived",
     "VRRP external_vip_78 BACKUP though in maintenance"),
])
def test_in_maintenance_it_must_not_hold_or_take_the_external_vip(breaks, check, words):
    site, results = ext_out_of_service()
    breaks(results)
    failed = row(evaluate(site, results), "node02", check)
    assert failed.status == FAIL and words in failed.detail, failed
