"""Adding and removing a controller on the running lab, under a steady write load.

Adding: node04 is created (`lab.up(4)`: inventories/lab.py lists every node that exists) and
the deploy runs: node04 installs everything, joins Galera (state transfer) and RabbitMQ, the
others get the longer `gcomm://` list (read only at start: no member restarts) and the new server
lines (HAProxy reloads). Removing, as an operator does it: node04 taken out of the inventory
(HA_LAB_NODES) while it still runs - the deploy refuses, naming it; node04 stopped - the deploy
forgets it in RabbitMQ and shrinks every list; its disk removed. Throughout, one client writes
through the VIP and one sends HTTP requests to an API listener; every acknowledged write must be
there at the end, and no write and no request may fail.
"""

from __future__ import annotations

import threading
import time
import urllib.error

import lab
from lab import backends, drills, sitemodel
from lab.drills import Writer, log

THREE = ["node01", "node02", "node03"]


class Requests(threading.Thread):
    """GET through the VIP on an API listener (the lab's stand-ins), one connection each, every
    50 ms, until stopped: how many were answered and how many failed."""

    def __init__(self, listener: str = "keystone_internal"):
        super().__init__(daemon=True)
        self.port, self.ok, self.failed = sitemodel.listen_port(listener), 0, 0
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            try:
                drills.http_get(self.port, timeout=5)
                self.ok += 1
            except (OSError, urllib.error.URLError):
                self.failed += 1
            self.stopping.wait(0.05)


def rabbit_members(node: str) -> str:
    return lab.exec_(node, ["rabbitmqctl", "cluster_status", "--formatter", "json"], timeout=60).stdout


def test_a_fourth_controller_joins_then_leaves_without_losing_a_write(healthy):
    table = "lifecycle"
    drills.prepare_writes(table)
    writer = Writer(table, "lifecycle")
    writer.start()
    requests = Requests()
    requests.start()
    try:
        lab.up(4)
        t0 = time.monotonic()
        run = drills.deploy()
        assert run.returncode == 0, drills.run_excerpt(run.stdout)
        t_add = time.monotonic() - t0
        radius = drills.blast_radius(run.stdout)
        # wsrep_cluster_address is read only at start: the longer member list restarts no member
        assert not any(f"{n}: restart mariadb" in radius for n in THREE), radius
        assert backends.install().returncode == 0
        report, _ = drills.wait_healthy(300)
        assert report["controllers"] == THREE + ["node04"]
        assert drills.galera_synced_count(report) == 4
        assert drills.rabbit_running(report) == {f"rabbit@{n}" for n in THREE + ["node04"]}
        failed_add = writer.failures
        log(f"node04 added in {t_add:.1f}s (deploy); healthy with 4; write failures so far: {failed_add}")

        # taken out of the inventory while it still runs: refused, nothing changed
        run = drills.deploy(nodes=THREE)
        assert run.returncode != 0
        assert f"does not list ({lab.address('node04')})" in run.stdout, run.stdout[-3000:]
        assert drills.galera_synced_count(drills.verify_report()) == 4

        # stopped, then the deploy without it
        lab.stop("node04")
        t0 = time.monotonic()
        run = drills.deploy(nodes=THREE)
        assert run.returncode == 0, drills.run_excerpt(run.stdout)
        t_remove = time.monotonic() - t0
        radius = drills.blast_radius(run.stdout)
        assert not any(f"{n}: restart mariadb" in radius for n in THREE), radius
        assert "forget rabbit@node04 (no longer in the inventory)" in run.stdout
        lab.remove("node04")
        report, _ = drills.wait_healthy(300)
        assert report["controllers"] == THREE
        assert drills.galera_synced_count(report) == 3
        assert "node04" not in rabbit_members("node01")
        log(f"node04 removed in {t_remove:.1f}s (deploy); healthy with 3; "
            f"write failures while removing: {writer.failures - failed_add}")
    finally:
        writer.stopping.set()
        writer.join(timeout=30)
        requests.stopping.set()
        requests.join(timeout=30)
        if "node04" in lab.node_names():  # a failure half-way: put the lab back to three
            if any(s["name"] == "node04" and s["state"] == "running" for s in lab.status()):
                lab.stop("node04")
            drills.deploy(nodes=THREE)
            lab.remove("node04")
    ids = {int(x) for x in drills.sql(f"SELECT id FROM {drills.WRITES_DB}.{table}").split()}
    missing = sorted(set(writer.acked) - ids)
    log(f"lifecycle: {len(writer.acked)} acknowledged writes, {len(missing)} missing, {writer.failures} failed; "
        f"HTTP through the VIP: {requests.ok} answered, {requests.failed} failed")
    assert not missing, missing[:20]
    # no member restarts, the writer never a donor: not one write fails (issue 9, item 6)
    assert writer.failures == 0 and requests.failed == 0, (writer.failures, requests.failed)
