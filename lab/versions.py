"""Package versions on the lab, for the rolling-upgrade test and bench (issue 19): which two
versions Debian offers of a package (the release's and the security archive's), and the lab's
set-up of a site deployed a while ago: the older versions installed by hand, one node at a time.

The deploy never downgrades (operations/upgrade_plan.py refuses it); this module does, by hand,
only to put the lab where a real site is before a security release: every node at the older
version, then pinned there by a deploy. Each node in turn: its units stopped, every installed
binary package of the pinned package's source at that version installed at the older one (apt
cannot mix mariadb-server 10.11.19 with mariadb-server-core 10.11.18), nothing auto-started
(a policy-rc.d of our own), the units started, Galera Synced again before the next node.
"""

from __future__ import annotations

import shlex

from config.packages import SAME_SOURCE, UNIT_OF
from facts.galera import SOCKET_UNITS
from facts.packages import PackageVersions
from lab.clients import wsrep
from lab.machines import sh
from lab.names import LabError
from lab.waits import log, wait_for
from operations.upgrade_plan import STOP_ORDER

# The packages the upgrade test moves: Debian 12 carries two versions of each (the point
# release's and the security archive's) most of the time.
PACKAGES = ("mariadb-server", "haproxy", "memcached")
POLICY = "/usr/sbin/policy-rc.d"


def versions(node: str, packages) -> dict:
    """The deploy's own PackageVersions fact, read on `node`."""
    fact = PackageVersions()
    got = fact.process(sh(node, fact.command(tuple(packages)), timeout=120).splitlines())
    if got["error"]:
        raise LabError(f"{node}: package versions not read: {got['error']}")
    return got


def two_versions(node: str, packages=PACKAGES) -> dict[str, tuple[str, str]]:
    """{package: (older, newer)}: the two newest versions apt offers on `node`, for each package
    offered at two or more (none when Debian's release and security archive agree)."""
    offered = versions(node, packages)["available"]
    return {p: (offered[p][1], offered[p][0]) for p in packages if len(offered.get(p, [])) >= 2}


def pins(pairs: dict[str, tuple[str, str]], which: int) -> dict[str, str]:
    """package_versions for one side of `pairs` (0 older, 1 newer): a package of a SAME_SOURCE
    group pins its whole group at the same version (preflight asks for it)."""
    out = {}
    for package, pair in pairs.items():
        group = next((g for g in SAME_SOURCE if package in g), (package,))
        out.update(dict.fromkeys(group, pair[which]))
    return out


def _same_source(node: str, package: str) -> list[str]:
    """Every installed binary package built from `package`'s source at its installed version."""
    fmt = shlex.quote("${Package}\\t${Version}\\t${source:Package}\\t${db:Status-Abbrev}\\n")
    rows = [line.split("\t") for line in sh(node, f"dpkg-query -W -f={fmt}", timeout=60).splitlines()]
    rows = [r for r in rows if len(r) == 4 and r[3].startswith("ii")]
    mine = next((r for r in rows if r[0] == package), None)
    if mine is None:
        raise LabError(f"{node}: {package} is not installed")
    return sorted(r[0] for r in rows if r[2] == mine[2] and r[1] == mine[1])


def install_by_hand(node: str, wanted: dict[str, str], members: int) -> None:
    """`node` at the `wanted` versions ({package: version}, older or newer), its units stopped
    first and started after, Galera Synced again; returns once it serves."""
    have = versions(node, wanted)["installed"]
    move = {p: v for p, v in wanted.items() if have.get(p) != v}
    if not move:
        return
    argv = sorted({f"{b}={move[p]}" for p in move for b in _same_source(node, p)})
    units = [u for u in STOP_ORDER if u in {UNIT_OF[p] for p in move if p in UNIT_OF}]
    log(f"{node}: {' '.join(argv)} by hand (the lab's set-up; units {', '.join(units)} stopped)")
    sh(node, " && ".join([f"systemctl stop {u}" for u in units] + [
        f"printf '#!/bin/sh\\nexit 101\\n' > {POLICY} && chmod 755 {POLICY}",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades --no-install-recommends "
        f"-o Dpkg::Options::=--force-confold {' '.join(shlex.quote(a) for a in argv)}; rc=$?; rm -f {POLICY}; "
        f"systemctl disable -q {' '.join(SOCKET_UNITS)} 2>/dev/null; exit $rc"]))
    sh(node, " && ".join(f"systemctl start {u}" for u in reversed(units)) or "true")
    if "mariadb" in units:
        wait_for(f"{node} Synced in a cluster of {members}", lambda: _synced(wsrep(node), members),
                 timeout=300, interval=2)


def _synced(status: dict[str, str], members: int) -> bool:
    """`status` (lab.clients.wsrep) is that of a Synced member of a cluster of `members`."""
    return status.get("wsrep_local_state_comment") == "Synced" and status.get("wsrep_cluster_size") == str(members)


def roll_by_hand(nodes: list[str], wanted: dict[str, str]) -> None:
    """Every node of `nodes` at `wanted`, one at a time (the last first: the writer last)."""
    for node in reversed(nodes):
        install_by_hand(node, wanted, len(nodes))
