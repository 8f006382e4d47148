"""The deploy under partial views, on the lab: a `--limit` repair, a rolling restart killed
half-way and re-run, a node failing its restart mid-roll.

Each test starts from the healthy, deployed lab and leaves it healthy (the `healthy` fixture
restores it, also when the test failed). Config changes are made with HA_LAB_DATA (group data
for one run): `mariadb_max_connections`, which only a restart of mariadbd applies.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time

import lab
from lab import drills
from lab.drills import log

NODES = ["node01", "node02", "node03"]
BREAK = "/etc/systemd/system/mariadb.service.d/zz-drill-broken.conf"


def max_connections(node: str) -> int:
    return int(drills.node_sql(node, "SELECT @@max_connections").strip())


def galera(node: str) -> dict:
    out = drills.node_sql(node, "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state_comment',"
                                "'wsrep_cluster_status','wsrep_cluster_size','wsrep_cluster_state_uuid')", timeout=15)
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


def one_component(nodes=NODES) -> bool:
    """Every node Synced in the same Primary component of len(nodes)."""
    states = [galera(n) for n in nodes]
    return (all(s.get("wsrep_cluster_status") == "Primary" and s.get("wsrep_local_state_comment") == "Synced"
                and s.get("wsrep_cluster_size") == str(len(nodes)) for s in states)
            and len({s.get("wsrep_cluster_state_uuid") for s in states}) == 1)


class Quorum(threading.Thread):
    """Samples, every 0.5 s, how many nodes are in a Primary component (Synced, or a Donor of
    a rejoining node's state transfer): the smallest number seen while a rolling step runs
    (never below a majority)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stopping = threading.Event()
        self.lowest = len(NODES)

    def run(self):
        while not self.stopping.is_set():
            count = 0
            for n in NODES:
                try:
                    s = galera(n)
                except Exception:  # noqa: BLE001 - a node restarting does not answer
                    continue
                count += s.get("wsrep_cluster_status") == "Primary" and s.get("wsrep_local_state_comment") in (
                    "Synced", "Donor/Desynced")
            self.lowest = min(self.lowest, count)
            self.stopping.wait(0.5)


def test_limit_repairs_a_stopped_node_by_joining_never_bootstrapping(healthy):
    drills.systemctl("node03", "stop", "mariadb")
    run = drills.pyinfra("-y", "inventories/lab.py", "deploy.py", "--limit", "node03")
    assert run.returncode == 0, drills.run_excerpt(run.stdout)
    assert "node03: join the Galera cluster" in run.stdout, run.stdout[-4000:]
    assert "bootstrap" not in drills.blast_radius(run.stdout)
    drills.wait_for("one Primary component of 3", one_component, timeout=60)
    log("--limit node03: node03 joined the running cluster (one component of 3)")


def test_limit_without_a_primary_in_sight_refuses_to_bootstrap(healthy):
    """Every mariadb stopped, a run limited to one node: no bootstrap, the refusal says why."""
    for n in NODES:
        drills.systemctl(n, "stop", "mariadb")
    try:
        run = drills.pyinfra("-y", "inventories/lab.py", "deploy.py", "--limit", "node03")
        assert run.returncode != 0
        assert "not bootstrapping" in run.stdout and "without --limit" in run.stdout, run.stdout[-3000:]
        assert all(drills.systemctl(n, "is-active", "mariadb").stdout.strip() != "active" for n in NODES)
        # the whole picture: the most advanced is bootstrapped, the others join
        run = drills.deploy()
        assert run.returncode == 0, drills.run_excerpt(run.stdout)
        assert "the most advanced node after a full outage" in run.stdout
        drills.wait_for("one Primary component of 3", one_component, timeout=60)
    finally:
        if not one_component():
            drills.deploy()


def _deploy_until(data: dict, marker: str, count: int = 1) -> tuple[str, float]:
    """Start a deploy with `data`, kill it (its whole process group, by PID) as soon as its
    output shows `marker` for the `count`-th time; returns the output and when it was killed."""
    env = {**os.environ, "HA_LAB_DATA": json.dumps(data)}
    proc = subprocess.Popen([drills.PYINFRA, "-y", "inventories/lab.py", "deploy.py"], cwd=drills.ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    out = []
    try:
        deadline = time.monotonic() + 600
        for line in proc.stdout:
            out.append(line)
            count -= marker in line
            if count <= 0 or time.monotonic() > deadline:
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    return "".join(out), time.monotonic()


def first_to_restart() -> str:
    """The first node of a rolling Galera restart: neither the database writer (node01) nor
    the VIP holder (operations.galera.restart_order)."""
    return next(n for n in NODES if n != "node01" and not drills.holds_vip(n))


def test_a_rolling_restart_killed_half_way_converges_on_the_next_run(healthy):
    before = max_connections("node01")
    want = before + 7
    first = first_to_restart()
    quorum = Quorum()
    quorum.start()
    table = "rolling"
    drills.prepare_writes(table)
    writer = drills.Writer(table, "rolling")
    writer.start()
    try:
        # killed when the second node's restart starts: the first has restarted, no other
        out, _ = _deploy_until({"mariadb_max_connections": want}, "| galera: restart node", count=2)
        values = {n: max_connections(n) for n in NODES}
        log(f"killed after {first}'s restart: max_connections {values}")
        assert values == {n: want if n == first else before for n in NODES}, out[-3000:]
        # the file is written everywhere: only the pending markers say the others must restart
        run = drills.deploy(data={"mariadb_max_connections": want})
        assert run.returncode == 0, drills.run_excerpt(run.stdout)
        radius = drills.blast_radius(run.stdout)
        rest = [n for n in NODES if n != first]
        assert all(f"{n}: restart mariadb" in radius for n in rest) and f"{first}: restart mariadb" not in radius, radius
        assert "node01: restart mariadb (config changed; one node at a time, once every member is back), wait until " \
               "Synced; the writes moved to the next server first" in radius, radius
        assert {n: max_connections(n) for n in NODES} == {n: want for n in NODES}
        run = drills.deploy(data={"mariadb_max_connections": want})
        assert "Blast radius: no service restarts or reloads" in run.stdout, run.stdout[-3000:]
    finally:
        quorum.stopping.set()
        quorum.join(timeout=10)
        run = drills.deploy()  # back to the defaults, rolling
        writer.stopping.set()
        writer.join(timeout=30)
        assert run.returncode == 0, drills.run_excerpt(run.stdout)
    log(f"interrupted roll converged; fewest members in the Primary component seen throughout: {quorum.lowest}; "
        f"through three rolling restarts (one killed): {len(writer.acked)} acknowledged writes, {writer.failures} failed")
    assert quorum.lowest >= 2


def test_a_node_failing_its_restart_stops_the_roll(healthy):
    before = max_connections("node01")
    want = before + 3
    first = first_to_restart()
    lab.exec_(first, ["sh", "-c", f"mkdir -p {os.path.dirname(BREAK)} && printf '[Service]\\nExecStartPre=/bin/false\\n' "
                        f"> {BREAK} && systemctl daemon-reload"])
    try:
        run = drills.deploy(data={"mariadb_max_connections": want})
        assert run.returncode != 0
        assert re.search(rf"{first}.*(mariadb|journal|Failed|failed)", run.stdout), drills.run_excerpt(run.stdout)
        assert f"not touched: {first} failed earlier in this run" in run.stdout, drills.run_excerpt(run.stdout)
        rest = [n for n in NODES if n != first]
        assert all(max_connections(n) == before for n in rest)
        log(f"{first} failed its restart (first of the roll): {', '.join(rest)} untouched, run failed")
    finally:
        lab.exec_(first, ["sh", "-c", f"rm -f {BREAK} && systemctl daemon-reload"])
    run = drills.deploy(data={"mariadb_max_connections": want})
    assert run.returncode == 0, drills.run_excerpt(run.stdout)
    radius = drills.blast_radius(run.stdout)
    assert f"{first}: join the Galera cluster" in radius and all(f"{n}: restart mariadb" in radius for n in rest), radius
    assert {n: max_connections(n) for n in NODES} == {n: want for n in NODES}
    run = drills.deploy()
    assert run.returncode == 0, drills.run_excerpt(run.stdout)


def test_a_split_brain_is_named_refused_and_repaired_only_with_the_switch(healthy):
    """The issue's accident, made by hand: node03's mariadb stopped, then bootstrapped alone (as
    an unsafe `--limit node03` run did): two Primary components of one cluster UUID."""
    lab.exec_("node03", ["sh", "-c", "systemctl stop mariadb && sed -i 's/^safe_to_bootstrap: 0/safe_to_bootstrap: 1/' "
                         "/var/lib/mysql/grastate.dat && galera_new_cluster"], timeout=120)
    drills.node_sql("node03", "CREATE DATABASE IF NOT EXISTS splitdrill; CREATE TABLE IF NOT EXISTS splitdrill.t "
                              "(id INT PRIMARY KEY); INSERT INTO splitdrill.t VALUES (1)")
    assert galera("node03")["wsrep_cluster_size"] == "1" and galera("node01")["wsrep_cluster_size"] == "2"
    try:
        report = drills.verify_report()
        rows = [c["detail"] for c in report["cluster"] if c["name"] == "galera"]
        assert any(r.startswith("split brain: 2 Primary components of one cluster: {node01, node02} and {node03}")
                   for r in rows), rows
        run = drills.deploy()
        assert run.returncode != 0
        assert "split brain" in run.stdout and "HA_GALERA_REPAIR=1" in run.stdout, run.stdout[-3000:]
        assert galera("node03")["wsrep_cluster_size"] == "1"  # refused: nothing was touched
        run = drills.pyinfra("-y", "inventories/lab.py", "deploy.py", env={"HA_GALERA_REPAIR": "1"})
        assert run.returncode == 0, drills.run_excerpt(run.stdout)
        radius = drills.blast_radius(run.stdout)
        assert "node03: repair node03" in radius and "node03 at " in radius, radius
        drills.wait_for("one Primary component of 3", one_component, timeout=60)
        # node03's own writes went with its minority: the majority's history won
        assert drills.node_sql("node03", "SELECT COUNT(*) FROM information_schema.schemata "
                                         "WHERE schema_name='splitdrill'") == "0"
        log("split brain named in the report, refused without the switch, node03 resynced with HA_GALERA_REPAIR=1")
    finally:
        if not one_component():
            drills.pyinfra("-y", "inventories/lab.py", "deploy.py", env={"HA_GALERA_REPAIR": "1"})
