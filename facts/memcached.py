"""memcached: its `stats` answer at the node's address."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from facts.probe import NO_OUTPUT, as_int, failure, probe, split_probe


# A memcached `stats` over TCP with bash's /dev/tcp (bash is always on the nodes, netcat may not
# be; python3 cost five times the CPU): `stats` and `quit` sent together, memcached answers the
# first and closes on the second. argv: address, port.
MEMCACHED_PROBE = 'exec 3<>"/dev/tcp/$0/$1" && printf \'stats\\r\\nquit\\r\\n\' >&3 && cat <&3'


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
        return probe("bash", f"timeout 5 bash -c {shlex.quote(MEMCACHED_PROBE)} {shlex.quote(address)} {int(port)}")

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
