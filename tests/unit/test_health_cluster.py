"""The health model's per-node Galera/RabbitMQ/memcached rows, its cluster-wide rows, and the
report's text and JSON (whose keys and wording tests/lab and lab/drills.py read), offline."""

from __future__ import annotations

import json

import pytest

from healthkit import NAMES, capture, cluster, healthy, lab_site, row, statuses

from health.checks import evaluate, partition_minority, rabbitmq_cluster_row
from health.report import FAIL, INFO, OK, WARN, write_json

# --- the VIP -------------------------------------------------------------------------------------


def test_split_brain_names_both_holders_and_fails_them():
    site = lab_site()
    results = healthy(site)
    results["node03"]["vip"]["holds_vip"] = True
    report = evaluate(site, results)
    vip = cluster(report, "vip holder")
    assert vip.status == FAIL
    assert vip.detail == "split brain: 10.77.0.100 is held by node01, node03"
    assert vip.hosts == ("node01", "node03")
    assert report.vip_holders == ["node01", "node03"]
    assert report.host_failures("node02") == []
    assert report.host_failures("node03") == ["cluster vip holder: split brain: 10.77.0.100 is held by node01, node03"]


def test_no_vip_holder_fails_every_host():
    site = lab_site()
    results = healthy(site, holder=None)
    report = evaluate(site, results)
    assert cluster(report, "vip holder").detail == "no controller holds 10.77.0.100"
    assert all(report.host_failures(n) for n in NAMES)


def test_an_unreadable_vip_interface_is_blamed_in_the_vip_holder_row():
    site = lab_site()
    results = healthy(site)
    results["node02"]["vip"] = capture("vip", "no_device")
    vip = cluster(evaluate(site, results), "vip holder")
    assert vip.status == FAIL and vip.hosts == ("node02",)
    assert vip.detail == "node01 holds 10.77.0.100; cannot read the interface on node02"


# --- Galera --------------------------------------------------------------------------------------


def test_galera_node_not_synced_fails_that_node():
    site = lab_site()
    results = healthy(site)
    results["node02"]["galera"].update(wsrep_local_state_comment="Donor/Desynced")
    report = evaluate(site, results)
    assert statuses(report, "node02")["galera"] == FAIL
    # The host's own galera row explains it; the cluster galera row is not repeated for it.
    assert report.host_failures("node02") == ["galera: wsrep_local_state_comment is Donor/Desynced (wanted Synced)"]
    assert cluster(report, "galera").hosts == ("node02",)
    assert report.host_failures("node01") == []


def desynced_by_backup(site, node: str, backup: bool = True, **state) -> dict:
    """The healthy site's results with `node` Donor/Desynced (by its running backup when
    `backup`) and its database server DOWN in every HAProxy (the Galera check answers 503)."""
    results = healthy(site)
    results[node]["galera"].update({"wsrep_local_state_comment": "Donor/Desynced", **({"backup": "running"} if backup else {}),
                                    **state})
    for n in NAMES:
        results[n]["haproxy_servers"]["listeners"]["mariadb"][node].update(status="DOWN", check="Layer7 wrong status")
    return results


def test_a_node_desynced_by_its_own_backup_warns_and_fails_nothing():
    """A deploy while the backup node streams a backup (wsrep_desync=ON for its duration): its
    galera rows WARN, its database server DOWN in every HAProxy is one INFO row, nothing FAILs."""
    site = lab_site()
    report = evaluate(site, desynced_by_backup(site, "node03"))
    assert report.ok and report.failures() == []
    assert row(report, "node03", "galera").status == WARN and "its own backup" in row(report, "node03", "galera").detail
    assert cluster(report, "galera").status == WARN and cluster(report, "galera").hosts == ("node03",)
    for n in NAMES:
        got = row(report, n, "backup servers")
        assert got.status == INFO and got.detail.startswith("mariadb: node03 DOWN")
        assert row(report, n, "backend mariadb").status == OK  # node01 UP, node02 UP: the rest judged as usual
    assert row(report, "node01", "galera").status == OK


@pytest.mark.parametrize("backup, state, failing", [
    (False, {}, "wsrep_local_state_comment is Donor/Desynced"),  # desynced, no backup of its own: an SST donor, or by hand
    (True, {"wsrep_ready": "OFF"}, "wsrep_ready is OFF"),  # a backup runs, but the node is not ready either
    (True, {"wsrep_cluster_status": "non-Primary"}, "wsrep_cluster_status is non-Primary"),
    (True, {"wsrep_local_state_comment": "Joined"}, "wsrep_local_state_comment is Joined"),  # not what a backup does
])
def test_a_desync_the_backup_does_not_explain_still_fails(backup, state, failing):
    site = lab_site()
    report = evaluate(site, desynced_by_backup(site, "node03", backup, **state))
    assert statuses(report, "node03")["galera"] == FAIL and failing in row(report, "node03", "galera").detail
    assert cluster(report, "galera").status == FAIL
    assert row(report, "node01", "backend mariadb").status == FAIL  # its server DOWN on the VIP holder
    assert not [c for c in report.hosts["node01"] if c.name == "backup servers"]


def report_with(node: str, key: str, fact: dict):
    """The report of the lab site when `node`'s `key` fact is `fact` (every other fact healthy)."""
    site = lab_site()
    results = healthy(site)
    results[node][key] = fact
    return evaluate(site, results)


def test_galera_non_primary_capture_names_every_problem():
    assert row(report_with("node03", "galera", capture("galera", "non_primary")), "node03", "galera").detail == (
        "wsrep_cluster_status is non-Primary (wanted Primary); wsrep_local_state_comment is Initialized "
        "(wanted Synced); wsrep_ready is OFF (wanted ON); cluster size 1, expected 3 (controllers up)")


def test_galera_size_must_match_the_controllers_up():
    site = lab_site()
    results = healthy(site)
    for n in NAMES:
        results[n]["galera"]["wsrep_cluster_size"] = "2"
    report = evaluate(site, results)
    assert "cluster size 2, expected 3" in " ".join(report.host_failures("node01"))
    # One controller down: a two-node Primary cluster is what is expected of the others.
    del results["node03"]
    report = evaluate(site, results)
    assert statuses(report, "node01")["galera"] == OK
    assert statuses(report, "node03") == {"reachable": FAIL}
    assert cluster(report, "controllers up").hosts == ("node03",)
    assert cluster(report, "controllers up").detail == "2/3; not verified: node03"


def test_galera_two_primary_components_of_one_cluster_are_a_split_brain():
    # the issue's --limit accident: node03 bootstrapped alone, same cluster UUID, disjoint members
    site = lab_site()
    results = healthy(site)
    two = "10.77.0.11:3306,10.77.0.12:3306"
    for n in ("node01", "node02"):
        results[n]["galera"].update(wsrep_cluster_size="2", wsrep_incoming_addresses=two)
    results["node03"]["galera"].update(wsrep_cluster_size="1", wsrep_incoming_addresses="10.77.0.13:3306")
    split = cluster(evaluate(site, results), "galera")
    assert split.status == FAIL
    assert split.detail.startswith("split brain: 2 Primary components of one cluster: {node01, node02} and {node03}")
    assert split.hosts == NAMES
    # one component seen from every node: no split brain
    assert cluster(evaluate(site, healthy(site)), "galera").status == OK


def test_galera_split_clusters_are_flagged():
    site = lab_site()
    results = healthy(site)
    results["node03"]["galera"].update(wsrep_cluster_state_uuid="u2")
    report = evaluate(site, results)
    assert "different clusters" in cluster(report, "galera").detail
    assert cluster(report, "galera").detail == "nodes are in different clusters: node01, node02 in u1; node03 in u2"
    # A Disconnected node (empty uuid, seen on the lab) is not "another cluster": it is not Synced.
    results = healthy(site)
    results["node03"]["galera"].update(wsrep_cluster_state_uuid="", wsrep_cluster_status="Disconnected",
                                       wsrep_local_state_comment=None, wsrep_cluster_size="0")
    galera = cluster(evaluate(site, results), "galera")
    assert galera.detail == "2/3 nodes Primary, Synced, of size 3; not: node03" and galera.hosts == ("node03",)


# --- RabbitMQ, memcached ---------------------------------------------------------------------------


def test_rabbitmq_missing_member_and_partition():
    site = lab_site()
    results = healthy(site)
    results["node02"]["rabbitmq"]["running_nodes"] = ["rabbit@node01", "rabbit@node02"]
    results["node01"]["rabbitmq"]["partitions"] = ["rabbit@node01: rabbit@node03"]
    report = evaluate(site, results)
    assert "not running here: rabbit@node03" in report.host_failures("node02")[0]
    assert "partitions: rabbit@node01: rabbit@node03" in report.host_failures("node01")[0]
    assert cluster(report, "rabbitmq").hosts == ("node01", "node02")


def test_a_partition_that_outlived_the_heal_names_the_minority_to_restart():
    """Found by CI (test_35, the holder cut off one-sided): after the heal every broker ran,
    node03 saw only itself and node01/node02 each other, partitions recorded on both sides."""
    site = lab_site()
    results = healthy(site)
    for n in ("node01", "node02"):
        results[n]["rabbitmq"].update(running_nodes=["rabbit@node01", "rabbit@node02"],
                                      disk_nodes=["rabbit@node01", "rabbit@node02", "rabbit@node03"])
        results[n]["rabbitmq"]["partitions"] = [f"rabbit@{n}: rabbit@node03"]
    results["node03"]["rabbitmq"]["running_nodes"] = ["rabbit@node03"]
    results["node03"]["rabbitmq"]["partitions"] = ["rabbit@node03: rabbit@node01, rabbit@node02"]
    row = cluster(evaluate(site, results), "rabbitmq")
    assert row.status == FAIL and row.hosts == ("node01", "node02", "node03")
    assert "restart rabbitmq-server on node03, the minority side, one node at a time" in row.detail
    assert "the deploy does it" in row.detail  # every controller up: the plan's (rabbitmq_plan)
    # No partition recorded (a broker merely not running everywhere yet): nothing named.
    for n in NAMES:
        results[n]["rabbitmq"]["partitions"] = []
    assert "restart" not in cluster(evaluate(site, results), "rabbitmq").detail
    # A majority side whose members disagree: the picture is partial, nothing named.
    for n in NAMES:
        results[n]["rabbitmq"]["partitions"] = ["x"]
    results["node02"]["rabbitmq"]["running_nodes"] = ["rabbit@node02"]
    assert "restart" not in cluster(evaluate(site, results), "rabbitmq").detail
    # An even split (4 up, 2 and 2, each side seeing exactly itself): neither side is a majority,
    # so nobody is named (restarting either half could leave the other as the one that lost).
    four = ["node01", "node02", "node03", "node04"]

    def split(*sides):
        return {n: {"rabbitmq": {"running_nodes": [f"rabbit@{m}" for m in side], "partitions": ["x"], "error": None}}
                for side in sides for n in side}

    assert partition_minority(split(("node01", "node02"), ("node03", "node04")), four, four) == []
    # Half of them with the other half split again: half is still no majority (`>`, not `>=`; the
    # even split above cannot tell them apart, both halves would count and two majorities name nobody).
    assert partition_minority(split(("node01", "node02"), ("node03",), ("node04",)), four, four) == []
    # A true majority of 3 of 4: the one left is named (the rows above are not empty by accident).
    assert partition_minority(split(("node01", "node02", "node03"), ("node04",)), four, four) == ["node04"]


@pytest.mark.parametrize("records, named", [
    # CI's soak (stop 26): node02 cut off and healed; every broker running, these on every node
    (["rabbit@node02: rabbit@node01, rabbit@node03", "rabbit@node03: rabbit@node02"], ["node02"]),
    (["rabbit@node02: rabbit@node01, rabbit@node03"], ["node02"]),  # the minority's record alone
    (["rabbit@node03: rabbit@node02"], []),  # only the majority's: which side lost is not said
    (["rabbit@node02: rabbit@node01"], []),  # one of two others: not a majority
    (["rabbit@node02: rabbit@node01, rabbit@node03", "rabbit@node01: rabbit@node02, rabbit@node03"], []),  # two "minorities"
    (["rabbit@node02: rabbit@node01, rabbit@node03, rabbit@node09"], []),  # not exactly the others
])
def test_a_partition_recorded_after_a_heal_names_the_side_its_records_say(records, named):
    site = lab_site()
    results = healthy(site)
    for n in NAMES:
        results[n]["rabbitmq"]["partitions"] = list(records)
    row = cluster(evaluate(site, results), "rabbitmq")
    assert row.status == FAIL
    assert (f"restart rabbitmq-server on {', '.join(named)}, the minority side" in row.detail) == bool(named), row.detail
    assert ("the deploy does it" in row.detail) == bool(named), row.detail  # the views whole: the plan's
    assert partition_minority(results, list(NAMES), list(NAMES)) == named


def test_a_healed_partition_whose_nodes_report_different_records_names_nobody():
    site = lab_site()
    results = healthy(site)
    for n in NAMES:
        results[n]["rabbitmq"]["partitions"] = ["rabbit@node02: rabbit@node01, rabbit@node03"]
    results["node01"]["rabbitmq"]["partitions"] = []  # a partial picture
    assert partition_minority(results, list(NAMES), list(NAMES)) == []
    # five controllers, two cut off together: both named
    five = [f"node0{i}" for i in range(1, 6)]
    split = {n: {"rabbitmq": {"running_nodes": [f"rabbit@{m}" for m in five], "error": None, "partitions": [
        "rabbit@node04: rabbit@node01, rabbit@node02, rabbit@node03",
        "rabbit@node05: rabbit@node01, rabbit@node02, rabbit@node03"]}} for n in five}
    assert partition_minority(split, five, five) == ["node04", "node05"]
    # four controllers, node04 cut off: named; with another record that does not fit that split, nobody
    four = five[:4]

    def healed(*lines):
        return {n: {"rabbitmq": {"running_nodes": [f"rabbit@{m}" for m in four], "error": None, "partitions": list(lines)}}
                for n in four}

    alone = "rabbit@node04: rabbit@node01, rabbit@node02, rabbit@node03"
    assert partition_minority(healed(alone, "rabbit@node03: rabbit@node04"), four, four) == ["node04"]
    assert partition_minority(healed(alone, "rabbit@node03: rabbit@node01, rabbit@node02"), four, four) == []
    # an even split recorded (2 and 2): no side is a minority
    assert partition_minority(healed("rabbit@node03: rabbit@node01, rabbit@node02",
                                     "rabbit@node04: rabbit@node01, rabbit@node02"), four, four) == []


def test_rabbitmq_partitioned_capture():
    assert row(report_with("node01", "rabbitmq", capture("rabbitmq", "partitioned")), "node01", "rabbitmq").detail == (
        "not running here: rabbit@node03; partitions: rabbit@node01: rabbit@node03; "
        "alarms: memory alarm on rabbit@node02")


def test_rabbitmq_row_names_a_member_not_running():
    # The lab, node03 powered off 31 s before (2026-12-07): node01's API answered running
    # node01 and node02 with node03 a disc member; the row names node03.
    site = lab_site()
    results = healthy(site)
    del results["node03"]
    for n in results:
        results[n]["galera"]["wsrep_cluster_size"] = "2"
        results[n]["rabbitmq"].update(running_nodes=["rabbit@node01", "rabbit@node02"],
                                      disk_nodes=["rabbit@node01", "rabbit@node02", "rabbit@node03"])
    rabbitmq = row(evaluate(site, results), "node01", "rabbitmq")
    assert (rabbitmq.status, rabbitmq.detail) == (OK, "running rabbit@node01, rabbit@node02; members not running: rabbit@node03")
    assert row(evaluate(site, healthy(site)), "node01", "rabbitmq").detail == \
        "running rabbit@node01, rabbit@node02, rabbit@node03"


def test_rabbitmq_still_listing_a_dead_node():
    # Seen on the lab: node01 stopped, node02/node03 still list rabbit@node01 as running.
    site = lab_site()
    results = healthy(site, holder="node02")
    del results["node01"]
    for n in ("node02", "node03"):
        results[n]["galera"]["wsrep_cluster_size"] = "2"
    report = evaluate(site, results)
    assert report.host_failures("node02") == [
        "rabbitmq: still listed as running though unreachable for this check: rabbit@node01"
    ]
    results["node02"]["rabbitmq"]["running_nodes"].append("rabbit@node09")
    assert "unexpected members: rabbit@node09" in evaluate(site, results).host_failures("node02")[0]


def test_cluster_rows_catch_not_ready_galera_and_rabbit_alarms():
    site = lab_site()
    results = healthy(site)
    results["node02"]["galera"]["wsrep_ready"] = "OFF"
    results["node03"]["rabbitmq"]["alarms"] = ["memory alarm on rabbit@node03"]
    report = evaluate(site, results)
    assert cluster(report, "galera").hosts == ("node02",)
    assert cluster(report, "rabbitmq").hosts == ("node03",)
    assert report.host_failures("node03") == ["rabbitmq: alarms: memory alarm on rabbit@node03"]
    healthy_report = evaluate(site, healthy(site))
    assert cluster(healthy_report, "galera").detail == "3 nodes, Primary, all Synced, size 3"
    assert cluster(healthy_report, "rabbitmq").detail == "3 running members seen by every checked node"
    assert cluster(healthy_report, "memcached").detail == "answering on 3/3"


def test_memcached_not_answering():
    site = lab_site()
    results = healthy(site)
    results["node03"]["memcached"] = capture("memcached", "refused")
    report = evaluate(site, results)
    assert statuses(report, "node03")["memcached"] == FAIL
    assert cluster(report, "memcached").detail == "answering on 2/3; not on node03"
    assert cluster(report, "memcached").hosts == ("node03",)


# --- partial runs ----------------------------------------------------------------------------------


def test_limit_run_checks_the_hosts_in_it_without_blaming_the_others():
    # `pyinfra inventories/lab.py verify.py --limit node02`: node01 and node03 are not checked.
    site = lab_site()
    results = {"node02": healthy(site, holder="node01")["node02"]}
    report = evaluate(site, results, skipped=("node01", "node03"))
    assert report.ok, report.failures()
    assert statuses(report, "node01") == {"reachable": INFO}
    assert statuses(report, "node02")["galera"] == OK  # size 3 with the others assumed up
    assert cluster(report, "vip holder").status == INFO
    assert cluster(report, "controllers up").detail == "3/3; not in this run: node01, node03"
    # A real fault on the checked host still fails it.
    results["node02"]["vip"]["holds_vip"] = True
    results["node02"]["memcached"] = capture("memcached", "refused")
    report = evaluate(site, results, skipped=("node01", "node03"))
    assert cluster(report, "vip holder").status == OK
    assert [r.split(":")[0] for r in report.host_failures("node02")] == ["memcached"]


def test_pending_hosts_are_not_failures():
    site = lab_site()
    results = {"node01": healthy(site)["node01"]}
    report = evaluate(site, results, pending=("node02", "node03"))
    assert row(report, "node02", "reachable").detail == "pending: not collected yet"
    assert report.host_failures("node01") == []


# --- the report's text and JSON --------------------------------------------------------------------


def test_render_and_json_of_a_healthy_report():
    site = lab_site()
    report = evaluate(site, healthy(site), generated_at="2026-11-25T17:00:00Z")
    text = report.render()
    assert "node01 (VIP holder)" in text and text.endswith("health: OK")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True
    # The keys monitoring, tests/lab and lab/drills.py read.
    assert list(data) == ["ok", "generated_at", "controllers", "vip_holders", "failures", "warnings", "hosts", "cluster"]
    assert data["controllers"] == list(NAMES) and data["failures"] == []
    assert [c["name"] for c in data["cluster"]] == ["controllers up", "vip holder", "galera", "rabbitmq", "memcached"]
    assert data["hosts"]["node01"][0] == {"name": "vip", "status": "ok", "detail": "holds 10.77.0.100 on enp8s0f0",
                                          "hosts": []}


def test_write_json(tmp_path):
    site = lab_site()
    results = healthy(site)
    results["node02"]["memcached"] = capture("memcached", "refused")
    path = tmp_path / "health.json"
    write_json(evaluate(site, results, generated_at="2026-11-25T17:00:00Z"), results, str(path))
    data = json.loads(path.read_text())
    assert data["ok"] is False
    assert data["generated_at"] == "2026-11-25T17:00:00Z"
    assert data["vip_holders"] == ["node01"]
    assert data["failures"][0].startswith("node02: memcached: memcached stats: exit status 1")
    assert {c["name"]: c["status"] for c in data["hosts"]["node02"]}["memcached"] == "FAIL"
    assert data["facts"]["node02"]["memcached"]["answering"] is False
    assert data["facts"]["node01"]["haproxy_servers"]["listeners"]["mariadb"]["node03"]["status"] == "UP"
    assert [c for c in data["cluster"] if c["name"] == "memcached"][0]["hosts"] == ["node02"]
    assert not (tmp_path / "health.json.tmp").exists()
    text = evaluate(site, results).render()
    assert text.endswith("health: FAILED (2 failed checks)")  # node02's row and the cluster row


@pytest.mark.parametrize("fact, detail", [
    (capture("galera", "down"), "mariadb not running (unit inactive)"),
    ({"installed": True, "active": True, "mysqld": "running", "query": "failed", "error": None},
     "mariadb runs but did not answer (starting, in a state transfer, or hung)"),
    ({"installed": False, "active": False, "error": None}, "MariaDB not installed"),
])
def test_galera_node_not_serving_says_why(fact, detail):
    report = report_with("node03", "galera", fact)
    assert row(report, "node03", "galera").detail == detail
    assert cluster(report, "galera").hosts == ("node03",)


def test_a_kept_partition_is_the_deploys_only_with_every_controller_up():
    """The report says the deploy restarts the minority only when no controller is down (the
    plan needs every broker running: operations/rabbitmq_plan.py); with one down it names the
    minority for the operator alone."""
    up = ["node01", "node02", "node03", "node04"]
    results = {n: {"rabbitmq": {"running_nodes": [f"rabbit@{m}" for m in up], "error": None,
                                "partitions": ["rabbit@node04: rabbit@node01, rabbit@node02, rabbit@node03"]}}
               for n in up}
    alone = rabbitmq_cluster_row(results, up, up, [])
    assert "restart rabbitmq-server on node04, the minority side" in alone.detail and "the deploy does it" in alone.detail
    one_down = rabbitmq_cluster_row(results, up, up, ["node05"])
    assert "restart rabbitmq-server on node04, the minority side" in one_down.detail, one_down.detail
    assert "the deploy does it" not in one_down.detail, one_down.detail
