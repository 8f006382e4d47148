"""Verification facts and the health report, offline.

Each fact's process() is fed output captured from the real tools (HAProxy 2.6.12 on this
machine, the lab's nodes for the rest) in the probe's framing (`__rc=`, `__missing=`);
evaluate() is fed fact results for healthy and broken clusters. A missing tool, a dead service
or no output at all must come out as a failure, never as a healthy-looking answer.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from config.site import build_site
from types import SimpleNamespace

from facts.galera import GaleraStatus
from facts.haproxy import HaproxyInfo, HaproxyServers
from facts.keepalived import KeepalivedState, VipHolder
from facts.memcached import MemcachedStats
from facts.probe import NO_OUTPUT, failure, probe, split_probe
from facts.rabbitmq import RabbitmqMembers

F = SimpleNamespace(GaleraStatus=GaleraStatus, HaproxyInfo=HaproxyInfo, HaproxyServers=HaproxyServers,
                    KeepalivedState=KeepalivedState, VipHolder=VipHolder, MemcachedStats=MemcachedStats,
                    NO_OUTPUT=NO_OUTPUT, failure=failure, probe=probe, split_probe=split_probe,
                    RabbitmqMembers=RabbitmqMembers)
from operations.verify import FAIL, INFO, OK, _Run, evaluate, report_reasons, write_json

# --- captured outputs ------------------------------------------------------------------

IP_HOLDER = """\
__arg_vip=10.77.0.100
__arg_interface=enp8s0f0
2: enp8s0f0    inet 10.77.0.11/24 brd 10.77.0.255 scope global enp8s0f0\\       valid_lft forever preferred_lft forever
2: enp8s0f0    inet 10.77.0.100/32 scope global enp8s0f0\\       valid_lft forever preferred_lft forever
__rc=0
"""

IP_STANDBY = """\
__arg_vip=10.77.0.100
__arg_interface=enp8s0f0
2: enp8s0f0    inet 10.77.0.12/24 brd 10.77.0.255 scope global enp8s0f0\\       valid_lft forever preferred_lft forever
__rc=0
"""

# A VIP-like address that only shares a prefix with the VIP is not the VIP.
IP_PREFIX_ONLY = """\
__arg_vip=10.77.0.10
__arg_interface=enp8s0f0
2: enp8s0f0    inet 10.77.0.100/32 scope global enp8s0f0\\       valid_lft forever preferred_lft forever
__rc=0
"""

IP_NO_DEVICE = """\
__arg_vip=10.77.0.100
__arg_interface=enp8s0f0
Device "enp8s0f0" does not exist.
__rc=1
"""

HAPROXY_INFO = """\
Name: HAProxy
Version: 2.6.12-1+deb12u4
Release_date: 2026/10/17
Nbthread: 2
Nbproc: 1
Process_num: 1
Pid: 6492
Uptime: 0d 0h00m04s
Uptime_sec: 4
Memmax_MB: 0
Maxconn: 100
CurrConns: 0
Tainted: 0

__rc=0
"""

HAPROXY_NO_SOCKET = """\
__arg_socket=/run/haproxy/admin.sock
2026/11/25 17:19:48 socat[5700] E connect(, AF=1 "/run/haproxy/admin.sock", 25): No such file or directory
__rc=1
"""

HAPROXY_REFUSED = """\
__arg_socket=/run/haproxy/admin.sock
2026/11/25 17:21:42 socat[26879] E connect(, AF=1 "/run/haproxy/admin.sock", 21): Connection refused
__rc=1
"""

HAPROXY_UNKNOWN = """\
Unknown command: 'show inf'
__rc=0
"""

STAT_HEADER = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,"
    "status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,"
    "type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,"
    "hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,"
    "comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,"
    "agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,"
    "agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,"
    "dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,"
    "ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,"
    "agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,"
    "h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,"
    "h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,"
    "h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,"
    "h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,"
    "h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,"
)

# `show stat` of HAProxy 2.6.12 (captured): keystone servers refused, mariadb node01 UP,
# node02 UP as backup, node03 DOWN as backup.
HAPROXY_STAT = STAT_HEADER + """
stats,FRONTEND,,,0,0,100,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,0,,,,0,0,0,0,0,0,,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,http,,0,0,0,0,0,0,0,,,0,0,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
stats,BACKEND,0,0,0,0,10,0,0,0,0,0,,0,0,0,0,UP,0,0,0,,0,4,,,1,2,0,,0,,1,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,0,0,0,0,,,0,0,0,0,0,,,,,0,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
keystone_internal,FRONTEND,,,0,0,100,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,3,0,,,,0,0,0,0,,,,0,0,0,0,0,0,,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,http,,0,0,0,0,0,0,0,,,0,0,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
keystone_internal,node01,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,1,1,4,4,,1,3,1,,0,,2,0,,0,L4CON,,0,0,0,0,0,0,0,,,,0,0,0,,,,,-1,Connection refused,,0,0,0,0,,,,Layer4 connection problem,,2,2,0,,,,127.0.0.1:25000,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
keystone_internal,node02,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,1,1,4,4,,1,3,2,,0,,2,0,,0,L4CON,,0,0,0,0,0,0,0,,,,0,0,0,,,,,-1,Connection refused,,0,0,0,0,,,,Layer4 connection problem,,2,2,0,,,,127.0.0.2:25000,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
keystone_internal,BACKEND,0,0,0,0,10,0,0,0,0,0,,0,0,0,0,DOWN,0,0,0,,1,4,4,,1,3,0,,0,,1,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,0,0,0,0,,,0,0,0,0,0,,,,,0,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
mariadb,FRONTEND,,,0,0,100,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,4,0,,,,0,0,0,0,,,,,,,,,,,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,tcp,,0,0,0,,0,0,0,,,,,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
mariadb,node01,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,4,0,,1,4,1,,0,,2,0,,0,L4OK,,0,,,,,,,,,,,0,0,,,,,-1,,,0,0,0,0,,,,Layer4 check passed,,2,5,6,,,,127.0.0.1:19840,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
mariadb,node02,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1,0,1,0,0,4,0,,1,4,2,,0,,2,0,,0,L4OK,,0,,,,,,,,,,,0,0,,,,,-1,,,0,0,0,0,,,,Layer4 check passed,,2,5,6,,,,127.0.0.1:19840,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
mariadb,node03,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,0,1,1,1,3,3,,1,4,3,,0,,2,0,,0,L4CON,,0,,,,,,,,,,,0,0,,,,,-1,Connection refused,,0,0,0,0,,,,Layer4 connection problem,,2,5,0,,,,127.0.0.1:25001,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
mariadb,BACKEND,0,0,0,0,10,0,0,0,0,0,,0,0,0,0,UP,1,1,1,,0,4,0,,1,4,0,,0,,1,0,,0,,,,,,,,,,,,,,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,tcp,roundrobin,,,,,,,0,0,0,,,,,0,0,0,0,0,,,,,1,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,

__rc=0
"""

GALERA_SYNCED = """\
wsrep_local_state_uuid\t5f1c2f5e-ca5b-11f0-8b6d-1f2b8a5c3e11
wsrep_protocol_version\t10
wsrep_last_committed\t7
wsrep_cluster_conf_id\t3
wsrep_cluster_size\t3
wsrep_cluster_state_uuid\t5f1c2f5e-ca5b-11f0-8b6d-1f2b8a5c3e11
wsrep_cluster_status\tPrimary
wsrep_connected\tON
wsrep_local_state\t4
wsrep_local_state_comment\tSynced
wsrep_incoming_addresses\t10.77.0.11:3306,10.77.0.12:3306,10.77.0.13:3306
wsrep_ready\tON
__rc=0
"""

GALERA_NON_PRIMARY = """\
wsrep_cluster_size\t1
wsrep_cluster_state_uuid\t5f1c2f5e-ca5b-11f0-8b6d-1f2b8a5c3e11
wsrep_cluster_status\tnon-Primary
wsrep_connected\tON
wsrep_local_state_comment\tInitialized
wsrep_ready\tOFF
__rc=0
"""

GALERA_DOWN = """\
ERROR 2002 (HY000): Can't connect to local server through socket '/run/mysqld/mysqld.sock' (2)
__rc=1
"""

RABBIT_OK = """\
{"alarms":[],"cluster_name":"rabbit@node01","disk_nodes":["rabbit@node01","rabbit@node02","rabbit@node03"],\
"feature_flags":[{"desc":"Support for maintenance mode","doc_url":"","name":"maintenance_mode_status",\
"provided_by":"rabbit","stability":"stable","state":"enabled"}],"listeners":{"rabbit@node01":[{"interface":"[::]",\
"node":"rabbit@node01","port":25672,"protocol":"clustering","purpose":"inter-node and CLI tool communication"}]},\
"maintenance_status":{"rabbit@node01":"not under maintenance"},"partitions":{},"ram_nodes":[],\
"running_nodes":["rabbit@node03","rabbit@node02","rabbit@node01"],\
"versions":{"rabbit@node01":{"erlang_version":"25.2.3","rabbitmq_version":"3.10.8"}}}
__rc=0
"""

RABBIT_PARTITIONED = """\
{"alarms":[{"node":"rabbit@node02","resource":"memory","type":"resource_alarm"}],"disk_nodes":["rabbit@node01","rabbit@node02","rabbit@node03"],\
"partitions":{"rabbit@node01":["rabbit@node03"]},"ram_nodes":[],"running_nodes":["rabbit@node01","rabbit@node02"]}
__rc=0
"""

RABBIT_DOWN = """\
Error: unable to perform an operation on node 'rabbit@node01'. Please see diagnostics information and suggestions below.

Most common reasons for this are:

 * Target node is unreachable (e.g. due to hostname resolution, TCP connection or firewall issues)
 * CLI tool fails to authenticate with the server (e.g. due to CLI tool's Erlang cookie not matching that of the server)
 * Target node is not running
__rc=69
"""

MEMCACHED_OK = (
    "STAT pid 812\r\nSTAT uptime 5120\r\nSTAT time 1795627194\r\nSTAT version 1.6.18\r\n"
    "STAT libevent 2.1.12-stable\r\nSTAT pointer_size 64\r\nSTAT curr_connections 2\r\n"
    "STAT total_connections 9\r\nSTAT threads 4\r\nEND\r\n__rc=0\n"
)

MEMCACHED_REFUSED = """\
Traceback (most recent call last):
  File "<string>", line 2, in <module>
  File "/usr/lib/python3.11/socket.py", line 851, in create_connection
    raise exceptions[0]
  File "/usr/lib/python3.11/socket.py", line 836, in create_connection
    sock.connect(sa)
ConnectionRefusedError: [Errno 111] Connection refused
__rc=1
"""


def lines(text: str) -> list[str]:
    # pyinfra hands process() the stdout lines; \r\n endings (memcached) may keep the \r.
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


# --- facts -------------------------------------------------------------------------------


def test_vip_holder_and_standby():
    held = F.VipHolder().process(lines(IP_HOLDER))
    assert held == {
        "holds_vip": True,
        "vip": "10.77.0.100",
        "interface": "enp8s0f0",
        "addresses": ["10.77.0.11/24", "10.77.0.100/32"],
        "error": None,
    }
    standby = F.VipHolder().process(lines(IP_STANDBY))
    assert standby["holds_vip"] is False and standby["error"] is None
    assert standby["addresses"] == ["10.77.0.12/24"]
    assert F.VipHolder().process(lines(IP_PREFIX_ONLY))["holds_vip"] is False


def test_vip_missing_interface_is_an_error():
    result = F.VipHolder().process(lines(IP_NO_DEVICE))
    assert result["holds_vip"] is False
    assert 'Device "enp8s0f0" does not exist' in result["error"]
    assert "exit status 1" in result["error"]


def test_haproxy_info_alive():
    info = F.HaproxyInfo().process(lines(HAPROXY_INFO))
    assert info == {"alive": True, "version": "2.6.12-1+deb12u4", "uptime_sec": 4, "pid": 6492, "error": None}


@pytest.mark.parametrize(
    "output, expected",
    [
        (HAPROXY_NO_SOCKET, "haproxy show info: /run/haproxy/admin.sock: No such file or directory "
                            "(HAProxy not running, or no `stats socket` there)"),
        (HAPROXY_REFUSED, "haproxy show info: /run/haproxy/admin.sock: Connection refused (HAProxy not running)"),
        (HAPROXY_UNKNOWN, "no 'Name: HAProxy'"),
        ("__missing=socat\n", "socat not installed"),
        ("Name: HAProxy\n", "no exit status"),  # output cut short
        ("__rc=124\n", "timed out"),
    ],
)
def test_haproxy_info_not_alive(output, expected):
    info = F.HaproxyInfo().process(lines(output))
    assert info["alive"] is False
    assert expected in info["error"]


def test_haproxy_servers_from_show_stat():
    result = F.HaproxyServers().process(lines(HAPROXY_STAT))
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


def test_haproxy_servers_errors():
    assert F.HaproxyServers().process(lines(HAPROXY_REFUSED))["error"] == (
        "haproxy show stat: /run/haproxy/admin.sock: Connection refused (HAProxy not running)")
    # An unexpected socat failure keeps socat's own line.
    odd = F.HaproxyServers().process(["socat: something else", "__rc=1"])
    assert odd["error"] == "haproxy show stat: exit status 1: socat: something else"
    no_header = F.HaproxyServers().process(["mariadb,node01,UP", "__rc=0"])
    assert "no CSV header" in no_header["error"]


def test_galera_synced():
    g = F.GaleraStatus().process(lines(GALERA_SYNCED))
    assert g == {
        "cluster_size": 3,
        "cluster_status": "Primary",
        "local_state_comment": "Synced",
        "ready": "ON",
        "connected": "ON",
        "cluster_state_uuid": "5f1c2f5e-ca5b-11f0-8b6d-1f2b8a5c3e11",
        "incoming_addresses": "10.77.0.11:3306,10.77.0.12:3306,10.77.0.13:3306",
        "error": None,
    }


def test_galera_non_primary_parses_without_error():
    g = F.GaleraStatus().process(lines(GALERA_NON_PRIMARY))
    assert (g["cluster_size"], g["cluster_status"], g["local_state_comment"], g["ready"]) == (
        1, "non-Primary", "Initialized", "OFF")
    assert g["error"] is None  # the status is read; evaluate() judges it


@pytest.mark.parametrize(
    "output, expected",
    [
        (GALERA_DOWN, "Can't connect to local server"),
        ("__missing=mysql\n", "mysql not installed"),
        ("__rc=0\n", "no wsrep status"),  # plain MariaDB without Galera
    ],
)
def test_galera_errors(output, expected):
    g = F.GaleraStatus().process(lines(output))
    assert expected in g["error"]
    assert g["cluster_size"] is None


def test_rabbitmq_members():
    r = F.RabbitmqMembers().process(lines(RABBIT_OK))
    assert r == {
        "running_nodes": ["rabbit@node01", "rabbit@node02", "rabbit@node03"],
        "disk_nodes": ["rabbit@node01", "rabbit@node02", "rabbit@node03"],
        "partitions": [],
        "alarms": [],
        "error": None,
    }


def test_rabbitmq_json_after_an_erlang_term():
    r = F.RabbitmqMembers().process(["{warning,deprecated_feature}"] + lines(RABBIT_OK))
    assert r["error"] is None and r["running_nodes"] == ["rabbit@node01", "rabbit@node02", "rabbit@node03"]


def test_rabbitmq_partitions_and_warnings_before_json():
    out = "Cluster status of node rabbit@node01 ...\n" + RABBIT_PARTITIONED
    r = F.RabbitmqMembers().process(lines(out))
    assert r["error"] is None
    assert r["running_nodes"] == ["rabbit@node01", "rabbit@node02"]
    assert r["partitions"] == ["rabbit@node01: rabbit@node03"]
    assert r["alarms"] == ["memory alarm on rabbit@node02"]


@pytest.mark.parametrize(
    "output, expected",
    [
        (RABBIT_DOWN, "rabbitmqctl cluster_status: exit status 69: Error: unable to perform an operation on node "
                      "'rabbit@node01'. Please see diagnostics information and suggestions below."),
        ("Error: this command requires the 'rabbit' app to be running on the target node.\n"
         "Usage\n\nrabbitmqctl [--node <node>] [--longnames] [--quiet] cluster_status\n__rc=64\n",
         "exit status 64: Error: this command requires the 'rabbit' app to be running on the target node."),
        ("__missing=rabbitmqctl\n", "rabbitmqctl not installed"),
        ("__rc=0\n", "rabbitmqctl cluster_status: no JSON in the answer"),
        ('{"running_nodes": [\n__rc=0\n', "unparsable JSON"),
        ('["rabbit@node01"]\n__rc=0\n', 'no JSON in the answer: ["rabbit@node01"]'),
        ('{"status": "ok"}\n__rc=0\n', "JSON without 'running_nodes'"),
        # An Erlang term where JSON was expected: the error quotes it.
        ("{badrpc,nodedown}\n__rc=0\n", "unparsable JSON (Expecting property name enclosed in double quotes: "
                                          "line 1 column 2 (char 1)): {badrpc,nodedown}"),
    ],
)
def test_rabbitmq_errors(output, expected):
    r = F.RabbitmqMembers().process(lines(output))
    assert expected in r["error"]
    assert r["running_nodes"] == []


def test_memcached_stats():
    m = F.MemcachedStats().process(lines(MEMCACHED_OK))
    assert m == {"answering": True, "version": "1.6.18", "uptime": 5120, "curr_connections": 2, "error": None}


def test_memcached_refused():
    m = F.MemcachedStats().process(lines(MEMCACHED_REFUSED))
    assert m["answering"] is False
    assert m["error"] == "memcached stats: exit status 1: ConnectionRefusedError: [Errno 111] Connection refused"


FACTS_AND_ARGS = [
    (F.VipHolder, {"interface": "enp8s0f0", "vip": "10.77.0.100"}),
    (F.HaproxyInfo, {"socket": "/run/haproxy/admin.sock"}),
    (F.HaproxyServers, {"socket": "/run/haproxy/admin.sock"}),
    (F.GaleraStatus, {}),
    (F.RabbitmqMembers, {}),
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
    # The python3 one-liner against a tiny fake memcached on localhost.
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def serve():
        conn, _ = server.accept()
        conn.recv(100)
        conn.sendall(b"STAT pid 1\r\nSTAT uptime 7\r\nSTAT version 1.6.18\r\nSTAT curr_connections 1\r\nEND\r\n")
        conn.recv(100)
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    command = F.MemcachedStats().command(address="127.0.0.1", port=port)
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    t.join(5)
    server.close()
    m = F.MemcachedStats().process(out.splitlines())
    assert m == {"answering": True, "version": "1.6.18", "uptime": 7, "curr_connections": 1, "error": None}


# --- evaluate() ------------------------------------------------------------------------

NAMES = ("node01", "node02", "node03")


def lab_site():
    return build_site(
        [(n, {"address": f"10.77.0.{11 + i}", "vrrp_priority": 150 - 10 * i}) for i, n in enumerate(NAMES)],
        {"internal_network": "10.77.0.0/24", "vip": "10.77.0.100", "vip_interface": "enp8s0f0"},
    )


def servers(site, down=(), status=None):
    """A HaproxyServers result: every catalogue listener, all servers UP unless named."""
    status = status or {}
    listeners = {}
    for listener in site.listeners:
        listeners[listener.name] = {
            n: {
                "status": status.get((listener.name, n), "DOWN" if (listener.name, n) in down else "UP"),
                "backup": listener.name == "mariadb" and n != "node01",
                "check": None,
            }
            for n in NAMES
        }
    return {"listeners": listeners, "backends": {}, "error": None}


def api_down(site):
    """The normal state of this project: OpenStack API servers DOWN, ours UP."""
    return {
        (lst.name, n)
        for lst in site.listeners
        if lst.name not in ("mariadb", "rabbitmq_management")
        for n in NAMES
    }


def healthy(site, holder="node01"):
    results = {}
    for n in NAMES:
        results[n] = {
            "vip": {"holds_vip": n == holder, "vip": "10.77.0.100", "interface": "enp8s0f0", "addresses": [], "error": None},
            "haproxy_info": {"alive": True, "version": "2.6.12-1+deb12u4", "uptime_sec": 60, "pid": 1, "error": None},
            "haproxy_servers": servers(site, down=api_down(site)),
            "galera": {"cluster_size": 3, "cluster_status": "Primary", "local_state_comment": "Synced", "ready": "ON",
                       "connected": "ON", "cluster_state_uuid": "u1", "incoming_addresses": "", "error": None},
            "rabbitmq": {"running_nodes": [f"rabbit@{x}" for x in NAMES], "disk_nodes": [], "partitions": [],
                         "alarms": [], "error": None},
            "memcached": {"answering": True, "version": "1.6.18", "uptime": 9, "curr_connections": 2, "error": None},
            "keepalived": {"active": "active", "vrrp_state": "MASTER" if n == holder else "BACKUP", "error": None},
        }
    return results


def statuses(report, host):
    return {c.name: c.status for c in report.hosts[host]}


def cluster(report, name):
    return next(c for c in report.cluster if c.name == name)


def test_healthy_cluster_passes_with_api_backends_informational():
    site = lab_site()
    report = evaluate(site, healthy(site))
    assert report.ok, report.failures()
    assert report.vip_holders == ["node01"]
    st = statuses(report, "node02")
    assert st["backend mariadb"] == OK and st["backend rabbitmq_management"] == OK
    apis = next(c for c in report.hosts["node02"] if c.name == "backends (APIs)")
    assert apis.status == INFO
    assert apis.detail.startswith("every server DOWN (OpenStack APIs not installed by this project) on 13 listeners: ")
    assert "keystone_internal" in apis.detail and "mariadb" not in apis.detail
    # An API listener with some servers UP gets its own row, still informational.
    results = healthy(site)
    results["node02"]["haproxy_servers"] = servers(site, down=api_down(site) - {("nova_api", "node01")})
    row = next(c for c in evaluate(site, results).hosts["node02"] if c.name == "backend nova_api")
    assert (row.status, row.detail) == (INFO, "node01 UP, node02 DOWN, node03 DOWN (an OpenStack API: not installed by this project)")
    assert "node02 UP (backup)" in next(c.detail for c in report.hosts["node01"] if c.name == "backend mariadb")
    assert cluster(report, "vip holder").detail == "node01 holds 10.77.0.100"
    text = report.render()
    assert "node01 (VIP holder)" in text and text.endswith("health: OK")
    assert json.loads(json.dumps(report.to_dict()))["ok"] is True


def test_split_brain_names_both_holders_and_fails_them():
    site = lab_site()
    results = healthy(site)
    results["node03"]["vip"]["holds_vip"] = True
    report = evaluate(site, results)
    vip = cluster(report, "vip holder")
    assert vip.status == FAIL
    assert vip.detail == "split brain: 10.77.0.100 is held by node01, node03"
    assert vip.hosts == ("node01", "node03")
    assert report.host_failures("node02") == []
    assert report.host_failures("node03") == ["cluster vip holder: split brain: 10.77.0.100 is held by node01, node03"]


def test_no_vip_holder_fails_every_host():
    site = lab_site()
    results = healthy(site, holder=None)
    report = evaluate(site, results)
    assert cluster(report, "vip holder").detail == "no controller holds 10.77.0.100"
    assert all(report.host_failures(n) for n in NAMES)


def test_galera_node_not_synced_fails_that_node():
    site = lab_site()
    results = healthy(site)
    results["node02"]["galera"].update(local_state_comment="Donor/Desynced")
    report = evaluate(site, results)
    assert statuses(report, "node02")["galera"] == FAIL
    # The host's own galera row explains it; the cluster galera row is not repeated for it.
    assert report.host_failures("node02") == ["galera: local state Donor/Desynced, not Synced"]
    assert cluster(report, "galera").hosts == ("node02",)
    assert report.host_failures("node01") == []


def test_galera_size_must_match_the_controllers_up():
    site = lab_site()
    results = healthy(site)
    for n in NAMES:
        results[n]["galera"]["cluster_size"] = 2
    report = evaluate(site, results)
    assert "cluster size 2, expected 3" in " ".join(report.host_failures("node01"))
    # One controller down: a two-node Primary cluster is what is expected of the others.
    del results["node03"]
    report = evaluate(site, results)
    assert statuses(report, "node01")["galera"] == OK
    assert statuses(report, "node03") == {"reachable": FAIL}
    assert cluster(report, "controllers up").hosts == ("node03",)


def test_galera_two_primary_components_of_one_cluster_are_a_split_brain():
    # the issue's --limit accident: node03 bootstrapped alone, same cluster UUID, disjoint members
    site = lab_site()
    results = healthy(site)
    two = "10.77.0.11:3306,10.77.0.12:3306"
    for n in ("node01", "node02"):
        results[n]["galera"].update(cluster_size=2, incoming_addresses=two)
    results["node03"]["galera"].update(cluster_size=1, incoming_addresses="10.77.0.13:3306")
    row = cluster(evaluate(site, results), "galera")
    assert row.status == FAIL
    assert row.detail.startswith("split brain: 2 Primary components of one cluster: {node01, node02} and {node03}")
    # one component seen from every node: no split brain
    assert cluster(evaluate(site, healthy(site)), "galera").status == OK


def test_galera_split_clusters_are_flagged():
    site = lab_site()
    results = healthy(site)
    results["node03"]["galera"].update(cluster_state_uuid="u2")
    report = evaluate(site, results)
    assert "different clusters" in cluster(report, "galera").detail
    # A Disconnected node (empty uuid, seen on the lab) is not "another cluster": it is not Synced.
    results = healthy(site)
    results["node03"]["galera"].update(cluster_state_uuid="", cluster_status="Disconnected",
                                       local_state_comment=None, cluster_size=0)
    row = cluster(evaluate(site, results), "galera")
    assert row.detail == "2/3 nodes Primary, Synced, of size 3; not: node03" and row.hosts == ("node03",)


def test_rabbitmq_missing_member_and_partition():
    site = lab_site()
    results = healthy(site)
    results["node02"]["rabbitmq"]["running_nodes"] = ["rabbit@node01", "rabbit@node02"]
    results["node01"]["rabbitmq"]["partitions"] = ["rabbit@node01: rabbit@node03"]
    report = evaluate(site, results)
    assert "not running here: rabbit@node03" in report.host_failures("node02")[0]
    assert "partitions: rabbit@node01: rabbit@node03" in report.host_failures("node01")[0]
    assert cluster(report, "rabbitmq").hosts == ("node01", "node02")


def test_critical_backends_must_be_up_api_backends_need_not():
    site = lab_site()
    results = healthy(site)
    results["node01"]["haproxy_servers"] = servers(site, down=api_down(site) | {("mariadb", "node03")})
    results["node01"]["haproxy_servers"]["listeners"]["mariadb"]["node03"]["check"] = "Layer7 wrong status"
    report = evaluate(site, results)
    reasons = report.host_failures("node01")
    assert len(reasons) == 1
    assert reasons[0].startswith("backend mariadb: node01 UP, node02 UP (backup), node03 DOWN (backup)")
    assert "VIP holder" in reasons[0] and "node03: Layer7 wrong status" in reasons[0]
    # On a standby a DOWN rabbitmq_management server fails too: it carries traffic after failover.
    results["node02"]["haproxy_servers"] = servers(site, down=api_down(site) | {("rabbitmq_management", "node01")})
    assert "standby" in evaluate(site, results).host_failures("node02")[0]


def test_transitional_or_maintenance_states_of_critical_backends_fail():
    site = lab_site()
    for state in ("UP 1/3", "DOWN 1/2", "MAINT", "no check"):
        results = healthy(site)
        results["node01"]["haproxy_servers"] = servers(site, down=api_down(site), status={("mariadb", "node02"): state})
        assert evaluate(site, results).host_failures("node01"), state


def test_listener_missing_from_running_haproxy_fails():
    site = lab_site()
    results = healthy(site)
    del results["node02"]["haproxy_servers"]["listeners"]["glance_api"]
    del results["node02"]["haproxy_servers"]["listeners"]["mariadb"]["node03"]
    reasons = evaluate(site, results).host_failures("node02")
    assert any(r.startswith("backend glance_api: listener missing") for r in reasons)
    assert any("no server line for node03" in r for r in reasons)


@pytest.mark.parametrize(
    "key, fact",
    [
        ("haproxy_info", F.HaproxyInfo.default()),
        ("haproxy_servers", F.HaproxyServers.default()),
        ("galera", F.GaleraStatus().process(["__missing=mysql"])),
        ("rabbitmq", F.RabbitmqMembers.default()),
        ("memcached", F.MemcachedStats().process(["__missing=python3"])),
        ("vip", F.VipHolder().process(lines(IP_NO_DEVICE))),
    ],
)
def test_missing_tool_or_no_output_fails_the_host(key, fact):
    site = lab_site()
    results = healthy(site)
    results["node02"][key] = fact
    report = evaluate(site, results)
    assert not report.ok
    assert report.host_failures("node02"), key
    assert fact["error"] in " ".join(report.host_failures("node02"))


def test_memcached_not_answering():
    site = lab_site()
    results = healthy(site)
    results["node03"]["memcached"] = F.MemcachedStats().process(lines(MEMCACHED_REFUSED))
    report = evaluate(site, results)
    assert statuses(report, "node03")["memcached"] == FAIL
    assert cluster(report, "memcached").detail == "answering on 2/3; not on node03"


def test_report_from_real_outputs_end_to_end():
    # The captured outputs through process() and evaluate(): mariadb node03 DOWN fails node01.
    site = lab_site()
    results = {}
    for i, n in enumerate(NAMES):
        results[n] = {
            "vip": F.VipHolder().process(lines(IP_HOLDER if n == "node01" else IP_STANDBY)),
            "haproxy_info": F.HaproxyInfo().process(lines(HAPROXY_INFO)),
            "haproxy_servers": F.HaproxyServers().process(lines(HAPROXY_STAT)),
            "galera": F.GaleraStatus().process(lines(GALERA_SYNCED)),
            "rabbitmq": F.RabbitmqMembers().process(lines(RABBIT_OK)),
            "memcached": F.MemcachedStats().process(lines(MEMCACHED_OK)),
        }
    report = evaluate(site, results)
    assert report.vip_holders == ["node01"]
    assert cluster(report, "galera").status == OK and cluster(report, "rabbitmq").status == OK
    # The captured HAProxy has only two listeners: the others are missing, mariadb node03 DOWN.
    reasons = report.host_failures("node01")
    assert any("backend mariadb" in r and "node03 DOWN (backup)" in r for r in reasons)
    assert any("backend nova_api: listener missing" in r for r in reasons)
    assert "health: FAILED" in report.render()


def test_report_reasons_default_mode_publishes_once():
    site = lab_site()
    results = healthy(site)
    results["node03"]["vip"]["holds_vip"] = True
    run = _Run(site=site, results=results)
    report = evaluate(site, results)
    active = set(NAMES)
    r1, p1 = report_reasons(run, report, "node02", active)
    r2, p2 = report_reasons(run, report, "node01", active)
    r3, p3 = report_reasons(run, report, "node03", active)
    assert (p1, p2, p3) == (True, False, False)
    assert r1 == [] and r2 and r3


def test_report_reasons_serial_mode_last_host_carries_cluster_failures():
    site = lab_site()
    full = healthy(site)
    full["node01"]["vip"]["holds_vip"] = True
    full["node02"]["vip"]["holds_vip"] = True  # split brain between the first two hosts
    run = _Run(site=site)
    active = set(NAMES)
    for n in NAMES:  # --serial: each host collects, then reports, before the next starts
        run.results[n] = full[n]
        pending = tuple(active - set(run.results))
        reasons, publish = report_reasons(run, evaluate(site, run.results, pending=pending), n, active)
        if n != "node03":
            assert (reasons, publish) == ([], False)
    assert publish is True
    assert reasons == ["cluster vip holder: split brain: 10.77.0.100 is held by node01, node02"]


def test_write_json(tmp_path):
    site = lab_site()
    results = healthy(site)
    results["node02"]["memcached"] = F.MemcachedStats().process(lines(MEMCACHED_REFUSED))
    path = tmp_path / "health.json"
    write_json(evaluate(site, results, generated_at="2026-11-25T17:00:00Z"), results, str(path))
    data = json.loads(path.read_text())
    assert data["ok"] is False
    assert data["generated_at"] == "2026-11-25T17:00:00Z"
    assert data["vip_holders"] == ["node01"]
    assert data["failures"][0].startswith("node02: memcached: memcached stats: exit status 1")
    assert {c["name"]: c["status"] for c in data["hosts"]["node02"]}["memcached"] == "FAIL"
    assert data["facts"]["node02"]["memcached"]["answering"] is False
    assert not (tmp_path / "health.json.tmp").exists()


# --- the pyinfra operations, through pyinfra's own API on this machine (@local) -------------


def local_run(monkeypatch, facts_for_host, tmp_path):
    """Queue and execute verify() for a one-controller site (@local) whose facts are given.

    Returns (state, calls): `calls` records when collect_facts ran (stage, is_executing).
    """
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.connect import connect_all
    from pyinfra.api.deploy import add_deploy
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.operations import run_ops
    from pyinfra.api.state import StateStage

    import operations.verify as V

    calls = []

    def fake_collect(host, site):
        calls.append(host.state.is_executing)
        return facts_for_host

    monkeypatch.setattr(V, "collect_facts", fake_collect)
    monkeypatch.setenv(V.JSON_ENV, str(tmp_path / "health.json"))
    inventory = Inventory(
        (["@local"], {}),
        controllers=(
            [("@local", {"address": "127.0.0.1", "vrrp_priority": 150})],
            {"internal_network": "127.0.0.0/8", "vip": "10.77.0.100", "vip_interface": "lo"},
        ),
    )
    state = State(inventory, Config())
    connect_all(state)
    state.set_stage(StateStage.Prepare)
    add_deploy(state, V.verify)
    assert calls == []  # queue time reads no fact: it would show the host before the run
    meta = state.get_meta_for_host(inventory.get_host("@local"))
    assert (meta.ops, meta.ops_change) == (3, 0)  # change detection: nothing to change
    state.set_stage(StateStage.Execute)
    try:
        run_ops(state)
    except PyinfraError as exc:  # the only host failed
        assert str(exc) == "No hosts remaining!"
    return state, calls


def local_facts(site_names=("@local",), healthy_host=True):
    site = build_site(
        [(n, {"address": "127.0.0.1", "vrrp_priority": 150}) for n in site_names],
        {"internal_network": "127.0.0.0/8", "vip": "10.77.0.100"},
    )
    listeners = {
        lst.name: {"@local": {"status": "UP" if lst.name in ("mariadb", "rabbitmq_management") else "DOWN",
                              "backup": False, "check": None}}
        for lst in site.listeners
    }
    return {
        "vip": {"holds_vip": healthy_host, "vip": "10.77.0.100", "interface": "lo", "addresses": [], "error": None},
        "haproxy_info": {"alive": True, "version": "2.6.12", "uptime_sec": 1, "pid": 1, "error": None},
        "haproxy_servers": {"listeners": listeners, "backends": {}, "error": None},
        "galera": {"cluster_size": 1, "cluster_status": "Primary", "local_state_comment": "Synced", "ready": "ON",
                   "connected": "ON", "cluster_state_uuid": "u", "incoming_addresses": "", "error": None},
        "rabbitmq": {"running_nodes": ["rabbit@@local"], "disk_nodes": [], "partitions": [], "alarms": [],
                     "error": None},
        "memcached": {"answering": True, "version": "1.6.18", "uptime": 1, "curr_connections": 1, "error": None},
    }


def test_verify_operations_read_after_changes_and_are_never_a_change(monkeypatch, tmp_path):
    state, calls = local_run(monkeypatch, local_facts(), tmp_path)
    assert calls == [True]  # read once, at execution
    assert not state.failed_hosts
    results = state.get_results_for_host(state.inventory.get_host("@local"))
    assert (results.ops, results.success_ops, results.error_ops) == (3, 3, 0)
    for op_hash in state.get_op_order():
        op_data = state.get_op_data_for_host(state.inventory.get_host("@local"), op_hash)
        assert op_data.operation_meta.did_change() is False  # "No changes"
    data = json.loads((tmp_path / "health.json").read_text())
    assert data["ok"] is True and data["vip_holders"] == ["@local"]


def test_verify_operations_fail_the_host_with_the_reason(monkeypatch, tmp_path):
    state, calls = local_run(monkeypatch, local_facts(healthy_host=False), tmp_path)
    host = state.inventory.get_host("@local")
    assert host in state.failed_hosts
    results = state.get_results_for_host(host)
    assert (results.success_ops, results.error_ops) == (2, 1)  # collect, settle ok; report failed
    data = json.loads((tmp_path / "health.json").read_text())
    assert data["failures"] == ["cluster: vip holder: no controller holds 10.77.0.100"]


# HAProxy running the Debian package's default config (no listen sections), seen on a lab node
# before the deploy's config was loaded: `show stat` answers with its header only.
HAPROXY_STAT_DEFAULT_CONFIG = STAT_HEADER + "\n\n__rc=0\n"


def test_haproxy_with_the_package_default_config_fails_in_one_row():
    fact = F.HaproxyServers().process(lines(HAPROXY_STAT_DEFAULT_CONFIG))
    assert fact == {"listeners": {}, "backends": {}, "error": None}
    site = lab_site()
    results = healthy(site)
    results["node01"]["haproxy_servers"] = fact
    assert evaluate(site, results).host_failures("node01") == [
        "haproxy backends: none of the site's 15 listeners runs in this HAProxy "
        "(the package's default config, or the deployed one not loaded)"
    ]


# --- outputs captured on the lab (node01 VIP holder, node02), through the probes as they run ---

LAB_RABBIT = '{"alarms":[],"cluster_name":"rabbit@node01","disk_nodes":["rabbit@node01","rabbit@node02","rabbit@node03"],"feature_flags":[{"desc":"Support setting version for classic mirrored queues","doc_url":"","name":"classic_mirrored_queue_version","provided_by":"rabbit","stability":"stable","state":"enabled"},{"desc":"Count unroutable publishes to be dropped in stats","doc_url":"","name":"drop_unroutable_metric","provided_by":"rabbitmq_management_agent","stability":"stable","state":"enabled"},{"desc":"Count AMQP `basic.get` on empty queues in stats","doc_url":"","name":"empty_basic_get_metric","provided_by":"rabbitmq_management_agent","stability":"stable","state":"enabled"},{"desc":"Default bindings are now implicit, instead of being stored in the database","doc_url":"","name":"implicit_default_bindings","provided_by":"rabbit","stability":"stable","state":"enabled"},{"desc":"Maintenance mode status","doc_url":"","name":"maintenance_mode_status","provided_by":"rabbit","stability":"stable","state":"enabled"},{"desc":"Support queues of type `quorum`","doc_url":"https://www.rabbitmq.com/quorum-queues.html","name":"quorum_queue","provided_by":"rabbit","stability":"stable","state":"enabled"},{"desc":"Support queues of type `stream`","doc_url":"https://www.rabbitmq.com/stream.html","name":"stream_queue","provided_by":"rabbit","stability":"stable","state":"enabled"},{"desc":"Configure connection and channel limits for a user","doc_url":"","name":"user_limits","provided_by":"rabbit","stability":"stable","state":"enabled"},{"desc":"Virtual host metadata (description, tags, etc)","doc_url":"","name":"virtual_host_metadata","provided_by":"rabbit","stability":"stable","state":"enabled"}],"listeners":{"rabbit@node01":[{"interface":"[::]","node":"rabbit@node01","port":15672,"protocol":"http","purpose":"HTTP API"},{"interface":"[::]","node":"rabbit@node01","port":25672,"protocol":"clustering","purpose":"inter-node and CLI tool communication"},{"interface":"10.77.0.11","node":"rabbit@node01","port":5672,"protocol":"amqp","purpose":"AMQP 0-9-1 and AMQP 1.0"}],"rabbit@node02":[{"interface":"[::]","node":"rabbit@node02","port":15672,"protocol":"http","purpose":"HTTP API"},{"interface":"[::]","node":"rabbit@node02","port":25672,"protocol":"clustering","purpose":"inter-node and CLI tool communication"},{"interface":"10.77.0.12","node":"rabbit@node02","port":5672,"protocol":"amqp","purpose":"AMQP 0-9-1 and AMQP 1.0"}],"rabbit@node03":[{"interface":"[::]","node":"rabbit@node03","port":15672,"protocol":"http","purpose":"HTTP API"},{"interface":"[::]","node":"rabbit@node03","port":25672,"protocol":"clustering","purpose":"inter-node and CLI tool communication"},{"interface":"10.77.0.13","node":"rabbit@node03","port":5672,"protocol":"amqp","purpose":"AMQP 0-9-1 and AMQP 1.0"}]},"maintenance_status":{"rabbit@node01":"not under maintenance","rabbit@node02":"not under maintenance","rabbit@node03":"not under maintenance"},"partitions":{},"ram_nodes":[],"running_nodes":["rabbit@node03","rabbit@node02","rabbit@node01"],"versions":{"rabbit@node01":{"erlang_version":"25.2.3","rabbitmq_name":"RabbitMQ","rabbitmq_version":"3.10.8"},"rabbit@node02":{"erlang_version":"25.2.3","rabbitmq_name":"RabbitMQ","rabbitmq_version":"3.10.8"},"rabbit@node03":{"erlang_version":"25.2.3","rabbitmq_name":"RabbitMQ","rabbitmq_version":"3.10.8"}}}\n__rc=0\n'

LAB_GALERA = (
    'wsrep_local_state_uuid\t63d79a8d-e8fa-11f1-89d5-db1b2225ca82\n'
    'wsrep_protocol_version\t11\n'
    'wsrep_protocol_application\t4\n'
    'wsrep_protocol_replicator\t11\n'
    'wsrep_protocol_gcs\t5\n'
    'wsrep_last_committed\t15\n'
    'wsrep_replicated\t0\n'
    'wsrep_replicated_bytes\t0\n'
    'wsrep_repl_keys\t0\n'
    'wsrep_repl_keys_bytes\t0\n'
    'wsrep_repl_data_bytes\t0\n'
    'wsrep_repl_other_bytes\t0\n'
    'wsrep_received\t4\n'
    'wsrep_received_bytes\t496\n'
    'wsrep_local_commits\t0\n'
    'wsrep_local_cert_failures\t0\n'
    'wsrep_local_replays\t0\n'
    'wsrep_local_send_queue\t0\n'
    'wsrep_local_send_queue_max\t1\n'
    'wsrep_local_send_queue_min\t0\n'
    'wsrep_local_send_queue_avg\t0\n'
    'wsrep_local_recv_queue\t0\n'
    'wsrep_local_recv_queue_max\t1\n'
    'wsrep_local_recv_queue_min\t0\n'
    'wsrep_local_recv_queue_avg\t0\n'
    'wsrep_local_cached_downto\t2\n'
    'wsrep_flow_control_paused_ns\t0\n'
    'wsrep_flow_control_paused\t0\n'
    'wsrep_flow_control_sent\t0\n'
    'wsrep_flow_control_recv\t0\n'
    'wsrep_flow_control_active\tfalse\n'
    'wsrep_flow_control_requested\tfalse\n'
    'wsrep_cert_deps_distance\t1\n'
    'wsrep_apply_oooe\t0\n'
    'wsrep_apply_oool\t0\n'
    'wsrep_apply_window\t0\n'
    'wsrep_apply_waits\t0\n'
    'wsrep_commit_oooe\t0\n'
    'wsrep_commit_oool\t0\n'
    'wsrep_commit_window\t0\n'
    'wsrep_local_state\t4\n'
    'wsrep_local_state_comment\tSynced\n'
    'wsrep_cert_index_size\t2\n'
    'wsrep_causal_reads\t0\n'
    'wsrep_cert_interval\t7.5\n'
    'wsrep_open_transactions\t0\n'
    'wsrep_open_connections\t0\n'
    'wsrep_incoming_addresses\t10.77.0.11:3306,10.77.0.12:3306,10.77.0.13:3306\n'
    'wsrep_cluster_weight\t3\n'
    'wsrep_desync_count\t0\n'
    'wsrep_evs_delayed\t\n'
    'wsrep_evs_evict_list\t\n'
    'wsrep_evs_repl_latency\t0/0/0/0/0\n'
    'wsrep_evs_state\tOPERATIONAL\n'
    'wsrep_gcomm_uuid\t6428458f-e8fa-11f1-a190-9aaf8c5f41b3\n'
    'wsrep_gmcast_segment\t0\n'
    'wsrep_checkpoint_position\t63d79a8d-e8fa-11f1-89d5-db1b2225ca82:15\n'
    'wsrep_se_checkpoint\t63d79a8d-e8fa-11f1-89d5-db1b2225ca82:15 0-1-12\n'
    'wsrep_applier_thread_count\t1\n'
    'wsrep_cluster_capabilities\t\n'
    'wsrep_cluster_conf_id\t3\n'
    'wsrep_cluster_size\t3\n'
    'wsrep_cluster_state_uuid\t63d79a8d-e8fa-11f1-89d5-db1b2225ca82\n'
    'wsrep_cluster_status\tPrimary\n'
    'wsrep_connected\tON\n'
    'wsrep_local_bf_aborts\t0\n'
    'wsrep_local_index\t1\n'
    'wsrep_provider_capabilities\t:MULTI_MASTER:CERTIFICATION:PARALLEL_APPLYING:TRX_REPLAY:ISOLATION:PAUSE:CAUSAL_READS:INCREMENTAL_WRITESET:UNORDERED:PREORDERED:STREAMING:NBO:\n'
    'wsrep_provider_name\tGalera\n'
    'wsrep_provider_vendor\tCodership Oy <info@codership.com>\n'
    'wsrep_provider_version\t4.23(rXXXX)\n'
    'wsrep_ready\tON\n'
    'wsrep_rollbacker_thread_count\t1\n'
    'wsrep_thread_count\t2\n'
    '__rc=0\n'
)

LAB_VIP_HOLDER = '__arg_vip=10.77.0.100\n__arg_interface=enp8s0f0\n2: enp8s0f0    inet 10.77.0.11/24 scope global enp8s0f0\\       valid_lft forever preferred_lft forever\n2: enp8s0f0    inet 10.77.0.100/24 scope global secondary enp8s0f0\\       valid_lft forever preferred_lft forever\n__rc=0\n'


def test_lab_captures():
    r = F.RabbitmqMembers().process(lines(LAB_RABBIT))
    assert r["error"] is None
    assert r["running_nodes"] == ["rabbit@node01", "rabbit@node02", "rabbit@node03"]
    assert r["partitions"] == [] and r["alarms"] == []
    g = F.GaleraStatus().process(lines(LAB_GALERA))
    assert (g["cluster_size"], g["cluster_status"], g["local_state_comment"], g["ready"], g["error"]) == (
        3, "Primary", "Synced", "ON", None)
    assert g["incoming_addresses"] == "10.77.0.11:3306,10.77.0.12:3306,10.77.0.13:3306"
    v = F.VipHolder().process(lines(LAB_VIP_HOLDER))
    # keepalived adds the VIP with the subnet's prefix, as a secondary address.
    assert v == {"holds_vip": True, "vip": "10.77.0.100", "interface": "enp8s0f0",
                 "addresses": ["10.77.0.11/24", "10.77.0.100/24"], "error": None}


def test_controllers_missing_from_every_listener_fail_in_one_row():
    # Seen on the lab: node04 and node05 added to the inventory, HAProxy still on the old config.
    names5 = NAMES + ("node04", "node05")
    site5 = build_site(
        [(n, {"address": f"10.77.0.{11 + i}", "vrrp_priority": 150 - 10 * i}) for i, n in enumerate(names5)],
        {"internal_network": "10.77.0.0/24", "vip": "10.77.0.100", "vip_interface": "enp8s0f0"},
    )
    site3 = lab_site()
    results = healthy(site3)
    results["node01"]["haproxy_servers"] = servers(site3, down=api_down(site3))
    report = evaluate(site5, {"node01": results["node01"]})
    rows = {c.name: c for c in report.hosts["node01"]}
    assert rows["haproxy servers"].status == FAIL
    assert rows["haproxy servers"].detail.startswith("no server line for node04, node05 in any listener")
    assert rows["backend mariadb"].status == OK  # the servers it has are judged as usual
    assert rows["backends (APIs)"].status == INFO
    assert not any("no server line" in c.detail for c in report.hosts["node01"] if c.name.startswith("backend"))


def test_a_hanging_fact_is_cut_by_the_timeout_and_reported(monkeypatch, tmp_path):
    # The real facts run on this machine (@local); GaleraStatus is made to hang. The op's
    # _timeout cuts it, the host is not failed mid-collection, the report names the cause.
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.connect import connect_all
    from pyinfra.api.deploy import add_deploy
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.operations import run_ops
    from pyinfra.api.state import StateStage

    import operations.verify as V

    monkeypatch.setattr(F.GaleraStatus, "command", lambda self: "sleep 10")
    monkeypatch.setattr(V, "FACT_TIMEOUT", 1)
    monkeypatch.setenv(V.JSON_ENV, str(tmp_path / "health.json"))
    inventory = Inventory(
        (["@local"], {}),
        controllers=(
            [("@local", {"address": "127.0.0.1", "vrrp_priority": 150})],
            {"internal_network": "127.0.0.0/8", "vip": "127.0.0.100", "vip_interface": "lo"},
        ),
    )
    state = State(inventory, Config())
    connect_all(state)
    state.set_stage(StateStage.Prepare)
    add_deploy(state, V.verify)
    state.set_stage(StateStage.Execute)
    with pytest.raises(PyinfraError, match="No hosts remaining"):
        run_ops(state)
    data = json.loads((tmp_path / "health.json").read_text())
    assert data["facts"]["@local"]["galera"]["error"] == F.NO_OUTPUT
    assert f"@local: galera: {F.NO_OUTPUT}" in data["failures"]
    # the collection went on after the timeout: the next facts were read
    assert data["facts"]["@local"]["memcached"]["error"] != F.NO_OUTPUT


def test_rabbitmq_still_listing_a_dead_node():
    # Seen on the lab: node01 stopped, node02/node03 still list rabbit@node01 as running.
    site = lab_site()
    results = healthy(site, holder="node02")
    del results["node01"]
    for n in ("node02", "node03"):
        results[n]["galera"]["cluster_size"] = 2
    report = evaluate(site, results)
    assert report.host_failures("node02") == [
        "rabbitmq: still listed as running though unreachable for this check: rabbit@node01"
    ]
    results["node02"]["rabbitmq"]["running_nodes"].append("rabbit@node09")
    assert "unexpected members: rabbit@node09" in evaluate(site, results).host_failures("node02")[0]


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
    results["node02"]["memcached"] = F.MemcachedStats().process(lines(MEMCACHED_REFUSED))
    report = evaluate(site, results, skipped=("node01", "node03"))
    assert cluster(report, "vip holder").status == OK
    assert [r.split(":")[0] for r in report.host_failures("node02")] == ["memcached"]


def test_lagging_critical_servers():
    from operations.verify import lagging

    site = lab_site()
    results = healthy(site)
    assert lagging("node01", results) == []
    # API listeners rising or falling do not matter; critical ones do.
    results["node01"]["haproxy_servers"] = servers(site, status={("nova_api", "node01"): "UP 1/5"})
    assert lagging("node01", results) == []
    results["node01"]["haproxy_servers"] = servers(site, status={("mariadb", "node02"): "UP 1/5"})
    assert lagging("node01", results) == ["mariadb/node02 UP 1/5"]
    # DOWN while node02 reports Galera Synced: HAProxy has not caught up yet (seen on the lab).
    results["node01"]["haproxy_servers"] = servers(site, status={("mariadb", "node02"): "DOWN"})
    assert lagging("node01", results) == ["mariadb/node02 DOWN"]
    results["node02"]["galera"]["local_state_comment"] = "Joined"
    assert lagging("node01", results) == []  # really down: nothing to wait for
    results["node01"]["haproxy_servers"] = servers(site, status={("rabbitmq_management", "node03"): "DOWN"})
    assert lagging("node01", results) == ["rabbitmq_management/node03 DOWN"]
    results["node03"]["rabbitmq"]["running_nodes"] = ["rabbit@node01", "rabbit@node02"]
    assert lagging("node01", results) == []
    results["node01"]["haproxy_servers"] = servers(site, status={("mariadb", "node02"): "MAINT"})
    assert lagging("node01", results) == []
    results["node01"]["haproxy_servers"] = F.HaproxyServers.default()
    assert lagging("node01", results) == []


class FakeHost:
    """Answers HaproxyServers from a list of canned results, one per call (the last repeats)."""

    name = "node01"

    def __init__(self, servers_answers):
        self.servers_answers = list(servers_answers)
        self.calls = []

    def get_fact(self, fact, **kwargs):
        self.calls.append((fact.__name__, kwargs))
        assert fact is F.HaproxyServers and kwargs.pop("_ignore_errors") is True
        return self.servers_answers.pop(0) if len(self.servers_answers) > 1 else self.servers_answers[0]


def test_settle_rereads_lagging_servers_until_they_settle():
    import operations.verify as V

    site = lab_site()
    rising = servers(site, down=api_down(site), status={("mariadb", "node02"): "DOWN 1/2"})
    settled = servers(site, down=api_down(site))
    results = healthy(site)
    results["node01"]["haproxy_servers"] = rising
    fake = FakeHost([rising, settled])
    slept = []
    assert V.settle(fake, site, results, sleep=slept.append) == 4 and slept == [2, 2]
    assert results["node01"]["haproxy_servers"]["listeners"] == settled["listeners"]
    assert results["node01"]["haproxy_servers"]["settle_wait_sec"] == 4
    assert fake.calls == [("HaproxyServers", {"socket": "/run/haproxy/admin.sock"})] * 2
    # Nothing lagging: no wait, no read.
    fake = FakeHost([settled])
    assert V.settle(fake, site, results, sleep=slept.append) == 0 and fake.calls == []
    # Never settling: bounded, and the state it ends in is what gets judged.
    results["node01"]["haproxy_servers"] = rising
    slept.clear()
    assert V.settle(FakeHost([rising]), site, results, sleep=slept.append) == V.SETTLE_SECONDS
    assert sum(slept) == V.SETTLE_SECONDS
    report = evaluate(site, results)
    assert any("node02 DOWN 1/2 (backup)" in r for r in report.host_failures("node01"))


def test_cluster_rows_catch_not_ready_galera_and_rabbit_alarms():
    site = lab_site()
    results = healthy(site)
    results["node02"]["galera"]["ready"] = "OFF"
    results["node03"]["rabbitmq"]["alarms"] = ["memory alarm on rabbit@node03"]
    report = evaluate(site, results)
    assert cluster(report, "galera").hosts == ("node02",)
    assert cluster(report, "rabbitmq").hosts == ("node03",)
    assert report.host_failures("node03") == ["rabbitmq: alarms: memory alarm on rabbit@node03"]
    assert cluster(evaluate(site, healthy(site)), "galera").detail == "3 nodes, Primary, all Synced, size 3"


def test_a_connection_dropped_mid_read_is_a_failed_check_not_a_crash():
    # Seen on the lab: a node rebooting mid-verification, paramiko raised EOFError from
    # open_session, which pyinfra 3.10 does not catch.
    import operations.verify as V

    class DroppingHost:
        name = "node01"

        def get_fact(self, fact, **kwargs):
            if fact is F.GaleraStatus:
                raise EOFError()
            return {"error": None, "called": fact.__name__}

    facts = V.collect_facts(DroppingHost(), lab_site())
    assert facts["galera"]["error"] == "connection failed while reading (EOFError: )"
    assert facts["galera"]["cluster_size"] is None  # the fact's default shape
    assert facts["memcached"] == {"error": None, "called": "MemcachedStats"}  # the others still read


# --- keepalived's state ----------------------------------------------------------------------


def test_keepalived_state_fact_parses_unit_and_vrrp_state():
    k = F.KeepalivedState()
    assert k.process(["active", "__vrrp=BACKUP", "", "__rc=0"]) == {"active": "active", "vrrp_state": "BACKUP", "error": None}
    # running, but no dump came: an error, never a healthy answer
    assert "did not dump its state" in k.process(["active", "__vrrp=", "", "__rc=0"])["error"]
    assert k.process(["inactive", "", "__rc=0"]) == {"active": "inactive", "vrrp_state": None, "error": None}
    assert k.process(["__missing=systemctl"])["error"] == "systemctl not installed (command not found)"
    assert k.process([])["error"]
    assert "kill -USR1 $(cat /run/keepalived.pid)" in k.command()


@pytest.mark.parametrize("node, keepalived, expected", [
    ("node02", {"active": "inactive", "vrrp_state": None, "error": None}, "keepalived inactive: this node cannot hold the VIP"),
    ("node02", {"active": "active", "vrrp_state": "FAULT", "error": None}, "VRRP FAULT: check_alive fails"),
    ("node02", {"active": "active", "vrrp_state": "STOP", "error": None}, "VRRP STOP"),
    ("node03", {"active": None, "vrrp_state": None, "error": "no answer from the host"}, "no answer from the host"),
])
def test_keepalived_that_cannot_take_the_vip_fails_that_node(node, keepalived, expected):
    site = lab_site()
    results = healthy(site)
    results[node]["keepalived"] = keepalived
    report = evaluate(site, results)
    assert statuses(report, node)["keepalived"] == FAIL
    (failure,) = report.host_failures(node)
    assert failure.startswith(f"keepalived: {expected}"), failure
    assert not report.ok


def test_keepalived_fault_names_the_rise_time():
    site = lab_site()
    results = healthy(site)
    results["node03"]["keepalived"]["vrrp_state"] = "FAULT"
    (failure,) = evaluate(site, results).host_failures("node03")
    assert "10 times in a row (20 s)" in failure  # rise 10 x interval 2 s, the article's values
