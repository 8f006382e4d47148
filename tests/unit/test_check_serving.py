"""keepalived's check_serving (docs/failover.md "Partitions"), offline: the rendered script imported here,
its decision as a table, its reading of HAProxy's `show stat` from a capture, its peer probe
against sockets on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import pytest

from unitkit import free_port, lab_file, serve_once
from config.files import KEEPALIVED_SERVE_SCRIPT

CAPTURES = Path(__file__).parent / "captures"
DB = ["mariadb"]
UP = {"mariadb": {"node01": "UP", "node02": "UP 1/2", "node03": "DOWN"}}
NONE_UP = {"mariadb": {"node01": "DOWN", "node02": "MAINT", "node03": "DRAIN"}}
SEEN_ALL = {"node02": "seen", "node03": "seen"}


@pytest.fixture(scope="module")
def cs(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "check_serving.py"
    path.write_text(lab_file(KEEPALIVED_SERVE_SCRIPT))
    spec = importlib.util.spec_from_file_location("check_serving", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# (case, kwargs of decide(), may hold the VIP, a word the reason must say)
CASES = [
    ("majority, a usable server: serves", dict(servers=UP, peers=SEEN_ALL), True, "serves"),
    ("majority, none usable, a peer serves: gives the VIP up",
     dict(servers=NONE_UP, peers={"node02": "serving", "node03": "seen"}), False, "node02 can"),
    ("whole cluster down: none usable, no peer serves: keeps its place",
     dict(servers=NONE_UP, peers=SEEN_ALL), True, "whole cluster down"),
    ("one peer unseen still a majority (2 of 3)", dict(servers=UP, peers={"node02": "unseen", "node03": "seen"}), True, "2 of 3"),
    ("HAProxy's socket did not answer, a peer serves", dict(servers=None, peers={"node02": "serving", "node03": "seen"}),
     False, "did not answer"),
    ("an API listener listed without a usable server, a peer serves",
     dict(servers={**UP, "nova_api": {"node01": "DOWN"}}, peers={"node02": "serving", "node03": "seen"},
          listeners=DB + ["nova_api"]), False, "nova_api"),
    ("cut off (1 of 3): gives the VIP up though its own server is still UP",
     dict(servers=UP, peers={"node02": "unseen", "node03": "unseen"}, size=3, holding=True), False, "1 of 3"),
    ("minority, Galera Primary of 1 (the others left cleanly): serves",
     dict(servers=UP, peers={"node02": "unseen", "node03": "unseen"}, size=1), True, "Primary component of 1"),
    ("minority, Galera Primary of 1 but no usable server: gives it up",
     dict(servers=NONE_UP, peers={"node02": "unseen", "node03": "unseen"}, size=1), False, "no usable server"),
    ("minority, not holding, nobody on the VIP for the last-resort time: takes it again",
     dict(servers=NONE_UP, peers={"node02": "unseen", "node03": "unseen"}, state={"since": 100.0}, now=110.0), True,
     "last resort"),
    ("minority, not holding, nobody on the VIP, not yet long enough", dict(
        servers=NONE_UP, peers={"node02": "unseen", "node03": "unseen"}, state={"since": 100.0}, now=109.0), False, "gives"),
    ("minority, another controller answers on the VIP: stays away", dict(
        servers=NONE_UP, peers={"node02": "unseen", "node03": "unseen"}, state={"since": 0.0}, now=500.0,
        vip_answers=True), False, "gives"),
    ("last resort held: keeps the VIP while nobody else answers", dict(
        servers=NONE_UP, peers={"node02": "unseen", "node03": "unseen"}, state={"since": 0.0, "last_resort": True},
        now=500.0, holding=True), True, "last resort"),
    ("an answer on the VIP within the last-resort time starts it again", dict(
        servers=NONE_UP, peers={"node02": "unseen", "node03": "unseen"}, state={"since": 100.0, "answered": 105.0},
        now=114.0), False, "gives"),
    ("last resort ends when another controller answers on the VIP", dict(
        servers=NONE_UP, peers={"node02": "unseen", "node03": "unseen"}, state={"since": 0.0, "last_resort": True},
        now=500.0, vip_answers=True), False, "gives"),
]


@pytest.mark.parametrize("case,kwargs,ok,word", CASES, ids=[c[0] for c in CASES])
def test_decide(cs, case, kwargs, ok, word):
    args = {"controllers": 3, "listeners": DB, **kwargs}
    got, why, _ = cs.decide(args.pop("servers"), args.pop("peers"), args.pop("controllers"), args.pop("listeners"), **args)
    assert got is ok and word in why, (got, why)


def test_the_minority_state_is_kept_and_dropped_with_the_majority(cs):
    cut = {"node02": "unseen", "node03": "unseen"}
    _, _, state = cs.decide(UP, cut, 3, DB, state=None, now=42.0)
    assert state == {"since": 42.0}
    _, _, later = cs.decide(UP, cut, 3, DB, state=state, now=50.0)
    assert later == {"since": 42.0}  # the minority's start is kept
    assert cs.decide(UP, SEEN_ALL, 3, DB, state=later, now=60.0)[2] == {}  # a majority again: forgotten


def test_show_stat_is_read_per_listener_without_frontend_and_backend(cs):
    got = cs.read_servers((CAPTURES / "haproxy_servers" / "show_stat.txt").read_text())
    assert got["mariadb"] == {"node01": "UP", "node02": "UP", "node03": "DOWN"}
    assert got["keystone_internal"] == {"node01": "DOWN", "node02": "DOWN"}
    assert [cs.usable(s) for s in ("UP", "UP 1/2", "no check", "DOWN 1/2", "DOWN", "MAINT", "DRAIN", "NOLB")] == \
        [True, True, True, True, False, False, False, False]


def test_peer_probe_tells_serving_seen_and_unseen(cs, monkeypatch):
    ok = serve_once(b"HTTP/1.1 200 OK\r\n\r\n")
    bad = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
    assert cs.probe_peer("127.0.0.1", ok, "httpchk", [], 0.5) == "serving"
    assert cs.probe_peer("127.0.0.1", bad, "httpchk", [], 0.5) == "seen"
    assert cs.probe_peer("127.0.0.1", free_port(), "httpchk", [], 0.5) == "seen"  # refused: it is there
    # an API listener's server that refuses: the peer cannot serve it
    assert cs.probe_peer("127.0.0.1", serve_once(b"HTTP/1.1 200 OK\r\n\r\n"), "httpchk", [free_port()], 0.5) == "seen"
    # no answer within the timeout (a cut, a peer without power): not seen; no packet leaves here
    def silent(address, timeout=None):
        raise socket.timeout("timed out")
    monkeypatch.setattr(cs.socket, "create_connection", silent)
    assert cs.probe_peer("127.0.0.1", ok, "httpchk", [], 0.2) == "unseen"
