"""The Galera-aware database check (galera-clustercheck), offline: the rendered script runs on
127.0.0.1 with a fake `mysql` on PATH that prints the wsrep status of each case."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time

import pytest

from unitkit import PROD
from config.files import managed_files
from config.secrets import PLACEHOLDERS
from config.site import build_site, load_inventory
from facts.galera import SERVING, serving

SCRIPT = "/usr/local/sbin/galera-clustercheck"

SYNCED = {"wsrep_local_state": "4", "wsrep_local_state_comment": "Synced", "wsrep_cluster_status": "Primary",
          "wsrep_ready": "ON"}
CASES = [
    (SYNCED, 200),
    ({**SYNCED, "wsrep_local_state": "2", "wsrep_local_state_comment": "Donor/Desynced"}, 503),
    ({**SYNCED, "wsrep_local_state": "1", "wsrep_local_state_comment": "Joining"}, 503),
    ({**SYNCED, "wsrep_cluster_status": "non-Primary", "wsrep_ready": "OFF"}, 503),
    ({**SYNCED, "wsrep_ready": "OFF"}, 503),
    (None, 503),  # mysqld does not answer
]
# One rule (facts.galera.SERVING) for the plan, the report and this check: each of its
# conditions unmet alone makes the check answer 503, and the report's rule agrees.
CASES += [({**SYNCED, key: "other"}, 503) for key in SERVING]


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    hosts, group = load_inventory(PROD)
    f = next(f for f in managed_files(build_site(hosts, group), "node01", PLACEHOLDERS) if f.path == SCRIPT)
    path = tmp_path_factory.mktemp("dbcheck") / "galera-clustercheck"
    path.write_text(f.content)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_mysql(directory, status: dict | None):
    directory.mkdir(parents=True, exist_ok=True)
    mysql = directory / "mysql"
    if status is None:
        body = "echo \"ERROR 2002 (HY000): Can't connect to local server through socket\" >&2; exit 1"
    else:
        body = "printf '" + "".join(f"{k}\\t{v}\\n" for k, v in status.items()) + "'"
    mysql.write_text(f"#!/bin/sh\n{body}\n")
    mysql.chmod(0o755)


@pytest.mark.parametrize("status,code", CASES)
def test_answers_200_only_when_synced_in_a_primary_component(script, tmp_path, status, code):
    fake_mysql(tmp_path / "bin", status)
    port = free_port()
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    proc = subprocess.Popen([sys.executable, str(script), "127.0.0.1", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                # HAProxy's `option httpchk` asks OPTIONS / by default
                conn.request("OPTIONS", "/")
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "the check never listened"
                time.sleep(0.05)
        r = conn.getresponse()
        text = r.read().decode()
        assert r.status == code, text
        if status is not None:
            assert status["wsrep_local_state_comment"] in text
            assert serving(status) == (code == 200)  # the plan's and the report's rule says the same
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/")
        assert conn.getresponse().status == code
    finally:
        proc.kill()
        proc.wait()
