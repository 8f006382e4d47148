"""HAProxy through its admin socket: `show info` (alive) and `show stat` (every server), sent and
read by facts/haproxy_api.py; the VIP's certificate it serves, as installed (its expiry date)."""

from __future__ import annotations

import re
import shlex

from pyinfra.api import FactBase

from config.tls import FACT_DATE, not_after
from facts.haproxy_api import ask, parse_stat
from facts.probe import NO_OUTPUT, as_int, cached_by_file, failure, probe, split_probe


def haproxy_socket_command(socket: str, request: str) -> str:
    return probe("socat", ask(socket, request), {"socket": socket})


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
        result["uptime_sec"] = as_int(info.get("Uptime_sec"))
        result["pid"] = as_int(info.get("Pid"))
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
        rows = parse_stat(body)
        for row in rows or ():
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
        if rows is None:
            result["error"] = "haproxy show stat: no CSV header in the answer"
        return result


class HaproxyCertificate(FactBase):
    """The VIP's certificate as installed on this controller (haproxy_tls_pem_path): when it
    expires, from `openssl x509 -enddate` (which reads the certificate, never the key).

    .. code:: python

        {"not_after": "2029-03-01T08:33:02Z", "error": None}
    """

    @staticmethod
    def default():
        return {"not_after": None, "error": NO_OUTPUT}

    def command(self, path: str):
        # openssl's start is ~18 ms of CPU on every controller of every run: its answer is kept
        # while the file stays the same one (facts.probe cached_by_file).
        read = f"timeout 10 openssl x509 -noout -enddate -in {shlex.quote(path)}"
        return probe("openssl", cached_by_file(path, "haproxy-certificate", read), {"path": path})

    def process(self, output):
        body, rc, missing, _ = split_probe(output)
        error = failure(body, rc, missing, "openssl x509 -enddate")
        said = next((line.strip() for line in body if line.startswith("Could not")), None)
        if error and said and not missing:
            error = f"openssl x509 -enddate: {said}"  # its first line says why (no such file, not PEM)
        until = next((d for d in map(not_after, body) if d is not None), None)
        if not error and until is None:
            error = "openssl x509 -enddate: no notAfter date in the answer"
        return {"not_after": None if error else until.strftime(FACT_DATE), "error": error}
