"""Upgrades on the lab (issue 19; docs/operations.md "Upgrades").

1. A downgrade pin on the deployed lab (a package pinned below its installed version) is refused
   before any change: the deploy fails naming the package and the supported path, no operation
   runs, no pins file is written, no traceback.
2. The rolling upgrade under load (tests/bench/upgrade.py, whose figures the README keeps): the
   lab moved by hand to the older of the two versions Debian 12 offers of mariadb-server, haproxy
   and memcached and pinned there; then one deploy with the newer pins while SQL clients, an AMQP
   publisher with confirms, a consumer on a quorum queue and GETs with one retry run through it.
   Nothing acknowledged is lost (the soak's checker), no GET fails twice, every node is at the
   new versions, each MariaDB turn rejoined by IST, the report is healthy and the next deploy
   changes nothing (but the socket unit below). Always: the pins removed at the end (the lab as a fresh one is).
   Then the next boot: mariadb-server's postinst enables mariadb.socket on an upgrade, which at
   boot takes 3306 on every address (HAProxy cannot bind the VIP's, mariadb fails). The roll
   leaves it disabled everywhere; enabled again by hand (an `apt-get upgrade` made by hand), the
   report warns, the next deploy disables it and changes nothing else, and that controller,
   stopped and started, serves again.
"""

from __future__ import annotations

import lab
from config.paths import APT_PINS
from facts.galera import SOCKET_UNITS
from lab import drills, versions
from lab.drills import log
from tests.bench import upgrade

NODES = ["node01", "node02", "node03"]
REBOOTED = "node02"
# The single-try SQL transactions a client may lose per event of the roll (a writer switch, off
# the writer and back, or the VIP's move; the bound). Deadlocks between the two clients
# are the workload's own conflicts, not the roll's (tests/bench/upgrade.py roll_failures).
PER_SWITCH = 2


def offered_pairs() -> dict:
    pairs = versions.two_versions(NODES[0])
    assert pairs, (f"apt offers one version only of each of {', '.join(versions.PACKAGES)} on {NODES[0]}: "
                   "nothing to upgrade between (Debian's release and security archive agree today)")
    return pairs


def socket_units(node: str) -> str:
    """"enabled" when either of MariaDB's socket activation units is (facts.galera.SOCKET_UNITS)."""
    run = lab.exec_(node, ["systemctl", "is-enabled", "-q", *SOCKET_UNITS], timeout=30)
    return "enabled" if run.returncode == 0 else "disabled"


def test_a_downgrade_pin_is_refused_before_any_change(healthy):
    pairs = offered_pairs()
    package, (old, new) = sorted(pairs.items())[0]
    before = upgrade.installed(NODES, versions.pins({package: (old, new)}, 0))
    assert all(v.get(package) == new for v in before.values()), before
    run = drills.deploy(data={"package_versions": versions.pins({package: (old, new)}, 0)})
    assert run.returncode != 0, drills.run_excerpt(run.stdout)
    assert f"{package} {new} → {old} is a downgrade" in run.stdout, drills.run_excerpt(run.stdout)
    assert "Traceback" not in run.stdout, drills.run_excerpt(run.stdout)
    assert drills.changed_operations(run.stdout) == []
    for n in NODES:
        assert lab.exec_(n, ["test", "-e", APT_PINS], timeout=30).returncode != 0, f"{n}: {APT_PINS} written"
    assert upgrade.installed(NODES, versions.pins({package: (old, new)}, 0)) == before


def test_b_rolling_upgrade_under_load_loses_nothing(healthy):
    pairs = offered_pairs()
    try:
        upgrade.settle(pairs)
        got = upgrade.roll(pairs)
        report = got["report"]
        log(report.text())
        log(f"upgrade: turns {got['turns']} s, roll {got['roll_s']} s, rejoined {got['rejoined']}, "
            f"single-try failures {got['failed_single_try']} in {got['events']} events, GETs {got['gets']}")
        assert report.lost == 0 and report.other == 0, report.text()
        assert report.acknowledged.get("writes", 0) > 0 and report.acknowledged.get("messages", 0) > 0, report.acknowledged
        assert got["gets"]["failed"] == 0 and got["gets"]["ok"] > 0, got["gets"]
        # a writer switch (off and back) and the VIP's move each cost a client at most PER_SWITCH
        assert got["worst_per_client_per_event"] <= PER_SWITCH, (got["failed_single_try"], got["events"])
        assert sorted(got["turns"]) == NODES, got["turns"]
        if "mariadb-server" in pairs:
            assert got["rejoined"] == dict.fromkeys(NODES, "IST"), got["rejoined"]
        new = versions.pins(pairs, 1)
        assert upgrade.installed(NODES, new) == dict.fromkeys(NODES, new)
        report, _ = drills.wait_healthy(300)
        assert report["ok"], report.get("failures")

        # the next deploy changes nothing but the socket unit enabled by hand below (one deploy
        # for both: make test's budget)
        assert {n: socket_units(n) for n in NODES} == dict.fromkeys(NODES, "disabled")
        assert lab.exec_(REBOOTED, ["systemctl", "enable", "-q", "mariadb.socket"], timeout=30).returncode == 0
        warned = [w for w in drills.verify_report().get("warnings", []) if "mariadb.socket" in w]
        assert [w.split(":")[0] for w in warned] == [REBOOTED], warned
        fixed = drills.deploy(data={"package_versions": new})
        assert fixed.returncode == 0, drills.run_excerpt(fixed.stdout)
        assert drills.changed_operations(fixed.stdout) == ["MariaDB Galera | galera: socket activation units disabled"], \
            drills.changed_operations(fixed.stdout)
        assert socket_units(REBOOTED) == "disabled"
        lab.stop(REBOOTED)
        drills.power_on(REBOOTED)
        report, took = drills.wait_healthy(300)
        assert report["ok"], report.get("failures")
        log(f"{REBOOTED} stopped and started after the upgrade: healthy in {took:.0f} s")
    finally:
        upgrade.unpin()
