"""lab/alert_receiver.py, offline: the lab's webhook receiver started as the lab starts it (a
script, by PID file) on 127.0.0.1 and a free port, a POST recorded as a JSON line with its
receive time, stopped by its PID; the readers the alert drills use."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

import unitkit  # noqa: F401  (first: puts the repository on sys.path)
from lab import alert_receiver as R
from lab.host import cmdline, pid_alive

# Alertmanager's webhook body (version 4), as it posts one group of one alert.
PAYLOAD = {
    "version": "4", "status": "firing", "receiver": "webhooks", "groupKey": '{}:{alertname="MysqlDown", node="node03"}',
    "groupLabels": {"alertname": "MysqlDown", "node": "node03"}, "commonLabels": {"alertname": "MysqlDown"},
    "commonAnnotations": {}, "externalURL": "http://10.77.0.11:9093", "truncatedAlerts": 0,
    "alerts": [{"status": "firing", "labels": {"alertname": "MysqlDown", "node": "node03", "severity": "critical"},
                "annotations": {"summary": "MariaDB on node03 does not answer its exporter"},
                "startsAt": "2026-12-06T19:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "abc"}],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, body: bytes) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/alerts", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def receiver(tmp_path):
    port = free_port()
    pid = R.start("127.0.0.1", port, tmp_path)
    try:
        yield port, pid, tmp_path
    finally:
        R.stop(tmp_path)


def test_a_post_is_recorded_with_its_receive_time_and_the_receiver_stops_by_pid(receiver):
    port, pid, directory = receiver
    assert R.pid_file(directory).read_text().strip() == str(pid)
    assert R.is_receiver(cmdline(pid), directory)
    before = time.time()
    assert post(port, json.dumps(PAYLOAD).encode()) == 200
    lines = R.records_file(directory).read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["payload"] == PAYLOAD and record["path"] == "/alerts"
    assert before - 1 <= record["received_ts"] <= time.time() and record["received"].endswith("Z")
    assert R.stop(directory) is True
    assert not pid_alive(pid) and not R.pid_file(directory).exists()
    assert R.records_file(directory).exists()  # the records outlive it
    assert R.stop(directory) is False  # stopped: nothing to stop


def test_start_is_idempotent_and_a_taken_port_is_refused(receiver, tmp_path_factory):
    port, pid, directory = receiver
    assert R.start("127.0.0.1", port, directory) == pid
    with pytest.raises(RuntimeError, match="address in use"):
        R.start("127.0.0.1", port, tmp_path_factory.mktemp("other"))


def test_a_body_that_is_not_json_is_recorded_and_refused(receiver):
    port, _, directory = receiver
    assert post(port, b"{not json") == 400
    record = json.loads(R.records_file(directory).read_text())
    assert record["error"].startswith("not JSON") and "payload" not in record


def test_a_pid_file_naming_another_process_is_never_signalled(tmp_path):
    import os

    R.pid_file(tmp_path).write_text(f"{os.getpid()}\n")  # this test process: not a receiver
    assert R.running_pid(tmp_path) is None
    assert R.stop(tmp_path) is False


def test_records_and_events_read_each_alert_of_each_notification(tmp_path):
    path = tmp_path / "alerts.jsonl"
    resolved = {**PAYLOAD, "status": "resolved", "alerts": [{**PAYLOAD["alerts"][0], "status": "resolved"}]}
    path.write_text(json.dumps({"received_ts": 10.0, "payload": PAYLOAD}) + "\n"
                    + json.dumps({"received_ts": 20.0, "payload": resolved}) + "\n"
                    + '{"received_ts": 30.0, "payl')  # being written
    assert [r["received_ts"] for r in R.records(path)] == [10.0, 20.0]
    assert [r["received_ts"] for r in R.records(path, since=15)] == [20.0]
    assert R.records(tmp_path / "none.jsonl") == []
    assert [(e["alertname"], e["status"], e["labels"]["node"]) for e in R.events(R.records(path))] == \
        [("MysqlDown", "firing", "node03"), ("MysqlDown", "resolved", "node03")]


def test_the_lab_inventory_sends_to_the_receiver():
    from lab.names import ALERT_RECEIVER_DIR, ALERT_RECEIVER_PORT, ALERT_RECEIVER_URL, HOST_ADDRESS, RUN_DIR
    from unitkit import lab_data

    assert lab_data()[1]["monitoring_webhooks"] == [ALERT_RECEIVER_URL]
    assert ALERT_RECEIVER_URL.startswith(f"http://{HOST_ADDRESS}:{ALERT_RECEIVER_PORT}/")
    assert ALERT_RECEIVER_DIR.parent == RUN_DIR  # removed by `lab down`
