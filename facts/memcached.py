"""memcached: its `stats` answer at the node's address."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from facts.probe import NO_OUTPUT, as_int, failure, probe, split_probe


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
            "uptime": as_int(stats.get("uptime")),
            "curr_connections": as_int(stats.get("curr_connections")),
            "error": error,
        }
