"""facts/monitoring.py's probes run by sh against local HTTP servers on 127.0.0.1: what the
report reads of Prometheus' targets and Alertmanager's status (never the rest of the body),
and a server that never answers ends the probe by its own alarm, as `timeout` did (status 124:
"timed out")."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import facts.monitoring as M

TARGETS = {"data": {"activeTargets": [
    {"labels": {"job": "node", "node": "node01", "instance": "10.77.0.11:9100"}, "health": "up", "lastError": "",
     "discoveredLabels": {"__address__": "10.77.0.11:9100"}}]}}
STATUS = {"cluster": {"status": "ready", "peers": [{"address": "10.77.0.12:9094"}, {"address": "10.77.0.11:9094"}]},
          "config": {"original": "receivers: [{name: x, webhook_configs: [{url: 'http://h/token-SECRET'}]}]"}}


@pytest.fixture
def server():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(TARGETS if self.path.startswith("/api/v1/targets") else STATUS).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def run(command: str) -> list[str]:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60).stdout.splitlines()


def test_the_probes_print_only_what_the_report_reads(server):
    targets = run(M.PrometheusTargets().command("127.0.0.1", server))
    assert M.PrometheusTargets().process(targets) == {"answering": True, "error": None, "targets": [
        {"job": "node", "node": "node01", "instance": "10.77.0.11:9100", "health": "up", "last_error": ""}]}
    assert "__address__" not in "\n".join(targets)
    status = run(M.AlertmanagerCluster().command("127.0.0.1", server))
    assert M.AlertmanagerCluster().process(status) == {"answering": True, "status": "ready",
                                                       "peers": ["10.77.0.11", "10.77.0.12"], "error": None}
    assert "SECRET" not in "\n".join(status)
    assert "timeout " not in M.PrometheusTargets().command("127.0.0.1", server)  # bounded by its own alarm


def test_a_server_that_never_answers_is_timed_out_by_the_alarm(monkeypatch):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts (the kernel's backlog), never answers
    try:
        monkeypatch.setattr(M, "HTTP_PROBE", M.HTTP_PROBE.replace(f"signal.alarm({M.TIMEOUT + 5})", "signal.alarm(1)"))
        assert "signal.alarm(1)" in M.HTTP_PROBE
        got = M.PrometheusTargets().process(run(M.PrometheusTargets().command("127.0.0.1", listener.getsockname()[1])))
        assert got["answering"] is False and got["error"] == "prometheus targets: timed out"
    finally:
        listener.close()
