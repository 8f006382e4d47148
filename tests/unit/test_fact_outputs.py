"""The verification facts' process(), fed outputs captured from the real tools (captures/).

HAProxy 2.6.12 on this machine, the lab's nodes for the rest, in the probe's framing
(`__rc=`, `__missing=`). A missing tool, a dead service or no output at all must come out as
an error, never as a healthy-looking answer. The one-line cases inline below are the probe's
framing edge cases (no tool, cut short, timed out), not captures.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess

import pytest
from healthkit import capture, capture_text, lines

from healthkit import F
import facts.keepalived as K


def test_vip_holder_and_standby():
    assert capture("vip", "holder") == {
        "holds_vip": True,
        "vip": "10.77.0.100",
        "interface": "enp8s0f0",
        "addresses": ["10.77.0.11/24", "10.77.0.100/32"],
        "error": None,
    }
    standby = capture("vip", "standby")
    assert standby["holds_vip"] is False and standby["error"] is None
    assert standby["addresses"] == ["10.77.0.12/24"]
    # A VIP-like address that only shares a prefix with the VIP is not the VIP.
    assert capture("vip", "prefix_only")["holds_vip"] is False


def test_vip_missing_interface_is_an_error():
    result = capture("vip", "no_device")
    assert result["holds_vip"] is False
    assert 'Device "enp8s0f0" does not exist' in result["error"]
    assert "exit status 1" in result["error"]


def test_vip_lab_holder():
    # keepalived adds the VIP with the subnet's prefix, as a secondary address.
    assert capture("vip", "lab_holder") == {"holds_vip": True, "vip": "10.77.0.100", "interface": "enp8s0f0",
                                            "addresses": ["10.77.0.11/24", "10.77.0.100/24"], "error": None}


def test_haproxy_info_alive():
    info = capture("haproxy_info", "alive")
    assert info == {"alive": True, "version": "2.6.12-1+deb12u4", "uptime_sec": 4, "pid": 6492, "error": None}


@pytest.mark.parametrize(
    "output, expected",
    [
        ("no_socket", "haproxy show info: /run/haproxy/admin.sock: No such file or directory "
                      "(HAProxy not running, or no `stats socket` there)"),
        ("refused", "haproxy show info: /run/haproxy/admin.sock: Connection refused (HAProxy not running)"),
        ("unknown_command", "no 'Name: HAProxy'"),
        ("__missing=socat\n", "socat not installed"),
        ("Name: HAProxy\n", "no exit status"),  # output cut short
        ("__rc=124\n", "timed out"),
    ],
)
def test_haproxy_info_not_alive(output, expected):
    text = output if "\n" in output else capture_text("haproxy_info", output)
    info = F.HaproxyInfo().process(lines(text))
    assert info["alive"] is False
    assert expected in info["error"]


def test_haproxy_servers_from_show_stat():
    # keystone servers refused, mariadb node01 UP, node02 UP as backup, node03 DOWN as backup.
    result = capture("haproxy_servers", "show_stat")
    assert result["error"] is None
    assert set(result["listeners"]) == {"keystone_internal", "mariadb"}  # stats has no servers
    db = result["listeners"]["mariadb"]
    assert {s: (v["status"], v["backup"]) for s, v in db.items()} == {
        "node01": ("UP", False),
        "node02": ("UP", True),
        "node03": ("DOWN", True),
    }
    assert db["node03"]["check"] == "Layer4 connection problem: Connection refused"
    assert db["node01"]["check"] == "Layer4 check passed"
    assert result["backends"] == {"stats": "UP", "keystone_internal": "DOWN", "mariadb": "UP"}


def test_haproxy_servers_of_the_package_default_config():
    # The Debian package's default config (no listen sections), seen on a lab node before the
    # deploy's config was loaded: `show stat` answers with its header only.
    assert capture("haproxy_servers", "default_config") == {"listeners": {}, "backends": {}, "error": None}


def test_haproxy_servers_errors():
    assert capture("haproxy_servers", "refused")["error"] == (
        "haproxy show stat: /run/haproxy/admin.sock: Connection refused (HAProxy not running)")
    # An unexpected socat failure keeps socat's own line.
    odd = F.HaproxyServers().process(["socat: something else", "__rc=1"])
    assert odd["error"] == "haproxy show stat: exit status 1: socat: something else"
    no_header = F.HaproxyServers().process(["mariadb,node01,UP", "__rc=0"])
    assert "no CSV header" in no_header["error"]


def test_galera_synced():
    assert capture("galera", "synced") == {
        "installed": True,
        "active": True,
        "mysqld": "running",
        "query": "ok",
        "wsrep_last_committed": "7",
        "wsrep_cluster_size": "3",
        "wsrep_cluster_state_uuid": "5f1c2f5e-ca5b-11f0-8b6d-1f2b8a5c3e11",
        "wsrep_cluster_status": "Primary",
        "wsrep_connected": "ON",
        "wsrep_local_state_comment": "Synced",
        "wsrep_incoming_addresses": "10.77.0.11:3306,10.77.0.12:3306,10.77.0.13:3306",
        "wsrep_ready": "ON",
        "grastate_uuid": "5f1c2f5e-ca5b-11f0-8b6d-1f2b8a5c3e11",
        "grastate_seqno": "-1",
        "grastate_safe_to_bootstrap": "0",
        "cnf_sans_members": "0d1a7c8e0b7d0b7f8a4f4f5a3b0b2b0e8d6e2c11",
        "error": None,
    }
    assert F.serving(capture("galera", "synced"))


def test_galera_non_primary_parses_without_error():
    g = capture("galera", "non_primary")
    assert (g["wsrep_cluster_size"], g["wsrep_cluster_status"], g["wsrep_local_state_comment"], g["wsrep_ready"]) == (
        "1", "non-Primary", "Initialized", "OFF")
    assert g["error"] is None and not F.serving(g)  # the status is read; the rules judge it


def test_galera_lab():
    g = capture("galera", "lab")
    assert (g["wsrep_cluster_size"], g["wsrep_cluster_status"], g["wsrep_local_state_comment"], g["wsrep_ready"],
            g["error"]) == ("3", "Primary", "Synced", "ON", None)
    assert g["wsrep_incoming_addresses"] == "10.77.0.11:3306,10.77.0.12:3306,10.77.0.13:3306"


def test_galera_down_is_a_state_not_an_error():
    g = capture("galera", "down")
    assert g["error"] is None and g["installed"] and not g["active"] and "mysqld" not in g
    assert g["grastate_seqno"] == "7"


@pytest.mark.parametrize("output", ["", "installed=yes\nactive=yes\nmysqld=running\n", "garbage\n"])
def test_galera_cut_or_garbled_output_is_an_error(output):
    g = F.GaleraNode().process(lines(output))
    assert g["error"] and g["installed"] is None and "wsrep_cluster_status" not in g


# The dicts rabbitmqctl cluster_status gave for the same cluster states (its captures, removed
# with it: ok, partitioned); the management API's answers must read the same.
RUNNING3 = ["rabbit@node01", "rabbit@node02", "rabbit@node03"]


def test_rabbitmq_members():
    assert capture("rabbitmq", "ok") == {
        "running_nodes": RUNNING3, "disk_nodes": RUNNING3, "partitions": [], "alarms": [], "error": None}


def test_rabbitmq_a_stopped_member_is_a_disk_node_not_running():
    assert capture("rabbitmq", "stopped") == {
        "running_nodes": ["rabbit@node01", "rabbit@node02"], "disk_nodes": RUNNING3, "partitions": [], "alarms": [],
        "error": None}


def test_rabbitmq_partitions_and_alarms():
    r = capture("rabbitmq", "partitioned")
    assert r["error"] is None
    assert r["running_nodes"] == ["rabbit@node01", "rabbit@node02"]
    assert r["partitions"] == ["rabbit@node01: rabbit@node03"]
    assert r["alarms"] == ["memory alarm on rabbit@node02"]


def test_rabbitmq_a_disk_alarm_and_nodes_in_any_order():
    answer = [{"name": "rabbit@node02", "running": True, "type": "disc", "disk_free_alarm": True, "mem_alarm": True,
               "partitions": ["rabbit@node03", "rabbit@node01"]},
              {"name": "rabbit@node01", "running": True, "type": "ram", "disk_free_alarm": False, "mem_alarm": False}]
    r = F.RabbitmqMembers().process([json.dumps(answer), "__rc=0"])
    assert r == {"running_nodes": ["rabbit@node01", "rabbit@node02"], "disk_nodes": ["rabbit@node02"],
                 "partitions": ["rabbit@node02: rabbit@node03, rabbit@node01"],
                 "alarms": ["memory alarm on rabbit@node02", "disk alarm on rabbit@node02"], "error": None}


@pytest.mark.parametrize(
    "output, expected",
    [
        # the management listener does not answer: broker stopped, its app not running, paused
        ("refused", "rabbitmq management API GET /api/nodes: exit status 7: curl: (7) Failed to connect to 10.77.0.11 "
                    "port 15672 after 0 ms: Couldn't connect to server"),
        ("unauthorized", "exit status 22: curl: (22) The requested URL returned error: 401"),
        ("timed_out", "exit status 28: curl: (28) Operation timed out"),
        ("no_login_file", "exit status 2: error: /etc/openstack-ha/rabbitmq-monitor.curlrc not readable"),
        ("not_json", "rabbitmq management API GET /api/nodes: no JSON in the answer: <html>"),
        ("__missing=curl\n", "curl not installed"),
        ("__rc=124\n", "timed out"),
        ("__rc=0\n", "no JSON in the answer"),
        ('[{"name": "rabbit@node01", \n__rc=0\n', "unparsable JSON"),
        ("[]\n__rc=0\n", "not a list of nodes: []"),
        ('{"error": "not_authorized"}\n__rc=0\n', "not a list of nodes"),
        ('[{"running": true}]\n__rc=0\n', "not a list of nodes"),
    ],
)
def test_rabbitmq_errors(output, expected):
    text = output if "\n" in output else capture_text("rabbitmq", output)
    r = F.RabbitmqMembers().process(lines(text))
    assert expected in r["error"]
    assert r["running_nodes"] == [] and r["alarms"] == []


def test_rabbitmq_reads_its_login_from_the_file_only():
    # the password is in the 0600 file curl reads (-K): the command holds its path, never a secret
    command = F.RabbitmqMembers().command("10.77.0.11", 15672, "/etc/openstack-ha/rabbitmq-monitor.curlrc")
    assert "-K /etc/openstack-ha/rabbitmq-monitor.curlrc" in command and " -u " not in command and "--user" not in command
    assert "--max-time 10" in command and "timeout 15 curl" in command
    assert "'http://10.77.0.11:15672/api/nodes?columns=name,running,type,partitions,mem_alarm,disk_free_alarm'" in command
    assert "'http://[fd00::11]:15672/api/nodes?" in F.RabbitmqMembers().command("fd00::11", 15672, "/x")


def test_memcached_stats():
    assert "\r\n" in capture_text("memcached", "ok")  # memcached's own line endings, kept
    assert capture("memcached", "ok") == {
        "answering": True, "version": "1.6.18", "uptime": 5120, "curr_connections": 2, "error": None}


def test_memcached_refused():
    m = capture("memcached", "refused")
    assert m["answering"] is False
    assert m["error"] == "memcached stats: exit status 1: ConnectionRefusedError: [Errno 111] Connection refused"


def test_keepalived_state_fact_parses_unit_and_vrrp_state():
    k = F.KeepalivedState()
    one = {"vrrp_states": {}, "error": None}  # the captures of before: no instance names
    assert capture("keepalived", "backup") == {"active": "active", "vrrp_state": "BACKUP", **one}
    assert capture("keepalived", "master") == {"active": "active", "vrrp_state": "MASTER", **one}
    assert k.process(["active", "__vrrp=BACKUP", "", "__rc=0"]) == {"active": "active", "vrrp_state": "BACKUP", **one}
    # running, but no dump came: an error, never a healthy answer
    assert "did not dump its state" in k.process(["active", "__vrrp=", "", "__rc=0"])["error"]
    assert "did not dump its state" in k.process(["active", "", "__rc=0"])["error"]
    assert k.process(["inactive", "", "__rc=0"]) == {"active": "inactive", "vrrp_state": None, **one}
    assert k.process(["__missing=systemctl"])["error"] == "systemctl not installed (command not found)"
    assert k.process([])["error"]
    assert "read -r p < /run/keepalived.pid; kill -USR1 \"$p\"" in k.command()


# keepalived 2.2's SIGUSR1 dump (vrrp_data.c dump_vrrp), cut to the lines around each state.
KEEPALIVED_DATA = """------< VRRP Topology >------
 VRRP Instance = internal_vip_77
   VRRP Version = 2
   State = MASTER
   Flags: none
 VRRP Instance = external_vip_78
   VRRP Version = 2
   State = FAULT
   Flags: none
------< VRRP Scripts >------
 VRRP Script = check_alive
   Status = GOOD
"""


def test_keepalived_state_reads_every_instance_of_the_dump(tmp_path):
    # The fact's own sed, run on a dump of two instances (the external VIP's second).
    command = F.KeepalivedState().command()
    sed = re.search(r"(sed -n -e .*?) /tmp/keepalived\.data", command).group(1)
    (tmp_path / "keepalived.data").write_text(KEEPALIVED_DATA)
    out = subprocess.run(["sh", "-c", f"{sed} keepalived.data"], cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout
    result = F.KeepalivedState().process(["active", *out.splitlines(), "__rc=0"])
    assert result == {"active": "active", "vrrp_state": "MASTER",
                      "vrrp_states": {"internal_vip_77": "MASTER", "external_vip_78": "FAULT"}, "error": None}


def ready_on(tmp_path, dump: str) -> int:
    """The exit status of facts.keepalived.ready_check under sh on `dump` (a keepalived data
    file), read by the fact's own sed (no keepalived, no signal)."""
    (tmp_path / "keepalived.data").write_text(dump)
    return subprocess.run(["sh", "-c", K.ready_check(f"{K.READ_DUMP} keepalived.data")], cwd=tmp_path,
                          capture_output=True, text=True).returncode


def test_ready_check_on_the_dump_passes_only_with_every_instance_backup_or_master(tmp_path):
    assert ready_on(tmp_path, KEEPALIVED_DATA) == 1  # external_vip_78 in FAULT
    assert ready_on(tmp_path, KEEPALIVED_DATA.replace("FAULT", "BACKUP")) == 0
    assert ready_on(tmp_path, "") == 1  # no dump: never ready
    # an interface's or script's `State =` after a ready instance does not make a FAULT one ready
    assert ready_on(tmp_path, KEEPALIVED_DATA.replace("   Status = GOOD\n", "   State = BACKUP\n")) == 1


@pytest.mark.parametrize("printed, ready", [
    ([], False),
    (["__vrrp=BACKUP"], False),  # no instance named (keepalived before the instance lines): never ready
    (["__instance=a", "__vrrp=MASTER"], True),
    (["__instance=a", "__vrrp=MASTER", "__instance=b", "__vrrp=BACKUP"], True),
    (["__instance=a", "__vrrp=MASTER", "__instance=b", "__vrrp=FAULT"], False),
    (["__instance=a", "__vrrp=FAULT", "__vrrp=MASTER"], False),  # the next State is an interface's
    (["__instance=a", "__instance=b", "__vrrp=MASTER"], False),  # a: no state line after its name
    (["__instance=a", "__vrrp=MASTER", "__instance=b"], False),
    (["__instance=a", "__vrrp="], False),
    (["__instance=a", "__vrrp=MASTERS"], False),
])
def test_ready_check_and_the_fact_read_instance_states_alike(printed, ready):
    # The shell check (maintenance's vip_ready) and the fact's Python (the health report) on the
    # same output: both by the one rule, the line right after an instance's name is its state.
    rc = subprocess.run(["sh", "-c", K.ready_check(f"printf '%s\\n' {shlex.join(printed)}")]).returncode
    states = K.instance_states(printed)
    assert (rc == 0) == ready == (bool(states) and all(st in K.TAKES_VIP for st in states.values()))


FACTS_AND_ARGS = [
    (F.VipHolder, {"interface": "enp8s0f0", "vip": "10.77.0.100"}),
    (F.HaproxyInfo, {"socket": "/run/haproxy/admin.sock"}),
    (F.HaproxyServers, {"socket": "/run/haproxy/admin.sock"}),
    (F.GaleraNode, {}),
    (F.RabbitmqMembers, {"address": "10.77.0.11", "port": 15672, "config": "/etc/openstack-ha/rabbitmq-monitor.curlrc"}),
    (F.MemcachedStats, {"address": "10.77.0.11", "port": 11211}),
]


@pytest.mark.parametrize("cls, args", FACTS_AND_ARGS, ids=lambda x: getattr(x, "__name__", ""))
def test_defaults_are_errors_not_healthy(cls, args):
    # pyinfra returns default() when a fact yields no output: it must read as a failure.
    assert cls.default()["error"]


@pytest.mark.parametrize("cls, args", FACTS_AND_ARGS, ids=lambda x: getattr(x, "__name__", ""))
def test_commands_are_valid_sh_and_bounded(cls, args):
    command = cls().command(**args)
    assert "timeout " in command
    subprocess.run(["sh", "-n", "-c", command], check=True)
    assert "requires_command" not in cls.__dict__  # a missing binary must not pass silently


def test_keepalived_default_is_an_error_and_its_command_valid_sh():
    # Not in FACTS_AND_ARGS: its command runs no `timeout` (the operation's _timeout bounds it).
    assert F.KeepalivedState.default()["error"]
    subprocess.run(["sh", "-n", "-c", F.KeepalivedState().command()], check=True)
    assert "requires_command" not in F.KeepalivedState.__dict__


def test_probe_of_a_missing_binary_runs_and_reports_it():
    command = F.probe("no-such-binary-ha", "no-such-binary-ha --version")
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    assert out == "__missing=no-such-binary-ha\n"
    body, rc, missing, _ = F.split_probe(lines(out))
    assert F.failure(body, rc, missing, "x") == "no-such-binary-ha not installed (command not found)"


def test_probe_of_a_failing_command_exits_zero_with_its_status():
    out = subprocess.run(
        ["sh", "-c", F.probe("sh", "echo oops >&2; exit 3", {"k": "v w"})],
        capture_output=True, text=True, check=True,
    ).stdout
    body, rc, missing, args = F.split_probe(lines(out))
    assert (body, rc, missing, args) == (["oops", ""], 3, None, {"k": "v w"})
    # Output without a final newline keeps its status on a line of its own.
    out = subprocess.run(["sh", "-c", F.probe("printf", "printf 'Name: HAProxy'")],
                         capture_output=True, text=True, check=True).stdout
    assert F.split_probe(lines(out))[:2] == (["Name: HAProxy"], 0)


def test_memcached_probe_against_a_local_server():
    # The probe against a tiny fake memcached on localhost.
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def serve():  # as memcached: answers `stats`, closes on `quit` (pipelined or not)
        conn, _ = server.accept()
        got, answered = b"", False
        while b"quit\r\n" not in got:
            chunk = conn.recv(100)
            if not chunk:
                break
            got += chunk
            if b"stats\r\n" in got and not answered:
                conn.sendall(b"STAT pid 1\r\nSTAT uptime 7\r\nSTAT version 1.6.18\r\nSTAT curr_connections 1\r\nEND\r\n")
                answered = True
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    command = F.MemcachedStats().command(address="127.0.0.1", port=port)
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    t.join(5)
    server.close()
    m = F.MemcachedStats().process(out.splitlines())
    assert m == {"answering": True, "version": "1.6.18", "uptime": 7, "curr_connections": 1, "error": None}


def test_amqp_tls_with_nothing_listening_says_stopped_without_openssl(tmp_path):
    # A fake openssl that leaves a mark; a port with a listener (IPv4, this machine) and one
    # without: only the first starts openssl.
    import os
    import socket

    (tmp_path / "openssl").write_text(f"#!/bin/sh\ntouch {tmp_path / 'ran'}\necho 'x:error:0A00010B:SSL routines::wrong version number'\nexit 1\n")
    (tmp_path / "openssl").chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    closed = free.getsockname()[1]
    free.close()  # bound, never listening: no listening socket on that port
    try:
        def read(port):
            out = subprocess.run(["sh", "-c", F.AmqpTls().command(address="127.0.0.1", port=port)], env=env,
                                 capture_output=True, text=True, timeout=60).stdout
            return F.AmqpTls().process(out.splitlines())

        stopped = read(closed)
        assert stopped["amqp_tls"] == "stopped" and stopped["error"] is None and not (tmp_path / "ran").exists()
        plain = read(listener.getsockname()[1])
        assert plain["amqp_tls"] == "plain" and (tmp_path / "ran").exists()
    finally:
        listener.close()
