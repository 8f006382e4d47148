"""The Galera-aware database check (galera-clustercheck), offline: the rendered script runs on
127.0.0.1 with a fake `mysql` on PATH that prints the wsrep status of each case."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unitkit import free_port, lab_file
from config.files import DBCHECK
from facts.galera_rules import SERVING, serving

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
# One rule (facts.galera_rules.SERVING) for the plan, the report and this check: each of its
# conditions unmet alone makes the check answer 503, and the report's rule agrees.
CASES += [({**SYNCED, key: "other"}, 503) for key in SERVING]


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("dbcheck") / "galera-clustercheck"
    path.write_text(lab_file(DBCHECK["script"]))
    return path


def fake_mysql(directory, status: dict | None, runs=None):
    """A `mysql` that prints `status` (None: fails as when mysqld is down); each run appends a
    line to `runs` when given."""
    directory.mkdir(parents=True, exist_ok=True)
    mysql = directory / "mysql"
    if status is None:
        body = "echo \"ERROR 2002 (HY000): Can't connect to local server through socket\" >&2; exit 1"
    else:
        body = "printf '" + "".join(f"{k}\\t{v}\\n" for k, v in status.items()) + "'"
    count = f"echo run >> '{runs}'\n" if runs else ""
    mysql.write_text(f"#!/bin/sh\n{count}{body}\n")
    mysql.chmod(0o755)


@contextlib.contextmanager
def running(script, directory, status, runs=None):
    """The check on 127.0.0.1:PORT with a fake mysql; yields (port, process), killed after."""
    fake_mysql(directory / "bin", status, runs)
    port = free_port()
    env = {**os.environ, "PATH": f"{directory / 'bin'}:{os.environ['PATH']}"}
    proc = subprocess.Popen([sys.executable, str(script), "127.0.0.1", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except ConnectionRefusedError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "the check never listened"
                time.sleep(0.05)
        yield port, proc
    finally:
        proc.kill()
        proc.wait()


def ask(port: int, method: str = "OPTIONS", timeout: float = 5):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request(method, "/")  # HAProxy's `option httpchk` asks OPTIONS / by default
    r = conn.getresponse()
    return r.status, r.read().decode()


def threads(proc) -> int:
    status = Path(f"/proc/{proc.pid}/status").read_text()
    return int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))


@pytest.mark.parametrize("status,code", CASES)
def test_answers_200_only_when_synced_in_a_primary_component(script, tmp_path, status, code):
    with running(script, tmp_path, status) as (port, _):
        got, text = ask(port)
        assert got == code, text
        if status is not None:
            assert status["wsrep_local_state_comment"] in text
            assert serving(status) == (code == 200)  # the plan's and the report's rule says the same
        assert ask(port, "GET")[0] == code
        got, text = ask(port, "HEAD")
        assert (got, text) == (code, "")


def test_a_stalled_request_is_cut_after_about_two_seconds(script, tmp_path):
    with running(script, tmp_path, SYNCED) as (port, _):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"OPTIONS / HTTP/1.0\r\n")  # half a request, then nothing
        start = time.monotonic()
        assert s.recv(100) == b""  # closed by the check, without an answer
        assert 1.5 <= time.monotonic() - start <= 4
        s.close()


def test_300_stalled_clients_cost_no_thread_and_a_check_still_answers(script, tmp_path):
    with running(script, tmp_path, SYNCED) as (port, proc):
        ask(port)  # the query pool started
        before = threads(proc)
        stalled = []
        try:
            for _ in range(300):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
                stalled.append(s)
            time.sleep(0.3)
            assert threads(proc) == before <= 3, f"{threads(proc)} threads for 300 stalled clients"
            start = time.monotonic()
            assert ask(port, timeout=5)[0] == 200
            assert time.monotonic() - start < 3
            # ... and the stalled ones are cut within the request timeout
            time.sleep(2.5)
            for s in stalled:
                s.settimeout(2)
                assert s.recv(100) == b""
        finally:
            for s in stalled:
                s.close()
        assert threads(proc) == before


def test_checks_within_a_second_cost_one_query(script, tmp_path):
    runs = tmp_path / "runs"
    with running(script, tmp_path, SYNCED, runs) as (port, _):
        for _ in range(5):
            assert ask(port)[0] == 200
        assert runs.read_text().count("run") == 1
        time.sleep(1.5)  # the cached answer is too old now: asked again
        assert ask(port)[0] == 200
        assert runs.read_text().count("run") == 2


def test_a_request_that_is_no_http_check_gets_no_query(script, tmp_path):
    runs = tmp_path / "runs"
    with running(script, tmp_path, SYNCED, runs) as (port, _):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"DELETE / HTTP/1.0\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.0 400")
        s.close()
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /" + b"x" * 10000 + b" HTTP/1.0\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.0 400")
        s.close()
        assert not runs.exists()
