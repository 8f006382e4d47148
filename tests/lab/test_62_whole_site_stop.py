"""A whole-site stop recovers with one deploy (issue 24 item 6).

A site's power maintenance: every controller powered off cleanly, one after another, then all
powered on again. Each mariadb then waits for a Primary component (or its start times out):
Galera does not bootstrap by itself after a clean stop. One deploy must make the lab healthy:
the Galera plan sees every controller and none Primary, stops the waiting servers, reads every
position again and bootstraps the most advanced (operations/galera_plan.py, mode "recover";
operations/galera.py), the others rejoin; RabbitMQ's brokers start together. Every write
acknowledged before the stop is there afterwards.

Not run yet when it was written: the lab was another engineer's at the time.
"""

from __future__ import annotations

import subprocess
import time

import pytest

import lab
from lab import backends, drills
from lab.drills import SqlError, Writer, log

NODES = ["node01", "node02", "node03"]


# Fixtures `deployed` and `healthy`: tests/lab/conftest.py.


def in_primary(node: str) -> bool:
    """node's mariadb answers and is in a Primary component (a server waiting for one answers nothing)."""
    try:
        return drills.wsrep(node).get("wsrep_cluster_status") == "Primary"
    except (SqlError, subprocess.SubprocessError, OSError):
        return False


@pytest.mark.long  # 122 s; every mariadb stopped and bootstrapped by the deploy stays in make test (test_35)
def test_every_node_stopped_cleanly_and_started_again_is_healthy_after_one_deploy(healthy):
    table = "whole_site_stop"
    drills.prepare_writes(table)
    writer = Writer(table, "whole-site-stop")
    writer.start()
    try:
        drills.wait_for("writes acknowledged through the VIP", lambda: len(writer.acked) >= 20, 60, 0.5)
    finally:  # never left writing into the next test
        writer.stopping.set()
        writer.join(timeout=30)
    acked = list(writer.acked)

    t0 = time.monotonic()
    for n in NODES:  # clean poweroff, one after another
        lab.stop(n)
    assert {s["name"]: s["state"] for s in lab.status()} == {n: "stopped" for n in NODES}
    for n in NODES:
        lab.start(n)
    t_cycle = time.monotonic() - t0
    # nobody bootstraps by itself after a clean stop: no node is Synced in a Primary component
    assert not any(in_primary(n) for n in NODES)

    t1 = time.monotonic()
    run = drills.deploy()
    t_deploy = time.monotonic() - t1
    assert run.returncode == 0, drills.run_excerpt(run.stdout)
    radius = drills.blast_radius(run.stdout)
    # the waiting servers are stopped by the deploy (recover), or had failed to start and are
    # bootstrapped from the most advanced position directly: either way, no refusal
    assert "recover from a whole-site stop" in radius or "bootstrap Galera from" in radius, radius
    assert "stop mariadb on every controller" not in run.stdout
    assert backends.install().returncode == 0  # the API stand-ins, as after any deploy

    report, waited = drills.wait_healthy(300)
    assert report["ok"], report.get("failures")
    assert drills.galera_synced_count(report) == len(NODES)
    assert drills.rabbit_running(report) == {f"rabbit@{n}" for n in NODES}
    ids = {int(x) for x in drills.sql(f"SELECT id FROM {drills.WRITES_DB}.{table}").split()}
    missing = sorted(set(acked) - ids)
    mode = "recover" if "recover from a whole-site stop" in radius else "bootstrap"
    log(f"whole-site stop: {len(NODES)} nodes stopped and started in {t_cycle:.1f}s; one deploy ({mode}) "
        f"in {t_deploy:.1f}s, healthy {waited:.1f}s later; {len(acked)} acknowledged writes, {len(missing)} missing")
    assert not missing, missing[:20]
