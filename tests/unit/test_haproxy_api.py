"""HAProxy's runtime API (facts/haproxy_api.py): the request lines, the shell that sends them
(always bounded by a timeout) run against a fake socat answering a captured `show stat`, and
`show stat` read by column name, in Python and in awk."""

from __future__ import annotations

import os
import re
import stat
import subprocess

import pytest

from facts import haproxy_api as H
from healthkit import CAPTURES

SHOW_STAT = CAPTURES / "haproxy_servers" / "show_stat.txt"


def test_requests_and_the_replay_line():
    assert H.requests(["a", "b"], "node02", "state maint", "shutdown sessions") == (
        "set server a/node02 state maint; shutdown sessions server a/node02; "
        "set server b/node02 state maint; shutdown sessions server b/node02")
    assert H.maint_line(["a"], ("node03", "node02")) == "set server a/node02 state maint; set server a/node03 state maint"
    assert H.maint_line(["a"], ()) == ""


def show_stat(tmp_path, reorder=lambda header: header, change=lambda row: None):
    """The captured `show stat` (node01 DOWN in keystone_internal, ...) with open sessions
    put on node02's servers: 2 in each listener; its columns in the order reorder(header)
    gives, each row changed by change(row). Returns (path, {(listener, server): row})."""
    lines = [x for x in SHOW_STAT.read_text().splitlines() if "," in x]
    header = lines[0][2:].split(",")
    columns = reorder(header)
    rows, out = {}, ["# " + ",".join(columns)]
    for line in lines[1:]:
        r = dict(zip(header, line.split(",")))
        if r["svname"] == "node02":
            r["scur"] = "2"
        change(r)
        rows[(r["pxname"], r["svname"])] = r
        out.append(",".join(r[h] for h in columns))
    path = tmp_path / "show_stat.csv"
    path.write_text("\n".join(out) + "\n")
    return path, rows


def socat_answering(tmp_path, csv) -> dict:
    """An environment whose `socat` answers every request with the file `csv`."""
    path = tmp_path / "socat"
    path.write_text(f"#!/bin/sh\ncat >/dev/null; cat {csv}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}


@pytest.fixture
def fake_socat(tmp_path):
    """A `socat` that answers every request with show_stat(): the awk programs run on HAProxy's real CSV."""
    csv, rows = show_stat(tmp_path)
    return socat_answering(tmp_path, csv), rows


def sh(command: str, env) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=20)


def test_the_session_count_and_the_up_test_read_show_stat(fake_socat):
    env, rows = fake_socat
    up = next(k for k, r in rows.items() if r["status"] == "UP" and k[1] not in ("FRONTEND", "BACKEND"))
    down = next(k for k, r in rows.items() if r["status"] == "DOWN")
    assert sh(H.server_up("/run/s", *up), env).returncode == 0
    assert sh(H.server_up("/run/s", *down), env).returncode == 1
    listeners = [p for (p, s) in rows if s == "node02"]
    assert len(listeners) >= 2
    # every listener's node02 sessions but the skipped one's
    assert sh(H.sessions("/run/s", "node02", listeners[0]), env).stdout.strip() == str(2 * (len(listeners) - 1))
    assert sh(H.sessions("/run/s", "node03", listeners[0]), env).stdout.strip() == "0"


def test_an_answer_from_the_runtime_api_fails_the_step(tmp_path, fake_socat):
    sock = tmp_path / "admin.sock"
    import socket as so

    s = so.socket(so.AF_UNIX)
    s.bind(str(sock))
    try:
        r = sh(H.api(str(sock), "set server x/node01 state maint"), fake_socat[0])  # answers a whole CSV
        assert r.returncode == 1 and "haproxy: # pxname" in r.stderr
        assert sh(H.api(str(tmp_path / "none.sock"), "set server x/y state maint"), fake_socat[0]).returncode == 0
    finally:
        s.close()


def test_the_replay_file_is_sent_when_it_holds_a_line(tmp_path, fake_socat):
    import socket as so

    sock, path = tmp_path / "admin.sock", tmp_path / "haproxy-maint"
    s = so.socket(so.AF_UNIX)
    s.bind(str(sock))
    try:
        assert sh(H.replay(str(sock), str(path)), fake_socat[0]).returncode == 0  # no file: nothing sent
        path.write_text("set server x/node02 state maint\n")
        r = sh(H.replay(str(sock), str(path)), fake_socat[0])  # the fake HAProxy answers: an error
        assert r.returncode == 1 and "haproxy: # pxname" in r.stderr
    finally:
        s.close()


def test_the_shell_reads_show_stat_by_column_name(tmp_path):
    """The same answers with HAProxy's columns in another order (a version that adds or
    moves one): the awk programs find them by the header's names, never by position."""
    csv, rows = show_stat(tmp_path, reorder=lambda header: header[::-1])
    env = socat_answering(tmp_path, csv)
    up = next(k for k, r in rows.items() if r["status"] == "UP" and k[1] not in ("FRONTEND", "BACKEND"))
    down = next(k for k, r in rows.items() if r["status"] == "DOWN")
    assert sh(H.server_up("/run/s", *up), env).returncode == 0
    assert sh(H.server_up("/run/s", *down), env).returncode == 1
    listeners = [p for (p, s) in rows if s == "node02"]
    assert sh(H.sessions("/run/s", "node02", listeners[0]), env).stdout.strip() == str(2 * (len(listeners) - 1))
    assert sh(H.all_maint("/run/s", "node02"), env).returncode == 1


def test_all_maint_passes_only_when_every_server_of_the_node_is_in_maint(tmp_path):
    def maint(row):
        if row["svname"] == "node03":
            row["status"] = "MAINT"

    csv, rows = show_stat(tmp_path, change=maint)
    env = socat_answering(tmp_path, csv)
    assert any(s == "node03" for _, s in rows)
    assert sh(H.all_maint("/run/s", "node03"), env).returncode == 0
    assert sh(H.all_maint("/run/s", "node02"), env).returncode == 1  # UP, DOWN...
    # one server of node03 back to UP: no longer all in maint
    first = True

    def all_but_one(row):
        nonlocal first
        maint(row)
        if row["svname"] == "node03" and first:
            row["status"], first = "UP", False

    csv, _ = show_stat(tmp_path, change=all_but_one)
    assert sh(H.all_maint("/run/s", "node03"), socat_answering(tmp_path, csv)).returncode == 1


def test_parse_stat_reads_the_capture_by_column_name():
    lines = [line for line in SHOW_STAT.read_text().splitlines() if not line.startswith("__")]  # the probe's framing
    header = lines[0][2:].split(",")
    rows = H.parse_stat(lines)
    data = [line for line in lines[1:] if "," in line]
    assert len(rows) == len(data) > 5
    for row, line in zip(rows, data):
        values = line.split(",")
        for name in ("pxname", "svname", "status", "bck", "check_desc", "scur"):
            assert row[name] == values[header.index(name)]
    # reordered columns, the same rows
    order = header[::-1]
    moved = ["# " + ",".join(order)] + [",".join(r[h] for h in order) for r in rows]
    assert H.parse_stat(moved) == rows


def test_parse_stat_without_a_header_is_none_and_a_header_alone_no_rows():
    assert H.parse_stat(["2026/11/25 17:21:42 socat[26879] E connect(...): Connection refused"]) is None
    assert H.parse_stat([]) is None
    assert H.parse_stat(["# pxname,svname,status", ""]) == []
    assert H.parse_stat(["# pxname,svname,status\n", "a,b,UP\n"]) == [{"pxname": "a", "svname": "b", "status": "UP"}]


def test_every_command_is_bounded_by_the_timeout_and_quotes_the_socket():
    sock = "/run/my haproxy/admin.sock"
    built = [H.ask(sock, "show info"), H.send_file(sock, "/var/lib/x y"), H.api(sock, "set server a/b state maint"),
             H.replay(sock, "/var/lib/x"), H.sessions(sock, "n", "db"), H.server_up(sock, "db", "n"), H.all_maint(sock, "n")]
    for cmd in built:
        socats = re.findall(r"(timeout \d+ )?socat ", cmd)
        assert socats and all(t == f"timeout {H.TIMEOUT} " for t in socats), cmd
        assert "UNIX-CONNECT:'/run/my haproxy/admin.sock'" in cmd, cmd
    assert H.ask("/run/haproxy/admin.sock", "show stat") == (
        "echo 'show stat' | timeout 5 socat stdio UNIX-CONNECT:/run/haproxy/admin.sock")


def test_no_other_module_writes_a_socat_command_line():
    """One module speaks the runtime API: a socat command line anywhere else in the project's
    Python is a second dialect (HAProxy's unit renders its replay from send_file(); keepalived's
    check_alive.sh.j2 keeps its own bounds, 3 s and socat -t 2, inside keepalived's script timeout)."""
    from test_import_cycles import project_modules

    speakers = sorted(name for name, path in project_modules().items()
                      if re.search(r"socat (stdio|-)", path.read_text()))
    assert speakers == ["facts.haproxy_api"]
