"""Verification facts: what each controller reports about the HA layer, read-only.

Every fact is a pyinfra FactBase with a `command()` and a pure `process(output)`, so the
parsing is tested offline from captured output (tests/unit/test_facts.py).

Two pyinfra 3.10 behaviours shape these commands:
- a fact whose command exits non-zero fails the host with "could not load fact", and a fact
  with `requires_command` whose binary is missing quietly returns its default. Neither may
  hide a broken service, so no fact here uses `requires_command`; instead each command
  checks its binary itself and always exits 0, printing `__missing=<binary>` or the tool's
  output followed by `__rc=<exit status>`. process() turns a missing binary, a non-zero
  status or unparsable output into an explicit `error` string.
- pyinfra sets no command timeout: every remote tool runs under `timeout`.

No fact takes a secret as an argument (pyinfra prints fact arguments with -v): MariaDB is
read as root through its unix socket, RabbitMQ with rabbitmqctl as root, HAProxy through its
admin socket, memcached with an unauthenticated `stats`.

Every result is a dict with an `error` key: None when the probe worked. A default() result
(no output at all, e.g. a broken connection) carries an error too, never a healthy answer.
"""

from __future__ import annotations

import json
import re
import shlex

from pyinfra.api import FactBase

RC_PREFIX = "__rc="
MISSING_PREFIX = "__missing="
ARG_PREFIX = "__arg_"


def probe(binary: str, command: str, args: dict[str, str] | None = None) -> str:
    """Shell text that runs `command` (stderr merged) if `binary` exists, always exits 0.

    Output: optional `__arg_<k>=<v>` lines (arguments process() needs), then either
    `__missing=<binary>` or the command's output and `__rc=<status>`.
    """
    echo_args = "".join(f"echo {shlex.quote(f'{ARG_PREFIX}{k}={v}')}; " for k, v in (args or {}).items())
    return (
        f"{echo_args}if command -v {binary} >/dev/null 2>&1; "
        # The extra newline: a tool whose output lacks a final one cannot hide the status.
        f"then ( {command} ) 2>&1; rc=$?; echo; echo {RC_PREFIX}$rc; "
        f"else echo {MISSING_PREFIX}{binary}; fi"
    )


def split_probe(output: list[str]) -> tuple[list[str], int | None, str | None, dict[str, str]]:
    """(body lines, exit status or None, missing binary or None, echoed args) of a probe()."""
    body: list[str] = []
    rc: int | None = None
    missing: str | None = None
    args: dict[str, str] = {}
    for raw in output:
        line = raw.rstrip("\r\n")
        if line.startswith(RC_PREFIX):
            try:
                rc = int(line[len(RC_PREFIX):])
            except ValueError:
                rc = -1
        elif line.startswith(MISSING_PREFIX):
            missing = line[len(MISSING_PREFIX):]
        elif line.startswith(ARG_PREFIX) and "=" in line:
            key, _, value = line[len(ARG_PREFIX):].partition("=")
            args[key] = value
        else:
            body.append(line)
    return body, rc, missing, args


def failure(body: list[str], rc: int | None, missing: str | None, what: str) -> str | None:
    """The error text of a probe, or None when it ran and exited 0."""
    if missing:
        return f"{missing} not installed (command not found)"
    if rc is None:
        return f"{what}: no exit status in the output (probe cut short)"
    if rc == 0:
        return None
    if rc == 124:
        return f"{what}: timed out"
    # The tool's own error line if it printed one (rabbitmqctl follows it with its usage text
    # or a list of hints), else its last line.
    said = next((line.strip() for line in body if line.strip().lower().startswith("error")), "")
    said = said or next((line.strip() for line in reversed(body) if line.strip()), "")
    return f"{what}: exit status {rc}" + (f": {said[:300]}" if said else "")


NO_OUTPUT = "no answer from the host (connection lost or command timed out; fact not collected)"


class VipHolder(FactBase):
    """Whether this node holds the VIP on the VIP interface, and its IPv4 addresses there.

    .. code:: python

        {"holds_vip": True, "vip": "10.77.0.100", "interface": "enp8s0f0",
         "addresses": ["10.77.0.11/24", "10.77.0.100/32"], "error": None}
    """

    @staticmethod
    def default():
        return {"holds_vip": False, "vip": None, "interface": None, "addresses": [], "error": NO_OUTPUT}

    def command(self, interface: str, vip: str):
        return probe(
            "ip",
            f"timeout 5 ip -o -4 addr show dev {shlex.quote(interface)}",
            {"vip": vip, "interface": interface},
        )

    def process(self, output):
        body, rc, missing, args = split_probe(output)
        result = {
            "holds_vip": False,
            "vip": args.get("vip"),
            "interface": args.get("interface"),
            "addresses": [],
            "error": failure(body, rc, missing, f"ip addr show dev {args.get('interface')}"),
        }
        if result["error"]:
            return result
        for line in body:
            words = line.split()
            if "inet" in words and words.index("inet") + 1 < len(words):
                result["addresses"].append(words[words.index("inet") + 1])
        result["holds_vip"] = any(a.split("/")[0] == result["vip"] for a in result["addresses"])
        return result


class KeepalivedState(FactBase):
    """keepalived's unit state, and its VRRP state as keepalived itself reports it: SIGUSR1
    makes it dump its state to /tmp/keepalived.data (its documented diagnostic; nothing else
    changes), whose `State = ` line is read.

    .. code:: python

        {"active": "active", "vrrp_state": "BACKUP", "error": None}
    """

    @staticmethod
    def default():
        return {"active": None, "vrrp_state": None, "error": NO_OUTPUT}

    def command(self, pid_file: str = "/run/keepalived.pid"):
        pid = shlex.quote(pid_file)
        return probe(
            "systemctl",
            "a=$(systemctl is-active keepalived); echo \"$a\"; "
            f"if [ \"$a\" = active ] && test -s {pid}; then "
            f"rm -f /tmp/keepalived.data; kill -USR1 $(cat {pid}); "
            "for i in $(seq 30); do grep -q '^ *State = ' /tmp/keepalived.data 2>/dev/null && break; sleep 0.1; done; "
            "echo __vrrp=$(sed -n 's/^ *State = //p' /tmp/keepalived.data 2>/dev/null | head -n1); fi; true",
        )

    def process(self, output):
        body, rc, missing, _ = split_probe(output)
        result = {"active": None, "vrrp_state": None,
                  "error": failure(body, rc, missing, "systemctl is-active keepalived")}
        if result["error"]:
            return result
        for line in (x.strip() for x in body):
            if line.startswith("__vrrp="):
                result["vrrp_state"] = line[len("__vrrp="):] or None
            elif line and result["active"] is None:
                result["active"] = line
        if result["active"] is None:
            result["error"] = "systemctl is-active keepalived printed nothing"
        elif result["active"] == "active" and result["vrrp_state"] is None:
            result["error"] = "keepalived did not dump its state on SIGUSR1 within 3 s (/tmp/keepalived.data)"
        return result


def haproxy_socket_command(socket: str, request: str) -> str:
    return probe(
        "socat",
        f"echo {shlex.quote(request)} | timeout 5 socat stdio UNIX-CONNECT:{shlex.quote(socket)}",
        {"socket": socket},
    )


# socat's own error line: `2026/11/25 17:23:27 socat[3443] E connect(, AF=1 "/run/...", 25): ...`
SOCAT_ERROR = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d socat\[\d+\] E (?P<what>.*?): (?P<why>[^:]+)$")


def haproxy_socket_failure(body, rc, missing, args, request: str) -> str | None:
    """A readable error for the admin socket: socat's line reduced to its cause."""
    error = failure(body, rc, missing, f"haproxy {request}")
    if error and rc not in (None, 0, 124) and not missing:
        socket = args.get("socket", "the admin socket")
        for line in body:
            m = SOCAT_ERROR.match(line.strip())
            if m:
                why = m.group("why")
                hint = {
                    "No such file or directory": "HAProxy not running, or no `stats socket` there",
                    "Connection refused": "HAProxy not running",
                    "Permission denied": "socket not accessible to this user",
                }.get(why)
                return f"haproxy {request}: {socket}: {why}" + (f" ({hint})" if hint else "")
    return error


class HaproxyInfo(FactBase):
    """HAProxy's `show info` on its admin socket: alive when it answers.

    .. code:: python

        {"alive": True, "version": "2.6.12-1+deb12u1", "uptime_sec": 62, "pid": 2211,
         "error": None}
    """

    @staticmethod
    def default():
        return {"alive": False, "version": None, "uptime_sec": None, "pid": None, "error": NO_OUTPUT}

    def command(self, socket: str):
        return haproxy_socket_command(socket, "show info")

    def process(self, output):
        body, rc, missing, args = split_probe(output)
        result = {"alive": False, "version": None, "uptime_sec": None, "pid": None}
        error = haproxy_socket_failure(body, rc, missing, args, "show info")
        info = {}
        for line in body:
            key, sep, value = line.partition(":")
            if sep:
                info[key.strip()] = value.strip()
        if not error and info.get("Name") != "HAProxy":
            error = "haproxy show info: no 'Name: HAProxy' in the answer" + (
                f": {body[0].strip()}" if body and body[0].strip() else ""
            )
        result["version"] = info.get("Version")
        result["uptime_sec"] = _int(info.get("Uptime_sec"))
        result["pid"] = _int(info.get("Pid"))
        result["alive"] = error is None
        result["error"] = error
        return result


class HaproxyServers(FactBase):
    """HAProxy's `show stat` (CSV): every listener's servers and their check status.

    Status is HAProxy's own text: UP, DOWN, "UP 1/2" (going down), "DOWN 1/2" (going up),
    MAINT, DRAIN, NOLB, "no check". Listeners without servers (stats) have no entry.

    .. code:: python

        {"listeners": {"mariadb": {
            "node01": {"status": "UP", "backup": False, "check": "Layer4 check passed"},
            "node03": {"status": "DOWN", "backup": True,
                       "check": "Layer4 connection problem: Connection refused"}}},
         "backends": {"mariadb": "UP"}, "error": None}
    """

    @staticmethod
    def default():
        return {"listeners": {}, "backends": {}, "error": NO_OUTPUT}

    def command(self, socket: str):
        return haproxy_socket_command(socket, "show stat")

    def process(self, output):
        body, rc, missing, args = split_probe(output)
        result = {
            "listeners": {},
            "backends": {},
            "error": haproxy_socket_failure(body, rc, missing, args, "show stat"),
        }
        if result["error"]:
            return result
        header = None
        for line in body:
            if line.startswith("# "):
                header = line[2:].split(",")
                continue
            if not line.strip() or header is None:
                continue
            row = dict(zip(header, line.split(",")))
            pxname, svname = row.get("pxname"), row.get("svname")
            if not pxname or not svname or svname == "FRONTEND":
                continue
            if svname == "BACKEND":
                result["backends"][pxname] = row.get("status", "")
                continue
            check = ": ".join(x for x in (row.get("check_desc"), row.get("last_chk")) if x)
            result["listeners"].setdefault(pxname, {})[svname] = {
                "status": row.get("status", ""),
                "backup": row.get("bck") == "1",
                "check": check or None,
            }
        if header is None:
            result["error"] = "haproxy show stat: no CSV header in the answer"
        return result


# Keys of SHOW GLOBAL STATUS LIKE 'wsrep_%' that the report uses.
WSREP_KEYS = (
    "wsrep_cluster_size",
    "wsrep_cluster_status",
    "wsrep_local_state_comment",
    "wsrep_ready",
    "wsrep_connected",
    "wsrep_cluster_state_uuid",
    "wsrep_incoming_addresses",
)


class GaleraStatus(FactBase):
    """Galera's view from this node (`mysql` as root over the unix socket, no password).

    .. code:: python

        {"cluster_size": 3, "cluster_status": "Primary", "local_state_comment": "Synced",
         "ready": "ON", "connected": "ON", "cluster_state_uuid": "8d1f...",
         "incoming_addresses": "10.77.0.11:3306,10.77.0.12:3306,10.77.0.13:3306", "error": None}
    """

    @staticmethod
    def default():
        return {**{k[len("wsrep_"):]: None for k in WSREP_KEYS}, "error": NO_OUTPUT}

    def command(self):
        return probe(
            "mysql",
            "timeout 10 mysql --connect-timeout=5 -N -B -e \"SHOW GLOBAL STATUS LIKE 'wsrep_%'\"",
        )

    def process(self, output):
        body, rc, missing, _ = split_probe(output)
        status = {}
        for line in body:
            key, sep, value = line.partition("\t")
            if sep:
                status[key.strip()] = value.strip()
        result = {k[len("wsrep_"):]: status.get(k) for k in WSREP_KEYS}
        result["cluster_size"] = _int(result["cluster_size"])
        error = failure(body, rc, missing, "mysql SHOW GLOBAL STATUS")
        if not error and not status:
            error = "mysql answered but reports no wsrep status (Galera not enabled)"
        result["error"] = error
        return result


class RabbitmqMembers(FactBase):
    """`rabbitmqctl cluster_status --formatter json` on this node.

    .. code:: python

        {"running_nodes": ["rabbit@node01", "rabbit@node02", "rabbit@node03"],
         "disk_nodes": ["rabbit@node01", "rabbit@node02", "rabbit@node03"],
         "partitions": [], "alarms": [], "error": None}
    """

    @staticmethod
    def default():
        return {"running_nodes": [], "disk_nodes": [], "partitions": [], "alarms": [], "error": NO_OUTPUT}

    def command(self):
        return probe("rabbitmqctl", "timeout 30 rabbitmqctl -q cluster_status --formatter json")

    def process(self, output):
        body, rc, missing, _ = split_probe(output)
        result = {"running_nodes": [], "disk_nodes": [], "partitions": [], "alarms": []}
        error = failure(body, rc, missing, "rabbitmqctl cluster_status")
        data = None
        if not error:
            data, error = _find_json_object(body, "running_nodes", "rabbitmqctl cluster_status")
        if isinstance(data, dict):
            result["running_nodes"] = sorted(data.get("running_nodes") or [])
            result["disk_nodes"] = sorted(data.get("disk_nodes") or [])
            partitions = data.get("partitions") or []
            # A map {node: [nodes it cannot see]} or a list, depending on the version.
            if isinstance(partitions, dict):
                partitions = [f"{node}: {', '.join(map(str, seen))}" for node, seen in partitions.items()]
            result["partitions"] = [str(p) for p in partitions]
            result["alarms"] = [_alarm_text(a) for a in data.get("alarms") or []]
        elif not error:
            error = "rabbitmqctl cluster_status: JSON is not an object"
        result["error"] = error
        return result


def _find_json_object(body: list[str], key: str, what: str):
    """(the first JSON object in the output that has `key`, None) or (None, error text).

    Tools print warnings or Erlang terms (`{badrpc,...}`) around their JSON: each line that
    starts with `{` is tried; the error quotes the start of the output.
    """
    text = "\n".join(body)
    decoder = json.JSONDecoder()
    offset = 0
    problem = None
    for line in body:
        if line.lstrip().startswith("{"):
            start = offset + len(line) - len(line.lstrip())
            try:
                data, _ = decoder.raw_decode(text[start:])
            except ValueError as exc:
                problem = problem or f"unparsable JSON ({exc})"
            else:
                if isinstance(data, dict) and key in data:
                    return data, None
                problem = problem or f"JSON without {key!r}"
        offset += len(line) + 1
    snippet = " ".join(text.split())[:160]
    return None, f"{what}: {problem or 'no JSON in the answer'}" + (f": {snippet}" if snippet else "")


def _alarm_text(alarm) -> str:
    """`memory alarm on rabbit@node01` from the JSON formatter's alarm maps."""
    if isinstance(alarm, dict):
        what = alarm.get("resource") or alarm.get("type") or json.dumps(alarm, sort_keys=True)
        return f"{what} alarm on {alarm.get('node', '?')}"
    return str(alarm)


# A memcached `stats` over TCP with python3 (always on the nodes; netcat may not be).
MEMCACHED_PROBE = """\
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
s.sendall(b"stats\\r\\n")
data = b""
while not data.endswith(b"END\\r\\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
s.sendall(b"quit\\r\\n")
sys.stdout.write(data.decode("ascii", "replace"))
"""


class MemcachedStats(FactBase):
    """memcached's `stats` answer at this node's address.

    .. code:: python

        {"answering": True, "version": "1.6.18", "uptime": 5120, "curr_connections": 2,
         "error": None}
    """

    @staticmethod
    def default():
        return {"answering": False, "version": None, "uptime": None, "curr_connections": None, "error": NO_OUTPUT}

    def command(self, address: str, port: int = 11211):
        return probe(
            "python3",
            f"timeout 5 python3 -c {shlex.quote(MEMCACHED_PROBE)} {shlex.quote(address)} {int(port)}",
        )

    def process(self, output):
        body, rc, missing, _ = split_probe(output)
        stats = {}
        for line in body:
            words = line.strip().split(" ", 2)
            if len(words) == 3 and words[0] == "STAT":
                stats[words[1]] = words[2]
        error = failure(body, rc, missing, "memcached stats")
        if not error and "pid" not in stats:
            error = "memcached stats: no STAT lines in the answer"
        return {
            "answering": error is None,
            "version": stats.get("version"),
            "uptime": _int(stats.get("uptime")),
            "curr_connections": _int(stats.get("curr_connections")),
            "error": error,
        }


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
