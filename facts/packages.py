"""Debian packages: the version dpkg has installed and the versions apt offers, for the
upgrade plan (operations/upgrade_plan.py). Read only when the site pins a version
(package_versions): a default deploy runs no command of this module."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from facts.host import PENDING_DIR
from facts.probe import NO_OUTPUT, failure, probe, split_probe

DPKG = "__dpkg"  # a dpkg-query line: __dpkg <tab> name <tab> version <tab> status abbreviation
DPKG_RC = "__dpkg_rc="
# An upgrade turn's marker (operations/upgrade_plan.py), set first and cleared last: a turn
# interrupted in between (Ctrl-C, a lost connection, a failed step) is finished by the next run.
UPGRADE_MARKER = f"{PENDING_DIR}/upgrade"
PENDING = "__upgrade_pending="


class PackageVersions(FactBase):
    """Each package's installed version (`dpkg-query -W`: None when not installed) and the
    versions apt offers (`apt-cache madison`, binary packages only, the newest first as apt
    lists them). A package dpkg holds in a half-done state (unpacked, half-configured, a
    failed install) is in `unfinished` with dpkg's status letters. `pending`: an upgrade turn
    an earlier run began and did not finish (UPGRADE_MARKER).

    .. code:: python

        {"installed": {"mariadb-server": "1:10.11.18-0+deb12u1", "haproxy": None},
         "available": {"mariadb-server": ["1:10.11.19-0+deb12u1", "1:10.11.18-0+deb12u1"],
                       "haproxy": ["2.6.12-1+deb12u4", "2.6.12-1+deb12u3"]},
         "unfinished": {}, "pending": False, "error": None}
    """

    @staticmethod
    def default():
        return {"installed": {}, "available": {}, "unfinished": {}, "pending": False, "error": NO_OUTPUT}

    def command(self, names: tuple = ()):
        words = " ".join(shlex.quote(n) for n in names)
        fmt = shlex.quote(f"{DPKG}\\t${{Package}}\\t${{Version}}\\t${{db:Status-Abbrev}}\\n")
        # dpkg-query exits 1 when one of the packages is unknown to dpkg (never installed): its
        # own status is kept (any other is an error), apt-cache's is the probe's.
        return probe("apt-cache", f"echo {PENDING}$(test -e {UPGRADE_MARKER} && echo 1); "
                                  f"timeout 30 dpkg-query -W -f={fmt} {words} 2>/dev/null; echo {DPKG_RC}$?; "
                                  f"timeout 60 apt-cache madison {words}")

    def process(self, output):
        body, rc, missing, _ = split_probe(output)
        error = failure(body, rc, missing, "apt-cache madison")
        installed: dict[str, str | None] = {}
        available: dict[str, list[str]] = {}
        unfinished: dict[str, str] = {}
        dpkg_rc = None
        pending = False
        for line in body:
            if line.startswith(DPKG + "\t"):
                fields = line.split("\t")
                if len(fields) != 4:
                    continue
                _, name, version, status = fields
                # Status-Abbrev: wanted (u i h r p), state (n i c U F h W t), error flag.
                state = status[1:2]
                installed[name] = version if state == "i" else None
                if state not in ("i", "n", "c"):
                    unfinished[name] = status.strip()
            elif line.startswith(PENDING):
                pending = line[len(PENDING):].strip() == "1"
            elif line.startswith(DPKG_RC):
                dpkg_rc = line[len(DPKG_RC):].strip()
            elif line.count("|") == 2:
                name, version, source = (f.strip() for f in line.split("|"))
                if name and version and not source.endswith("Sources"):
                    available.setdefault(name, [])
                    if version not in available[name]:
                        available[name].append(version)
        if not error and dpkg_rc not in ("0", "1"):
            error = "dpkg-query: " + ("no answer" if dpkg_rc is None else f"exit status {dpkg_rc}")
        if error:
            return {**self.default(), "error": error}
        return {"installed": installed, "available": available, "unfinished": unfinished, "pending": pending, "error": None}
