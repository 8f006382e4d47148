"""Monitoring in the health report (health/monitoring.py): PrometheusTargets' and
AlertmanagerCluster's process() on captured answers (captures/prometheus, captures/alertmanager),
the `prometheus` and `alertmanager` rows of each controller (only with monitoring_enabled), the
targets verify's settle loop waits for, and the facts the report collects."""

from __future__ import annotations

import copy

import healthkit
import pytest
from healthkit import F, FakeHost, capture, healthy, lab_site, row, statuses

import operations.verify as V
from config.monitoring import JOBS
from health.checks import evaluate
from health.monitoring import lagging_targets, settling
from health.report import FAIL, OK, WARN
from operations.before import health_parts

NODES = ("node01", "node02", "node03")


def site():
    s = lab_site()
    s.data.update(monitoring_enabled=True)
    return s


def targets(down=(), health="down"):
    return healthkit.targets(site(), down, health)


def cluster(peers=NODES, status="ready"):
    return healthkit.peers(site(), list(peers), status)


def monitored(s, **changes):
    """Every controller healthy, monitoring answering; `changes`: {node: {key: fact}}."""
    results = healthy(s)
    for n, facts in changes.items():
        results[n].update(copy.deepcopy(facts))
    return results


# --- the facts on captured answers ---------------------------------------------------------------


def test_prometheus_targets_read_from_a_capture():
    got = capture("prometheus", "some_down")
    assert got["answering"] and got["error"] is None
    assert len(got["targets"]) == len(JOBS) * 3
    by = {(t["job"], t["node"]): t for t in got["targets"]}
    assert by[("prometheus", "node01")]["health"] == "up" and by[("prometheus", "node01")]["last_error"] == ""
    assert by[("rabbitmq", "node02")]["health"] == "down"
    assert "connection refused" in by[("rabbitmq", "node02")]["last_error"]
    assert by[("alertmanager", "node03")]["instance"] == "127.0.0.13:29093"


@pytest.mark.parametrize("key", ["prometheus", "alertmanager"])
def test_a_daemon_that_does_not_answer_is_an_error(key):
    got = capture(key, "refused")
    assert got["answering"] is False
    assert "exit status 1" in got["error"] and "Connection refused" in got["error"]


def test_alertmanager_cluster_read_from_captures():
    assert capture("alertmanager", "ready") == {"answering": True, "status": "ready", "error": None,
                                                "peers": ["127.0.0.11", "127.0.0.12", "127.0.0.13"]}
    assert capture("alertmanager", "settling")["status"] == "settling"
    assert capture("alertmanager", "alone")["peers"] == ["127.0.0.14"]


def test_the_probe_prints_no_configuration():
    """Alertmanager's /api/v2/status holds its alertmanager.yml (webhook URLs may carry tokens):
    the probe prints the cluster only."""
    from healthkit import capture_text

    assert "config" not in capture_text("alertmanager", "ready") and "original" not in capture_text("alertmanager", "ready")
    assert "discoveredLabels" not in capture_text("prometheus", "some_down")


# --- the rows ----------------------------------------------------------------------------------------


def test_no_rows_without_monitoring():
    s = lab_site()
    report = evaluate(s, healthy(s))
    assert not {"prometheus", "alertmanager"} & set(statuses(report, "node01"))
    assert report.ok


def test_healthy_monitoring_is_ok():
    s = site()
    report = evaluate(s, monitored(s))
    for n in NODES:
        assert row(report, n, "prometheus").status == OK, row(report, n, "prometheus")
        assert row(report, n, "prometheus").detail == f"{len(JOBS) * 3}/{len(JOBS) * 3} targets up"
        assert row(report, n, "alertmanager") .detail == "cluster ready, peers: node01, node02, node03"
    assert report.ok and not report.warnings()


def test_a_missing_fact_fails_the_rows():
    s = site()
    results = monitored(s)
    del results["node02"]["prometheus"]
    report = evaluate(s, results)
    assert row(report, "node02", "prometheus").status == FAIL
    assert "not collected" in row(report, "node02", "prometheus").detail


@pytest.mark.parametrize("key, case", [("prometheus", "refused"), ("alertmanager", "refused")])
def test_a_daemon_not_answering_fails(key, case):
    s = site()
    report = evaluate(s, monitored(s, node03={key: capture(key, case)}))
    what = {"prometheus": "prometheus targets", "alertmanager": "alertmanager status"}[key]
    assert row(report, "node03", key).status == FAIL
    assert row(report, "node03", key).detail.startswith(f"{what}: exit status 1: ")
    assert any(f.startswith(f"node03: {key}: {what}: exit status 1: ") for f in report.failures())


def test_a_target_down_warns_and_names_it():
    s = site()
    report = evaluate(s, monitored(s, node01={"prometheus": targets(down={("rabbitmq", "node02")})}))
    r = row(report, "node01", "prometheus")
    total = len(JOBS) * 3
    assert r.status == WARN and r.detail == f"{total - 1}/{total} targets up; not: rabbitmq/node02 down (connection refused)"
    assert report.ok and report.warnings() == [f"node01: prometheus: {r.detail}"]


def test_targets_of_a_controller_not_verified_are_named_only():
    s = site()
    results = monitored(s, node01={"prometheus": targets(down={(job, "node03") for job, _, _ in JOBS})})
    results["node03"] = None  # unreachable: the report fails on it already
    report = evaluate(s, results)
    r = row(report, "node01", "prometheus")
    assert r.status == OK and r.detail.endswith("; targets of node03 (not verified) not up")


def test_a_prometheus_without_a_target_of_the_site_fails():
    s = site()
    t = targets()
    t["targets"] = [x for x in t["targets"] if x["job"] != "mysqld"]
    report = evaluate(s, monitored(s, node02={"prometheus": t}))
    r = row(report, "node02", "prometheus")
    assert r.status == FAIL and r.detail.startswith("no target mysqld/node01, mysqld/node02, mysqld/node03:")


def test_a_prometheus_of_the_capture_warns_with_its_list_cut():
    s = site()
    got = capture("prometheus", "some_down")  # labels node01..03: the rows read job and node only
    r = row(evaluate(s, monitored(s, node01={"prometheus": got})), "node01", "prometheus")
    assert r.status == WARN and r.detail.startswith(f"4/{len(JOBS) * 3} targets up; not: ") and " more" in r.detail


@pytest.mark.parametrize("am, status, detail", [
    (cluster(status="settling"), WARN, "cluster settling, peers: node01, node02, node03"),
    (cluster(peers=("node01",)), WARN,
     "cluster ready, peers: node01; missing: node02, node03 (each sends its own notifications)"),
    (cluster(peers=("node01", "node02", "node03", "10.77.0.99")), FAIL,
     "peers that are no controller: 10.77.0.99: another cluster joined through the gossip port would swallow "
     "notifications as duplicates"),
])
def test_the_alertmanager_cluster_is_the_controllers(am, status, detail):
    s = site()
    r = row(evaluate(s, monitored(s, node01={"alertmanager": am})), "node01", "alertmanager")
    assert (r.status, r.detail) == (status, detail)


def test_a_controller_down_is_not_missing_from_the_cluster_of_the_others():
    s = site()
    results = monitored(s, node01={"alertmanager": cluster(peers=("node01", "node02"))})
    results["node03"] = None
    assert row(evaluate(s, results), "node01", "alertmanager").status == OK


# --- the settle loop -----------------------------------------------------------------------------------


def test_lagging_targets_are_those_whose_node_says_they_should_answer():
    s = site()
    results = monitored(s, node01={"prometheus": targets(down={("rabbitmq", "node02"), ("node", "node03")}, health="unknown")})
    assert lagging_targets("node01", results) == ["node/node03 unknown", "rabbitmq/node02 unknown"]
    results["node02"]["rabbitmq"]["running_nodes"] = ["rabbit@node01", "rabbit@node03"]  # really stopped
    assert lagging_targets("node01", results) == ["node/node03 unknown"]
    results["node03"] = None  # not verified: nothing known
    assert lagging_targets("node01", results) == []
    results["node01"]["prometheus"] = capture("prometheus", "refused")
    assert lagging_targets("node01", results) == []


def test_a_prometheus_listing_no_target_yet_is_lagging():
    """Found by CI: right after its restart a Prometheus answered /-/ready and listed no target
    (its discovery hands them over up to 5 s later); the report failed it as misconfigured."""
    s = site()
    results = monitored(s)
    results["node01"]["prometheus"] = {**results["node01"]["prometheus"], "targets": []}
    assert lagging_targets("node01", results) == ["no target listed yet (discovery after a start)"]


def TargetsHost(answers):  # noqa: N802 - read as a class
    """Answers PrometheusTargets from canned results, one per call (the last repeats)."""
    return FakeHost(F.PrometheusTargets, answers)


def test_settle_rereads_the_targets_until_scraped_bounded():
    s = site()
    rising, settled = targets(down={("rabbitmq", "node02")}), targets()
    results = monitored(s, node01={"prometheus": rising})
    fake = TargetsHost([rising, settled])
    slept = []
    assert V.settle_targets(fake, s, results, sleep=slept.append) == 6 and slept == [3, 3]
    assert fake.calls == [("PrometheusTargets", {"address": "10.77.0.11", "port": 9090})] * 2
    assert results["node01"]["prometheus"]["settle_wait_sec"] == 6
    assert row(evaluate(s, results), "node01", "prometheus").status == OK
    # never scraped: bounded by one scrape interval and the margin
    results["node01"]["prometheus"] = rising
    slept.clear()
    waited = V.settle_targets(TargetsHost([rising]), s, results, sleep=slept.append)
    assert waited == sum(slept) and s["monitoring_scrape_interval"] + V.TARGETS_MARGIN <= waited < \
        s["monitoring_scrape_interval"] + V.TARGETS_MARGIN + V.TARGETS_STEP
    # without monitoring: nothing read
    plain = lab_site()
    assert V.settle_targets(TargetsHost([]), plain, healthy(plain), sleep=slept.append) == 0


def test_settle_rereads_a_settling_cluster_bounded():
    s = site()
    results = monitored(s, node01={"alertmanager": cluster(status="settling")})
    assert settling("node01", results) == ["alertmanager settling"] and settling("node02", results) == []
    fake = FakeHost(F.AlertmanagerCluster, [cluster(status="settling"), cluster()])
    slept = []
    assert V.settle_cluster(fake, s, results, sleep=slept.append) == 6
    assert fake.calls == [("AlertmanagerCluster", {"address": "10.77.0.11", "port": 9093})] * 2
    assert row(evaluate(s, results), "node01", "alertmanager").status == OK
    results["node01"]["alertmanager"] = cluster(status="settling")
    slept.clear()
    assert V.settle_cluster(FakeHost(F.AlertmanagerCluster, [cluster(status="settling")]), s, results,
                            sleep=slept.append) == sum(slept) >= V.CLUSTER_SECONDS
    assert row(evaluate(s, results), "node01", "alertmanager").status == WARN
    plain = lab_site()
    assert V.settle_cluster(FakeHost(F.AlertmanagerCluster, []), plain, healthy(plain), sleep=slept.append) == 0


def test_the_report_collects_the_monitoring_facts_only_when_on():
    assert not {"prometheus", "alertmanager"} & set(health_parts(lab_site(), "node02"))
    parts = health_parts(site(), "node02")
    assert parts["prometheus"][1] == (("address", "10.77.0.12"), ("port", 9090))
    assert parts["alertmanager"][1] == (("address", "10.77.0.12"), ("port", 9093))


def test_the_monitoring_probes_speak_http_and_print_only_what_the_report_reads():
    """The probes' own commands against a local HTTP server: Alertmanager's status carries its
    whole configuration (a webhook URL with a token here), which never reaches the output; an
    answer that is not 200 and a refused connection are errors naming the address."""
    import http.server
    import json
    import subprocess
    import threading

    status = {"cluster": {"status": "ready", "peers": [{"address": "127.0.0.1:9094", "name": "x"}]},
              "config": {"original": "receivers: [{webhook_configs: [{url: 'https://h/?token=SECRET-TOKEN'}]}]"}}
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.request_version, self.path, self.headers.get("Host")))
            code, body = (200, json.dumps(status)) if self.path == "/api/v2/status" else (404, "404 page not found")
            self.send_response(code)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def run(fact, port):
        out = subprocess.run(["sh", "-c", fact.command(address="127.0.0.1", port=port)], capture_output=True,
                             text=True, timeout=60).stdout
        return out, fact.process(out.splitlines())

    try:
        out, am = run(F.AlertmanagerCluster(), port)
        _, prom = run(F.PrometheusTargets(), port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    _, refused = run(F.PrometheusTargets(), port)
    assert am == {"answering": True, "status": "ready", "peers": ["127.0.0.1"], "error": None}
    assert "SECRET-TOKEN" not in out and "webhook" not in out
    assert seen[0] == ("HTTP/1.0", "/api/v2/status", f"127.0.0.1:{port}")
    assert not prom["answering"] and "404 Not Found" in prom["error"] and "/api/v1/targets?state=active" in prom["error"]
    assert not refused["answering"] and f"127.0.0.1:{port}" in refused["error"] and "refused" in refused["error"]
