"""The host: managed files and systemd units, each read for many at once in one round trip."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from config.paths import FIREWALL_UNIT

UNITS = ("memcached", "mariadb", "rabbitmq-server", "haproxy", "keepalived", "galera-clustercheck", FIREWALL_UNIT,
         "epmd.socket")
# A config written whose restart or reload has not happened yet (a run interrupted in between)
# leaves a marker here; the next run applies it.
PENDING_DIR = "/var/lib/openstack-ha/pending"
# Secrets handed to a command (operations.steps.secret_input): 0700, each file 0600, removed
# by the command that reads it.
SECRET_DIR = "/var/lib/openstack-ha/private"


class FileStates(FactBase):
    """
    Owner, group, mode and SHA1 of several files in one round trip; None for a missing file:

    .. code:: python

        {"files": {"/etc/haproxy/haproxy.cfg": {"user": "root", "group": "haproxy", "mode": "640",
                                                "sha1": "3f7a..."},
                   "/etc/memcached.conf": None},
         "error": None}
    """

    @staticmethod
    def default():
        return {"files": {}, "error": "no answer from the host"}

    def command(self, paths):
        return "; ".join(
            f"if [ -e {shlex.quote(p)} ]; then echo \"F $(stat -c '%U %G %a' {shlex.quote(p)}) "
            f"$(sha1sum {shlex.quote(p)} | cut -d' ' -f1) \"{shlex.quote(p)}; else echo M {shlex.quote(p)}; fi"
            for p in paths
        )

    def process(self, output):
        states = {}
        for line in output:
            parts = line.split(" ", 5)
            if parts[0] == "M" and len(parts) == 2:
                states[parts[1]] = None
            elif parts[0] == "F" and len(parts) == 6 and len(parts[4]) == 40:
                states[parts[5]] = {"user": parts[1], "group": parts[2], "mode": parts[3], "sha1": parts[4]}
        return {"files": states, "error": None if states else "file states: nothing read"}


class ServiceStates(FactBase):
    """
    Active and enabled state of several systemd units in one round trip, and which of them
    have a restart or reload pending (a marker in PENDING_DIR):

    .. code:: python

        {"units": {"haproxy": {"active": "active", "enabled": "enabled", "pending": False},
                   "keepalived": {"active": "inactive", "enabled": "not-found", "pending": True}},
         "error": None}
    """

    @staticmethod
    def default():
        return {"units": {}, "error": "no answer from the host"}

    def command(self, units):
        return "; ".join(
            f'echo "{u} $(systemctl is-active {u}) $(systemctl is-enabled {u} 2>/dev/null || echo not-found) '
            f'$(test -e {PENDING_DIR}/{u} && echo pending)"' for u in units
        )

    def process(self, output):
        states = {}
        for line in output:
            parts = line.split()
            if len(parts) >= 3:
                states[parts[0]] = {"active": parts[1], "enabled": parts[2], "pending": parts[3:] == ["pending"]}
        return {"units": states, "error": None if states else "unit states: nothing read"}


class Maintenance(FactBase):
    """Whether this controller is in maintenance: its marker (config.files.MAINTENANCE_FILE)
    says 1. A missing file or 0 is not (keepalived writes 0 when the file is missing).

    .. code:: python

        {"out": True, "error": None}
    """

    @staticmethod
    def default():
        return {"out": None, "error": "no answer from the host"}

    def command(self, path: str):
        return f"echo \"maintenance=$(head -c 8 {shlex.quote(path)} 2>/dev/null | tr -d '[:space:]')\""

    def process(self, output):
        for line in output:
            if line.startswith("maintenance="):
                return {"out": line.partition("=")[2].strip() == "1", "error": None}
        return {**self.default(), "error": "maintenance marker: nothing read"}
